/*
 * The map-change journal: every chunk mapping the daemon changed since its
 * last commit, in shared memory the keeper holds, so a daemon killed with -9
 * does not take acknowledged writes with it. See journal.c.
 */
#ifndef COWVOL_JOURNAL_H
#define COWVOL_JOURNAL_H

#include <node_api.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define JOURNAL_MARKS 8

typedef struct journal_record {
  uint64_t seq; /* written last: a slot whose seq is not its own was never finished */
  uint64_t key; /* inode << 32 | chunk index */
  int64_t offset; /* the chunk now mapped there (data file offset), -1: unmapped */
  int64_t old;    /* what was mapped before, -1: nothing */
} journal_record;

typedef struct commit_mark {
  uint64_t generation; /* a commit */
  uint64_t covered;    /* records below this seq are in it */
} commit_mark;

typedef struct journal_header {
  uint64_t magic;
  uint64_t capacity;         /* records in the ring */
  uint64_t head;             /* oldest record kept */
  uint64_t next;             /* seq of the next record */
  uint64_t marks_written;
  commit_mark marks[JOURNAL_MARKS];
} journal_header;

typedef struct journal {
  int fd;
  journal_header *h; /* the mapping: header, then the ring */
  journal_record *ring;
  size_t bytes;
  pthread_mutex_t mu; /* appends, marks and trims; the reader is another process, after we are gone */
} journal;

/* Maps the journal in `fd`; `create` sizes and empties it (a memfd of our own). NULL with errno. */
journal *journal_open(int fd, int create, uint64_t capacity);
void journal_close(journal *j);
/* The record's seq, or 0 when the ring is full (commit first). */
uint64_t journal_append(journal *j, uint64_t key, int64_t offset, int64_t old);
uint64_t journal_next(journal *j);
/* Whether one more record fits. */
int journal_room(journal *j);
/* Fill in records: what share of the ring is in use, 0..1. */
double journal_fill(journal *j);
/* Commit `generation` holds every record below `covered`: said before its superblock is written. */
void journal_mark(journal *j, uint64_t generation, uint64_t covered);
/* Its superblock is written: records below `covered` are no longer needed. */
void journal_trim(journal *j, uint64_t covered);
/* Records past what `generation` holds, in order, into out (max n); -1 when no mark names it. */
long journal_since(journal *j, uint64_t generation, journal_record *out, size_t n);

napi_value journal_js_read(napi_env env, napi_callback_info info);
napi_value journal_js_create(napi_env env, napi_callback_info info);

#endif
