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
  uint64_t key; /* inode << 32 | chunk index; or JOURNAL_LONG | kind << 48 | volume */
  int64_t offset; /* the chunk now mapped there (data file offset), -1: unmapped; a long record's payload bytes */
  int64_t old;    /* what was mapped before, -1: nothing; a long record's aux */
} journal_record;

/*
 * A long record: a head slot (key JOURNAL_LONG | kind << 48 | volume) and
 * then its payload, JOURNAL_PAYLOAD bytes per slot laid over key, offset
 * and old, each slot with its own seq. Appended whole or not at all.
 */
#define JOURNAL_LONG (1ULL << 63)
#define JOURNAL_PAYLOAD 24
enum journal_kind {
  JOURNAL_ITEM_PUT = 1, /* a filesystem tree item: aux the key's length, payload key then value */
  JOURNAL_ITEM_DEL = 2, /* payload the key */
  JOURNAL_FILE_TAKE = 3, /* a cowfs first write into a reserved chunk: payload ino, chunk index, data offset */
  JOURNAL_FILE_END = 4,  /* a cowfs write reached past the file's size: payload ino, end */
  JOURNAL_DONE = 5,      /* the records before it, back to the last DONE, are cowfs request `payload`'s (its FUSE unique) */
  JOURNAL_FILE_BREAK = 6, /* a cowfs CoW break into a reserved chunk: payload ino, chunk index, data offset, the old chunk's offset */
};

/* One tree item of a batch: payload is the key, then the value (none when deleted). */
typedef struct journal_item {
  uint64_t volume;
  const char *payload;
  size_t klen, vlen;
  int deleted;
} journal_item;

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
  uint64_t promised; /* under mu: slots journal_promise set aside, which other appends may not use */
  int refs;          /* under the registry's lock: sessions sharing this mapping (journal_open of one memfd) */
  uint64_t file;     /* the memfd's inode number, to find a mapping already made */
} journal;

/*
 * Maps the journal in `fd`; `create` sizes and empties it (a memfd of our
 * own). Opening a journal this process has mapped already shares that
 * mapping (every session of a daemon appends to one ring under one lock).
 * NULL with errno.
 */
journal *journal_open(int fd, int create, uint64_t capacity);
void journal_close(journal *j);
/* The record's seq, or 0 when the ring is full (commit first). */
uint64_t journal_append(journal *j, uint64_t key, int64_t offset, int64_t old);
/* A long record (see JOURNAL_LONG) of `len` payload bytes; its head's seq, or 0 when it does not fit. */
uint64_t journal_append_long(journal *j, int kind, uint64_t volume, int64_t aux, const void *payload, size_t len);
/*
 * Tree items as one unit, then (unless `done` is 0) a DONE record naming
 * the request that made them: a kill leaves all or none. The first seq, or
 * 0 when they do not fit.
 */
uint64_t journal_append_batch(journal *j, const journal_item *items, size_t n, uint64_t done_volume, uint64_t done);
/* Slots a long record of `len` payload bytes takes. */
uint64_t journal_slots(size_t len);
uint64_t journal_next(journal *j);
/*
 * Sets `slots` aside for an append that must not fail once decided (a take,
 * after its compare-and-swap): 0 when they do not fit. The append that
 * follows uses them (journal_append*_promised), or journal_unpromise gives them back.
 */
int journal_promise(journal *j, uint64_t slots);
void journal_unpromise(journal *j, uint64_t slots);
uint64_t journal_append_promised(journal *j, uint64_t key, int64_t offset, int64_t old);
uint64_t journal_append_long_promised(journal *j, int kind, uint64_t volume, int64_t aux, const void *payload, size_t len);
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
