/*
 * The attributes of a cowfs mount's inodes as JavaScript last answered a
 * getattr or lookup (attr_cache.h): a direct-mapped array, so memory is
 * fixed (ATTR_SLOTS entries of 128 bytes) and a collision only forgets.
 *
 * What keeps an entry true: every request that may change any inode's
 * attributes in JavaScript (fs_ops.c's `ask` knows which) clears the whole
 * cache before and after it, by moving `generation`, which makes every
 * entry stale at once. An answer is kept only if no clear happened since
 * its ticket was taken, so an answer that raced a change is never kept.
 * The one change made outside JavaScript, a native write, moves mtime and
 * ctime of the held entry itself, to the time JavaScript will stamp, and
 * counts in its slot, so an answer JavaScript gave before the write
 * (without its time) is not kept either.
 *
 * A change JavaScript makes to one inode only (a write that extends a
 * file, a setattr) need not forget every inode: begin and end count in the
 * inode's slot as a native write does and drop its entry, so any answer
 * for it that may have raced the change is voided, and the change's own
 * answer is kept when nothing else touched the slot between the two. A
 * kernel request that finds an older entry between JavaScript's answer
 * and `end` runs concurrently with the change, which the kernel has not
 * seen answered yet.
 *
 * Lock notes: `mu` guards the entries; `generation` is atomic so a ticket
 * needs no lock.
 */
#include "attr_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define ATTR_SLOTS 1024

typedef struct {
  uint64_t ino;
  uint64_t generation;
  uint64_t touches; /* native writes to inodes of this slot, held or not */
  int64_t r[ATTR_NUMBERS];
} entry;

struct attr_cache {
  pthread_mutex_t mu;
  atomic_ullong generation;
  entry slot[ATTR_SLOTS];
};

attr_cache *attr_cache_new(void) {
  attr_cache *c = calloc(1, sizeof(attr_cache));
  if (!c) return NULL;
  pthread_mutex_init(&c->mu, NULL);
  atomic_init(&c->generation, 1);
  return c;
}

void attr_cache_free(attr_cache *c) {
  if (!c) return;
  pthread_mutex_destroy(&c->mu);
  free(c);
}

attr_ticket attr_cache_ticket(attr_cache *c, uint64_t ino) {
  pthread_mutex_lock(&c->mu);
  attr_ticket t = {.generation = atomic_load(&c->generation), .touches = c->slot[ino % ATTR_SLOTS].touches};
  pthread_mutex_unlock(&c->mu);
  return t;
}

void attr_cache_put(attr_cache *c, const int64_t *r, attr_ticket ticket) {
  uint64_t ino = (uint64_t)r[0];
  if (ino == 0) return;
  pthread_mutex_lock(&c->mu);
  entry *e = &c->slot[ino % ATTR_SLOTS];
  /* Checked under the lock: a clear or a native write since the ticket voids this answer. */
  if (atomic_load(&c->generation) == ticket.generation && e->touches == ticket.touches) {
    e->ino = ino;
    e->generation = ticket.generation;
    memcpy(e->r, r, sizeof(e->r));
  }
  pthread_mutex_unlock(&c->mu);
}

int attr_cache_get(attr_cache *c, uint64_t ino, int64_t *out) {
  pthread_mutex_lock(&c->mu);
  entry *e = &c->slot[ino % ATTR_SLOTS];
  int hit = ino != 0 && e->ino == ino && e->generation == atomic_load(&c->generation);
  if (hit) memcpy(out, e->r, sizeof(e->r));
  pthread_mutex_unlock(&c->mu);
  return hit;
}

void attr_cache_touch(attr_cache *c, uint64_t ino, int64_t sec, int64_t nsec) {
  pthread_mutex_lock(&c->mu);
  entry *e = &c->slot[ino % ATTR_SLOTS];
  e->touches++;
  if (e->ino == ino && e->generation == atomic_load(&c->generation)) {
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
  pthread_mutex_unlock(&c->mu);
}

/* Under mu: the slot counts one more change, and a held entry for ino goes. */
static entry *forget_locked(attr_cache *c, uint64_t ino) {
  entry *e = &c->slot[ino % ATTR_SLOTS];
  e->touches++;
  if (e->ino == ino) e->ino = 0;
  return e;
}

attr_ticket attr_cache_begin(attr_cache *c, uint64_t ino) {
  pthread_mutex_lock(&c->mu);
  entry *e = forget_locked(c, ino);
  attr_ticket t = {.generation = atomic_load(&c->generation), .touches = e->touches};
  pthread_mutex_unlock(&c->mu);
  return t;
}

void attr_cache_end(attr_cache *c, uint64_t ino, const int64_t *r, attr_ticket ticket) {
  pthread_mutex_lock(&c->mu);
  entry *e = &c->slot[ino % ATTR_SLOTS];
  int keep = ino != 0 && r && (uint64_t)r[0] == ino && atomic_load(&c->generation) == ticket.generation && e->touches == ticket.touches;
  forget_locked(c, ino);
  if (keep) {
    e->ino = ino;
    e->generation = ticket.generation;
    memcpy(e->r, r, sizeof(e->r));
  }
  pthread_mutex_unlock(&c->mu);
}

void attr_cache_replace(attr_cache *c, const int64_t *r) {
  uint64_t ino = (uint64_t)r[0];
  if (ino == 0) return;
  pthread_mutex_lock(&c->mu);
  entry *e = forget_locked(c, ino);
  e->ino = ino;
  e->generation = atomic_load(&c->generation);
  memcpy(e->r, r, sizeof(e->r));
  pthread_mutex_unlock(&c->mu);
}

void attr_cache_drop(attr_cache *c, uint64_t ino) {
  pthread_mutex_lock(&c->mu);
  forget_locked(c, ino);
  pthread_mutex_unlock(&c->mu);
}

void attr_cache_clear(attr_cache *c) {
  pthread_mutex_lock(&c->mu);
  atomic_fetch_add(&c->generation, 1);
  pthread_mutex_unlock(&c->mu);
}
