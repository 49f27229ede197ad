/*
 * The attributes of cowfs mounts' inodes as JavaScript last answered a
 * getattr or lookup (attr_cache.h): one direct-mapped array shared by
 * every mount of the process (ATTR_SLOTS entries of 152 bytes, made with
 * the first mount and freed with the last), so memory is fixed whatever
 * the number of mounts, and a collision only forgets. Each mount has a
 * view with an owner number (never reused) and its own `generation`; an
 * entry counts only for the view that put it, at that view's generation.
 * A slot is picked from the owner and the inode, so one mount's inodes,
 * numbered in order, take consecutive slots and never collide among
 * themselves below ATTR_SLOTS.
 *
 * What keeps an entry true: every request that may change any inode's
 * attributes in JavaScript (fs_ops.c's `ask` knows which) clears the
 * mount's entries before and after it, by moving its view's `generation`,
 * which makes every entry of that mount stale at once. An answer is kept
 * only if no clear happened since its ticket was taken, so an answer that
 * raced a change is never kept. The one change made outside JavaScript, a
 * native write, moves mtime and ctime of the held entry itself, to the
 * time JavaScript will stamp, and counts in its slot, so an answer
 * JavaScript gave before the write (without its time) is not kept either.
 * A native write past a file's end (a first write into a hole) moves the
 * held size and block count the same way, counting in the slot before its
 * chunk is taken and again after; if an answer was kept between the two,
 * it may or may not hold the write (JavaScript folds takes as it answers),
 * so it goes instead.
 *
 * A change JavaScript makes to one inode only (a write that extends a
 * file, a setattr) need not forget every inode: begin and end count in the
 * inode's slot as a native write does and drop its entry, so any answer
 * for it that may have raced the change is voided, and the change's own
 * answer is kept when nothing else touched the slot between the two. A
 * kernel request that finds an older entry between JavaScript's answer
 * and `end` runs concurrently with the change, which the kernel has not
 * seen answered yet. Counts in a slot another mount shares only void more.
 *
 * Lock notes: the store's `mu` guards its entries, `users` and `owners`
 * are guarded by `store_mu`; a view's `generation` is atomic so a ticket
 * needs no lock.
 */
#include "attr_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* 64 Ki entries of 152 bytes: 9.5 MiB for every mount together. */
#define ATTR_SLOTS 65536

typedef struct {
  uint64_t owner; /* the view that put it */
  uint64_t ino;
  uint64_t generation;
  uint64_t touches; /* native writes and one-inode changes to inodes of this slot, held or not */
  uint64_t puts;    /* answers kept in this slot: a native growth applies only to the entry it began under */
  int64_t r[ATTR_NUMBERS];
} entry;

static pthread_mutex_t store_mu = PTHREAD_MUTEX_INITIALIZER;
static size_t users;
static uint64_t owners;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static entry *slots;

struct attr_cache {
  uint64_t owner;
  atomic_ullong generation;
};

attr_cache *attr_cache_new(void) {
  attr_cache *c = calloc(1, sizeof(attr_cache));
  if (!c) return NULL;
  pthread_mutex_lock(&store_mu);
  if (users == 0) slots = calloc(ATTR_SLOTS, sizeof(entry));
  int ok = slots != NULL;
  if (ok) {
    users++;
    c->owner = ++owners;
  }
  pthread_mutex_unlock(&store_mu);
  if (!ok) {
    free(c);
    return NULL;
  }
  atomic_init(&c->generation, 1);
  return c;
}

void attr_cache_free(attr_cache *c) {
  if (!c) return;
  pthread_mutex_lock(&store_mu);
  if (--users == 0) {
    free(slots);
    slots = NULL;
  }
  pthread_mutex_unlock(&store_mu);
  free(c);
}

static entry *slot_of(const attr_cache *c, uint64_t ino) {
  /* Owners spread apart by a large odd step, so two mounts' low inode numbers land in different slots. */
  return &slots[(ino + c->owner * 0x9E3779B1u) % ATTR_SLOTS];
}

static int holds(const attr_cache *c, const entry *e, uint64_t ino) {
  return ino != 0 && e->owner == c->owner && e->ino == ino && e->generation == atomic_load(&c->generation);
}

static void keep(const attr_cache *c, entry *e, const int64_t *r, uint64_t generation) {
  e->owner = c->owner;
  e->ino = (uint64_t)r[0];
  e->generation = generation;
  e->puts++;
  memcpy(e->r, r, sizeof(e->r));
}

attr_ticket attr_cache_ticket(attr_cache *c, uint64_t ino) {
  pthread_mutex_lock(&mu);
  attr_ticket t = {.generation = atomic_load(&c->generation), .touches = slot_of(c, ino)->touches};
  pthread_mutex_unlock(&mu);
  return t;
}

void attr_cache_put(attr_cache *c, const int64_t *r, attr_ticket ticket) {
  uint64_t ino = (uint64_t)r[0];
  if (ino == 0) return;
  pthread_mutex_lock(&mu);
  entry *e = slot_of(c, ino);
  /* Checked under the lock: a clear or a native write since the ticket voids this answer. */
  if (atomic_load(&c->generation) == ticket.generation && e->touches == ticket.touches) keep(c, e, r, ticket.generation);
  pthread_mutex_unlock(&mu);
}

int attr_cache_get(attr_cache *c, uint64_t ino, int64_t *out) {
  pthread_mutex_lock(&mu);
  entry *e = slot_of(c, ino);
  int hit = holds(c, e, ino);
  if (hit) memcpy(out, e->r, sizeof(e->r));
  pthread_mutex_unlock(&mu);
  return hit;
}

void attr_cache_touch(attr_cache *c, uint64_t ino, int64_t sec, int64_t nsec) {
  pthread_mutex_lock(&mu);
  entry *e = slot_of(c, ino);
  e->touches++;
  if (holds(c, e, ino)) {
    /* Times only move forward, as JavaScript stamps them. */
    if (sec > e->r[10] || (sec == e->r[10] && nsec > e->r[11])) {
      e->r[10] = sec;
      e->r[11] = nsec;
    }
    if (sec > e->r[12] || (sec == e->r[12] && nsec > e->r[13])) {
      e->r[12] = sec;
      e->r[13] = nsec;
    }
  }
  pthread_mutex_unlock(&mu);
}

/* Under mu: the slot counts one more change, and a held entry for ino goes. */
static entry *forget_locked(attr_cache *c, uint64_t ino) {
  entry *e = slot_of(c, ino);
  e->touches++;
  if (e->owner == c->owner && e->ino == ino) e->ino = 0;
  return e;
}

attr_ticket attr_cache_begin(attr_cache *c, uint64_t ino) {
  pthread_mutex_lock(&mu);
  entry *e = forget_locked(c, ino);
  attr_ticket t = {.generation = atomic_load(&c->generation), .touches = e->touches};
  pthread_mutex_unlock(&mu);
  return t;
}

void attr_cache_end(attr_cache *c, uint64_t ino, const int64_t *r, attr_ticket ticket) {
  pthread_mutex_lock(&mu);
  entry *e = slot_of(c, ino);
  int kept = ino != 0 && r && (uint64_t)r[0] == ino && atomic_load(&c->generation) == ticket.generation && e->touches == ticket.touches;
  forget_locked(c, ino);
  if (kept) keep(c, e, r, ticket.generation);
  pthread_mutex_unlock(&mu);
}

void attr_cache_replace(attr_cache *c, const int64_t *r) {
  uint64_t ino = (uint64_t)r[0];
  if (ino == 0) return;
  pthread_mutex_lock(&mu);
  entry *e = forget_locked(c, ino);
  keep(c, e, r, atomic_load(&c->generation));
  pthread_mutex_unlock(&mu);
}

uint64_t attr_cache_growing(attr_cache *c, uint64_t ino) {
  pthread_mutex_lock(&mu);
  entry *e = slot_of(c, ino);
  e->touches++;
  uint64_t mark = e->puts;
  pthread_mutex_unlock(&mu);
  return mark;
}

void attr_cache_grow(attr_cache *c, uint64_t ino, uint64_t mark, int64_t end, int64_t blocks) {
  pthread_mutex_lock(&mu);
  entry *e = slot_of(c, ino);
  /* Kept since the mark, the answer may already hold this growth (JavaScript folded it): it goes. */
  if (e->puts != mark) {
    forget_locked(c, ino);
  } else {
    e->touches++;
    if (holds(c, e, ino)) {
      if (end > e->r[1]) e->r[1] = end;
      e->r[7] += blocks;
    }
  }
  pthread_mutex_unlock(&mu);
}

void attr_cache_drop(attr_cache *c, uint64_t ino) {
  pthread_mutex_lock(&mu);
  forget_locked(c, ino);
  pthread_mutex_unlock(&mu);
}

void attr_cache_clear(attr_cache *c) {
  pthread_mutex_lock(&mu);
  atomic_fetch_add(&c->generation, 1);
  pthread_mutex_unlock(&mu);
}
