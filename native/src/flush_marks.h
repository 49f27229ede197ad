/*
 * Which files of a cowfs mount an fdatasync may serve with one fdatasync
 * of the pool's data file (flush_marks.c): those whose size and chunk map
 * the last durable commit already holds, whatever other files changed.
 * Everything else (and every fsync, which must keep times) goes to
 * JavaScript, which commits.
 */
#ifndef COWVOL_FLUSH_MARKS_H
#define COWVOL_FLUSH_MARKS_H

#include <stdint.h>

typedef struct flush_marks flush_marks;

flush_marks *marks_new(void);
void marks_free(flush_marks *m);
/* JavaScript is about to change, or has changed, what a data sync of `ino` must keep (its size or chunks). */
void marks_file(flush_marks *m, uint64_t ino);
/* ...or of any file (a rename, a reflink, a pool that failed: anything until the next durable commit). */
void marks_all(flush_marks *m);
/* The pool's generations: the one its open transaction will commit as, and the last durable one. */
void marks_generations(flush_marks *m, uint64_t open, uint64_t durable);
/* 1 when a data sync of the data file makes every acknowledged write of `ino` durable and readable after a crash. */
int marks_clean(flush_marks *m, uint64_t ino);

#endif
