/*
 * Times the kernel set on a cowfs mount's files and the FUSE threads
 * answered without JavaScript (kernel_times.c). Under the writeback cache
 * the kernel keeps a regular file's mtime and ctime and sends them, a
 * setattr of times alone, at every close, fsync and writeback of a written
 * file: answered from the attribute cache, they wait here for JavaScript,
 * which puts them in the tree the next time it looks (as it stamps native
 * writes, written.h).
 */
#ifndef COWVOL_KERNEL_TIMES_H
#define COWVOL_KERNEL_TIMES_H

#include <stddef.h>
#include <stdint.h>

typedef struct kernel_times kernel_times;

/* Files held at once; a setattr for one more goes to JavaScript, which looks first. */
#define KERNEL_TIMES_MAX 64

/* Which times an entry sets. */
enum { KERNEL_ATIME = 1, KERNEL_MTIME = 2, KERNEL_CTIME = 4 };

typedef struct {
  uint64_t ino;
  int64_t set;                 /* KERNEL_* bits */
  int64_t atime[2], mtime[2], ctime[2]; /* wall clock (s, ns) */
} kernel_times_entry;

kernel_times *kernel_times_new(void);
void kernel_times_free(kernel_times *k);
/* Holds e (a later one for the same file adds to it); 0 when KERNEL_TIMES_MAX other files wait (nothing held). */
int kernel_times_note(kernel_times *k, const kernel_times_entry *e);
/* Moves what is held into out (room for KERNEL_TIMES_MAX); returns how many. */
size_t kernel_times_drain(kernel_times *k, kernel_times_entry *out);

#endif
