/*
 * The names of the directories made in a cowfs mount (name_filter.h). A
 * directory is followed from its mkdir, when it is surely empty, or from
 * the moment JavaScript lists all its names (a small directory that was
 * there before the mount, after a lookup there missed); every request
 * that can put a name in a directory (create, mknod, mkdir, symlink, link,
 * rename) adds the name before the kernel hears its answer, whether it
 * succeeded or not. A name the filter has never seen for a followed
 * directory is therefore not there. A name removed stays in the
 * filter: its lookups go to JavaScript, which is slower, never wrong.
 *
 * Why that is enough: the kernel makes a name in a directory only while it
 * holds the directory's lock exclusively, and looks names up while it holds
 * it shared, so no lookup runs between a name's making and its addition
 * here; and every name in a cowfs volume is made through its one mount
 * (binds share it). A daemon that takes a mount over starts with nothing
 * followed. Inode numbers are never reused, so a followed number never
 * speaks for a later directory.
 *
 * Memory is fixed: one filter of BITS bits shared by all followed
 * directories (the pair directory and name is hashed), and a table of
 * DIRS directory numbers. When either is full, everything is forgotten at
 * once and following starts again (a mkdir, a miss in a small directory):
 * a filter past its load would answer "maybe" for everything anyway.
 *
 * Lock notes: `mu` guards everything but `answers`. Every operation is a
 * few loads and stores under it.
 */
#include "name_filter.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define BITS ((uint64_t)1 << 19) /* 64 KiB */
#define HASHES 4
/* Ten bits a name: at four hashes, about one lookup in a hundred of a missing name still goes to JavaScript. */
#define NAMES_MAX (BITS / 10)
#define DIRS 2048 /* open addressing, 16 KiB */
#define DIRS_MAX (DIRS * 3 / 4)
#define NAME_MAX_BYTES 255

struct name_filter {
  pthread_mutex_t mu;
  uint64_t names; /* added since the last reset */
  uint64_t dirs;  /* followed */
  uint64_t dir[DIRS]; /* 0: free */
  uint64_t bits[BITS / 64];
  atomic_ullong answers;
};

name_filter *name_filter_new(void) {
  name_filter *f = calloc(1, sizeof(name_filter));
  if (f) pthread_mutex_init(&f->mu, NULL);
  return f;
}

void name_filter_free(name_filter *f) {
  if (!f) return;
  pthread_mutex_destroy(&f->mu);
  free(f);
}

static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* FNV-1a over the name, mixed with the directory: one hash for the pair. */
static uint64_t hash_of(uint64_t dir, const char *name, size_t len) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)name[i]) * 0x100000001b3ull;
  return mix(h ^ mix(dir));
}

/* The slot holding `dir`, or the free slot where it would go; the table is never full (DIRS_MAX). */
static uint64_t *dir_slot(name_filter *f, uint64_t dir) {
  size_t i = (size_t)(mix(dir) % DIRS);
  for (size_t probes = 0; probes < DIRS; probes++, i = (i + 1) % DIRS) {
    if (f->dir[i] == dir || f->dir[i] == 0) return &f->dir[i];
  }
  abort(); /* DIRS_MAX keeps a free slot */
}

static void reset(name_filter *f) {
  memset(f->dir, 0, sizeof(f->dir));
  memset(f->bits, 0, sizeof(f->bits));
  f->names = 0;
  f->dirs = 0;
}

/* Only real names: "." and ".." are the kernel's, and a name too long is JavaScript's to refuse. */
static int plain(const char *name, size_t len) {
  if (len == 0 || len > NAME_MAX_BYTES) return 0;
  return !(name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')));
}

/* The filter's bits for one hash of a pair: HASHES positions from two halves of it. */
static uint64_t bit_of(uint64_t h, uint64_t k) {
  return ((h & 0xffffffffu) + k * ((h >> 32) | 1)) % BITS;
}

int name_filter_check(name_filter *f, uint64_t dir, const char *name) {
  size_t len = strlen(name);
  if (dir == 0 || !plain(name, len)) return NAME_UNFOLLOWED;
  uint64_t h = hash_of(dir, name, len);
  int answer = NAME_UNFOLLOWED;
  pthread_mutex_lock(&f->mu);
  if (*dir_slot(f, dir) == dir) {
    answer = NAME_MAYBE;
    for (uint64_t k = 0; k < HASHES && answer == NAME_MAYBE; k++) {
      uint64_t bit = bit_of(h, k);
      if (!(f->bits[bit / 64] & (1ull << (bit % 64)))) answer = NAME_ABSENT;
    }
  }
  pthread_mutex_unlock(&f->mu);
  if (answer == NAME_ABSENT) atomic_fetch_add_explicit(&f->answers, 1, memory_order_relaxed);
  return answer;
}

/* Caller holds mu. A directory past the table's load forgets everything first. */
static void follow_locked(name_filter *f, uint64_t dir) {
  if (f->dirs >= DIRS_MAX) reset(f);
  uint64_t *slot = dir_slot(f, dir);
  if (*slot == 0) {
    *slot = dir;
    f->dirs++;
  }
}

/* Caller holds mu and `dir` is followed. Forgetting everything is always safe; a filter past its load would answer nothing.
 * 0 when it forgot everything (`dir` too). */
static int add_locked(name_filter *f, uint64_t dir, const char *name, size_t len) {
  if (f->names >= NAMES_MAX) {
    reset(f);
    return 0;
  }
  uint64_t h = hash_of(dir, name, len);
  for (uint64_t k = 0; k < HASHES; k++) {
    uint64_t bit = bit_of(h, k);
    f->bits[bit / 64] |= 1ull << (bit % 64);
  }
  f->names++;
  return 1;
}

void name_filter_follow(name_filter *f, uint64_t dir) {
  if (dir == 0) return;
  pthread_mutex_lock(&f->mu);
  follow_locked(f, dir);
  pthread_mutex_unlock(&f->mu);
}

void name_filter_follow_names(name_filter *f, uint64_t dir, const char *names, size_t len) {
  if (dir == 0) return;
  pthread_mutex_lock(&f->mu);
  if (*dir_slot(f, dir) != dir) {
    follow_locked(f, dir);
    /* Each add may forget everything, this directory too: then the rest is not needed. */
    for (size_t at = 0; at < len;) {
      size_t n = strnlen(names + at, len - at);
      if (!add_locked(f, dir, names + at, n)) break;
      at += n + 1;
    }
  }
  pthread_mutex_unlock(&f->mu);
}

void name_filter_add(name_filter *f, uint64_t dir, const char *name) {
  if (dir == 0) return;
  pthread_mutex_lock(&f->mu);
  if (*dir_slot(f, dir) == dir) add_locked(f, dir, name, strlen(name));
  pthread_mutex_unlock(&f->mu);
}

uint64_t name_filter_answers(name_filter *f) {
  return atomic_load_explicit(&f->answers, memory_order_relaxed);
}
