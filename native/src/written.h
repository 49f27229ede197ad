/*
 * The files a cowfs mount's FUSE threads wrote without JavaScript, when
 * each was last written, and how far writes past its last known end
 * reached: its mtime, ctime and size are JavaScript's to set (written.c),
 * which it does the next time it looks (before any request it serves, an
 * fsync, a snapshot, or on its timer).
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
  int64_t sec, nsec; /* CLOCK_MONOTONIC at the latest write; sec -1: none noted (the kernel keeps the times) */
  uint64_t end;      /* the furthest end of a write that may lie past the file's size; 0: none */
  uint64_t seq;      /* the journal record of the first end noted since JavaScript last took them; 0: none */
} written_file;

struct journal;

written *written_new(void);
void written_free(written *w);
/* Notes a write to `ino` now (CLOCK_MONOTONIC, into *at); 0 when WRITTEN_MAX other files wait (nothing noted). */
int written_note(written *w, uint64_t ino, struct timespec *at);
/* Notes that a write to `ino` reaches `end` (the file is at least that long now); 0 when WRITTEN_MAX other files wait. */
int written_grow(written *w, uint64_t ino, uint64_t end);
/*
 * written_grow that first records the end in journal `j` (JOURNAL_FILE_END
 * of `volume`), under the notes' lock, so the oldest record of an end not
 * taken yet is known (written_cover); 0 also when the journal is full.
 */
int written_grow_journaled(written *w, uint64_t ino, uint64_t end, struct journal *j, uint64_t volume);
/* The seq of the oldest end record JavaScript has not taken, or 0: a commit covers the journal only below it. */
uint64_t written_cover(written *w);
/* Whether a note of `ino` holds an end JavaScript has not folded into its size yet. */
int written_grows(written *w, uint64_t ino);
/* Moves the notes into out (room for WRITTEN_MAX); returns how many. */
size_t written_drain(written *w, written_file *out);
/* Moves only the ends into out (as notes without a time), leaving the times noted; returns how many. */
size_t written_drain_ends(written *w, written_file *out);

#endif
