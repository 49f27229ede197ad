/*
 * Per-file flush marks (flush_marks.h). A mark is the generation of the
 * pool's open transaction when JavaScript changed a file's size or chunk
 * map; the file is clean again once that generation is durable. A change
 * is marked before JavaScript makes it and again after (fs_ops.c's `ask`),
 * so a commit sealed while JavaScript served it cannot clean it: the mark
 * after carries the generation the change went into.
 *
 * Why per file: a cowfs volume is one pool volume, and JavaScript changes
 * some file's metadata (or stamps times) nearly all the time under a
 * database, so a volume-wide "nothing to commit" was rarely true and every
 * WAL fdatasync paid for a commit of other files' changes.
 *
 * Memory is fixed (SLOTS marks, direct-mapped by inode). A mark that would
 * replace another file's mark still waiting for its commit marks every
 * file instead, so a collision costs commits, never durability.
 *
 * Lock notes: `mu` guards everything; the critical sections are a few
 * loads and stores, and a data sync takes it once.
 */
#include "flush_marks.h"

#include <pthread.h>
#include <stdlib.h>

#define SLOTS 4096

typedef struct {
  uint64_t ino;
  uint64_t gen;
} mark;

struct flush_marks {
  pthread_mutex_t mu;
  uint64_t open;    /* the generation changes made now will commit as */
  uint64_t durable; /* the last durable generation: marks at or below it are clean */
  uint64_t all;     /* a mark for every file */
  mark slot[SLOTS];
};

flush_marks *marks_new(void) {
  flush_marks *m = calloc(1, sizeof(flush_marks));
  if (!m) return NULL;
  pthread_mutex_init(&m->mu, NULL);
  /* Until JavaScript says otherwise, every file waits for a commit. */
  m->open = 1;
  m->all = 1;
  return m;
}

void marks_free(flush_marks *m) {
  if (!m) return;
  pthread_mutex_destroy(&m->mu);
  free(m);
}

void marks_file(flush_marks *m, uint64_t ino) {
  pthread_mutex_lock(&m->mu);
  mark *k = &m->slot[ino % SLOTS];
  if (k->ino != ino && k->gen > m->durable) m->all = m->open;
  k->ino = ino;
  k->gen = m->open;
  pthread_mutex_unlock(&m->mu);
}

void marks_all(flush_marks *m) {
  pthread_mutex_lock(&m->mu);
  m->all = m->open;
  pthread_mutex_unlock(&m->mu);
}

void marks_generations(flush_marks *m, uint64_t open, uint64_t durable) {
  pthread_mutex_lock(&m->mu);
  /* Both only move forward: a late call with older numbers must not clean anything. */
  if (open > m->open) m->open = open;
  if (durable > m->durable && durable < m->open) m->durable = durable;
  pthread_mutex_unlock(&m->mu);
}

int marks_clean(flush_marks *m, uint64_t ino) {
  pthread_mutex_lock(&m->mu);
  const mark *k = &m->slot[ino % SLOTS];
  int clean = m->all <= m->durable && !(k->ino == ino && k->gen > m->durable);
  pthread_mutex_unlock(&m->mu);
  return clean;
}
