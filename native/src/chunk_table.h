/*
 * The chunk table: which chunks of which volumes the FUSE threads may serve
 * without JavaScript, and the I/O that serves them. JavaScript fills it and
 * empties it (the decisions are all JavaScript's); the FUSE threads look
 * entries up, read and write through them, and take a reserved chunk for a
 * first write where JavaScript said an index is a hole.
 */
#ifndef COWVOL_CHUNK_TABLE_H
#define COWVOL_CHUNK_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct chunk_table chunk_table;

/* Most reserved chunks, and most unfolded first writes, the table holds. */
#define TABLE_RESERVE_MAX 1024

typedef struct {
  uint64_t ino;
  uint64_t index;
  int64_t offset;
  uint64_t seq; /* its record in the journal (journal.c); 0 without one */
  int64_t old;  /* the chunk a copy-on-write break replaced (data file offset); -1 for a first write into a hole */
} table_taken;

struct journal;

typedef struct {
  uint64_t fast_reads, fast_writes, first_writes, fast_flushes, cow_breaks;
  int flush_errno; /* a native fdatasync failed with it; 0 if none has */
} table_counts;

/* Most reserve left, and records waiting, at which the table asks JavaScript (once) for more room; a smaller reserve asks at half. */
#define TABLE_RESERVE_LOW 512

/* `on_low(ctx)` runs on a FUSE thread, at most once until JavaScript next reserves or drains; it must not block. */
chunk_table *table_new(size_t slots, uint64_t chunk_size, int data_fd, void (*on_low)(void *ctx), void *ctx);
void table_free(chunk_table *t);

/*
 * Serves [off, off+size) wholly or not at all: 1 when served (then *err is
 * 0 or the errno of a failed pread/pwrite), 0 when some chunk is not in the
 * table (or, for a write, not writable in place). A write that meets holes
 * takes reserved chunks for them when the reserve and the record ring have
 * room, then is served; so does a write into a mapped chunk it may not
 * write in place (shared): the chunk is copied to a reserved one first (a
 * copy-on-write break), which replaces it in the table and is recorded with
 * the chunk it replaced. A reserved chunk a failed copy left written is
 * recorded with inode 0, for JavaScript to give back and punch. `took`
 * (may be NULL) counts the holes this write took.
 */
int table_io(chunk_table *t, uint64_t ino, char *buf, size_t size, off_t off, int write, int *err, unsigned *took);

/*
 * A cowfs table: holes offered with `tail` may lie past the file's end
 * (table_holes). A read through such an entry goes to JavaScript (only it
 * knows where the file ends); a write through one first calls
 * `on_tail(ctx, ino, end)` under the table's read lock, which notes that
 * the file may now reach `end` and returns 0 when it cannot (the write then
 * goes to JavaScript). Its first writes are folded file by file, so a drain
 * leaves the commit flag alone (the caller marks the files).
 */
void table_set_tail(chunk_table *t, int (*on_tail)(void *ctx, uint64_t ino, uint64_t end), void *ctx);

/*
 * Serves an fsync with one fdatasync of the data file when JavaScript says
 * no commit is needed and no first write waits to be folded (of inode
 * `ino`; of any when 0): 1 when served (*err is 0 or the errno), 0 to ask
 * JavaScript. A failed fdatasync sends every later fsync to JavaScript,
 * which fails the pool.
 */
int table_flush(chunk_table *t, uint64_t ino, int *err);
/* JavaScript: whether the pool has metadata to commit (1 at start). */
void table_commit_needed(chunk_table *t, int needed);

/* JavaScript's side. map, holes and invalidate wait for the I/O in flight through the table; reserve and drain do not. */
/*
 * `breakable`: when not writable, a write may copy the chunk (a CoW break); 0 for a read-only volume's chunks.
 * `tail`: the chunk holds the file's end (table_set_tail): reads go to JavaScript, writes note their end.
 */
void table_map(chunk_table *t, uint64_t ino, uint64_t index, int64_t offset, int writable, int breakable, int tail);
/* `tail`: the holes may lie past the file's end (table_set_tail); a first write keeps that mark on the chunk it takes. */
void table_holes(chunk_table *t, uint64_t ino, const uint64_t *indices, size_t n, int tail);
/* A negative index: every entry of the inode; inode 0 with it: every entry. */
void table_invalidate(chunk_table *t, uint64_t ino, int64_t index);
/* Adds reserved chunk offsets; returns how many were taken in. */
size_t table_reserve(chunk_table *t, const int64_t *offsets, size_t n);
/* Moves the first writes served since the last call into out (at most max); returns how many. */
size_t table_taken_drain(chunk_table *t, table_taken *out, size_t max);
table_counts table_counts_sum(chunk_table *t);
/* From now on every first write is journaled before it is served; a full journal sends them to JavaScript. */
/* volume: a cowfs table's volume (its takes are file takes), or -1 for the block files. */
void table_set_journal(chunk_table *t, struct journal *j, int64_t volume);
/* JavaScript's own mapping changes; the seq, or 0 when the journal is full (or there is none). */
uint64_t table_journal(chunk_table *t, uint64_t ino, uint64_t index, int64_t offset, int64_t old);
/* The journal seq a commit sealed now covers: the oldest first write not drained yet, or the next seq. */
uint64_t table_cover(chunk_table *t);

#endif
