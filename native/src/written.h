/*
 * The files a cowfs mount's FUSE threads wrote without JavaScript, and
 * when each was last written: their mtime and ctime are JavaScript's to
 * set (written.c), which it does the next time it looks (before any
 * request it serves, an fsync, a snapshot, or on its timer).
 */
#ifndef COWVOL_WRITTEN_H
#define COWVOL_WRITTEN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct written written;

/* Files noted at once; a write to one more goes to JavaScript, which looks first. */
#define WRITTEN_MAX 64

typedef struct {
  uint64_t ino;
  int64_t sec, nsec; /* CLOCK_MONOTONIC at the latest write */
} written_file;

written *written_new(void);
void written_free(written *w);
/* Notes a write to `ino` now (CLOCK_MONOTONIC, into *at); 0 when WRITTEN_MAX other files wait (nothing noted). */
int written_note(written *w, uint64_t ino, struct timespec *at);
/* Moves the notes into out (room for WRITTEN_MAX); returns how many. */
size_t written_drain(written *w, written_file *out);

#endif
