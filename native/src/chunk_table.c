/*
 * The chunk table (see chunk_table.h): a fixed-size, 8-way set-associative
 * cache of (inode, chunk index) -> where the chunk lives in the data file,
 * whether it may be written in place, or that it is a hole.
 *
 * Locking: a "big reader" lock. Each FUSE thread read-locks a lock of its
 * own (one of READER_SLOTS, each on its own cache lines, with its own
 * counters), so concurrent requests share no written cache line. JavaScript
 * (map, holes, invalidate) locks every slot, which waits for every I/O in
 * flight through the table: when invalidate returns, no write can still
 * land in a chunk that is about to be shared or freed. Threads beyond
 * READER_SLOTS share slots; that is only slower. An entry's key is written
 * only under every lock; its `state` word also changes from
 * hole to mapped under a read lock (a take, by compare-and-swap), never the
 * other way. The reserve and the taken records have a mutex of their own
 * (`spare`), so a first write does not wait for other I/O.
 *
 * First writes: JavaScript marks indices it knows are unmapped as holes and
 * hands the table free chunks that read as zeros (the reserve). A write that
 * meets a hole takes a reserved chunk for it, turns the entry into a
 * writable one, and records (ino, index, offset) for JavaScript to fold into
 * the volume's map before its next commit. The table decides nothing: it
 * only spends what JavaScript set aside. Reads of a hole return zeros.
 *
 * Copy-on-write breaks work the same way: a write into a mapped chunk the
 * entry does not mark writable (JavaScript's rule said no: the chunk is
 * shared, or the last commit maps it) copies the whole chunk into a
 * reserved one, switches the entry to it, writable, and records (ino,
 * index, new offset, old offset), all under `spare` so two writers to one
 * chunk break it once. JavaScript folds the record as it would its own CoW
 * break: the new chunk mapped, the old one released.
 *
 * A cowfs mount's table (table_set_tail) marks TAIL the entries that may
 * reach past a file's end: the chunk holding it, and holes past it. A write
 * through one notes first (on_tail) how far the file now reaches, for
 * JavaScript to fold into its size (with the chunk, when it took a hole);
 * a take keeps the mark. Reads through them, which only JavaScript can
 * clip at the file's end, go to JavaScript.
 *
 * Caveats: a full bucket evicts an entry (a lost hole or mapping only sends
 * the request to JavaScript); invalidating a whole inode scans the table.
 */
#include "chunk_table.h"
#include "journal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAYS 8
#define READER_SLOTS 32

/*
 * An entry's state in one word: the chunk's byte offset in the data file
 * (a multiple of the chunk size, so its low bits are free) | WRITABLE, or
 * HOLE. One word, so a take changes it with one compare-and-swap.
 */
#define WRITABLE 1
#define HOLE 2
/* Mapped read-only for good (a snapshot's chunk): never broken here, whatever writes. */
#define FROZEN 4
/* May reach past the file's end (a cowfs table, table_set_tail): reads go to JavaScript, writes note their end. */
#define TAIL 8

static int64_t offset_of(int64_t state) {
  return state & ~(int64_t)(WRITABLE | HOLE | FROZEN | TAIL);
}

/* 16 bytes, so a bucket is two cache lines: the key is ino << 32 | index, 0 for an empty entry. */
typedef struct {
  uint64_t key;
  _Atomic int64_t state;
} entry;

/* Most chunks one request's lookups are kept for (a 1 MiB request over 16 KiB chunks); beyond, they are looked up again. */
#define HITS 64

/* Inodes and indices beyond 32 bits never enter the table (0: no key); cowvol's are u32. */
static uint64_t key_of(uint64_t ino, uint64_t index) {
  return ino > UINT32_MAX || index > UINT32_MAX ? 0 : ino << 32 | index;
}

typedef struct {
  _Alignas(64) pthread_rwlock_t lock;
  atomic_ullong fast_reads, fast_writes, first_writes, fast_flushes, cow_breaks;
} reader_slot;

struct chunk_table {
  reader_slot readers[READER_SLOTS];
  int data_fd;
  uint64_t chunk_size;
  size_t slots;
  entry *entries;
  pthread_mutex_t spare; /* guards reserve, reserved, taken, taken_count */
  int64_t reserve[TABLE_RESERVE_MAX];
  size_t reserved;
  table_taken taken[TABLE_RESERVE_MAX];
  size_t taken_count;
  /* taken_count, for a drain that finds nothing to skip locking every slot. */
  atomic_size_t taken_hint;
  void (*on_low)(void *ctx);
  void *low_ctx;
  /* Set by JavaScript while the pool has metadata to commit, and by a drain (what it hands over is uncommitted). */
  atomic_int commit_needed;
  atomic_int flush_errno;
  int low_signalled; /* under spare */
  size_t low;         /* under spare: reserve left at which to ask for more, half of the last top-up */
  struct journal *journal; /* set once before first writes start; appends under spare */
  int64_t journal_volume;  /* a cowfs table's volume: its takes are file takes (JOURNAL_FILE_TAKE); -1 for the block files */
  /* Set once before any hole is offered with TAIL (table_set_tail); NULL for a block files' table. */
  int (*on_tail)(void *ctx, uint64_t ino, uint64_t end);
  void *tail_ctx;
};

static atomic_uint slots_given;
static _Thread_local int my_slot = -1;

static reader_slot *slot_of_thread(chunk_table *t) {
  if (my_slot < 0) my_slot = (int)(atomic_fetch_add(&slots_given, 1) % READER_SLOTS);
  return &t->readers[my_slot];
}

static void lock_all(chunk_table *t) {
  for (int i = 0; i < READER_SLOTS; i++) pthread_rwlock_wrlock(&t->readers[i].lock);
}

static void unlock_all(chunk_table *t) {
  for (int i = READER_SLOTS - 1; i >= 0; i--) pthread_rwlock_unlock(&t->readers[i].lock);
}

chunk_table *table_new(size_t slots, uint64_t chunk_size, int data_fd, void (*on_low)(void *ctx), void *ctx) {
  /* Chunk offsets carry the state bits in their low four. */
  if (chunk_size == 0 || chunk_size % 16 != 0 || slots < WAYS) return NULL;
  chunk_table *t = calloc(1, sizeof(chunk_table));
  if (!t) return NULL;
  t->slots = slots - slots % WAYS;
  t->entries = calloc(t->slots, sizeof(entry));
  if (!t->entries) {
    free(t);
    return NULL;
  }
  t->chunk_size = chunk_size;
  t->data_fd = data_fd;
  t->on_low = on_low;
  t->low_ctx = ctx;
  t->low = TABLE_RESERVE_LOW;
  atomic_init(&t->commit_needed, 1);
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* Invalidation must not starve behind a thread that re-reads at once. */
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  for (int i = 0; i < READER_SLOTS; i++) pthread_rwlock_init(&t->readers[i].lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  pthread_mutex_init(&t->spare, NULL);
  return t;
}

void table_free(chunk_table *t) {
  if (!t) return;
  for (int i = 0; i < READER_SLOTS; i++) pthread_rwlock_destroy(&t->readers[i].lock);
  pthread_mutex_destroy(&t->spare);
  free(t->entries);
  free(t);
}

/* ---- lookup ----------------------------------------------------------------- */

static uint64_t hash_of(uint64_t key) {
  uint64_t h = (key >> 32) * 0x9E3779B97F4A7C15ULL ^ ((key & 0xffffffffULL) + 0x632BE59BD9B4E019ULL) * 0xC2B2AE3D27D4EB4FULL;
  return h ^ (h >> 29);
}

/*
 * A file's chunks go to consecutive buckets from a place its inode picks,
 * so a file as large as the table, alone in it, fits whole. Spread at
 * random, a 256 MiB file in a table of twice its chunks overflowed a few
 * buckets, and a 1 MiB write, which is native only if all 16 of its chunks
 * are there, went to JavaScript one time in five, evicting others on its
 * way back.
 */
static entry *bucket_of(chunk_table *t, uint64_t key) {
  uint64_t start = (key >> 32) * 0x9E3779B97F4A7C15ULL;
  return &t->entries[(size_t)((start + (key & 0xffffffffULL)) % (t->slots / WAYS)) * WAYS];
}

/* Caller holds a lock. NULL on a miss. */
static entry *find(chunk_table *t, uint64_t ino, uint64_t index) {
  uint64_t key = key_of(ino, index);
  if (key == 0) return NULL;
  entry *b = bucket_of(t, key);
  for (int w = 0; w < WAYS; w++)
    if (b[w].key == key) return &b[w];
  return NULL;
}

/* Caller holds every lock. The entry to fill for a key: its own, a free one, or a victim (a way its hash picks). */
static entry *place(chunk_table *t, uint64_t key) {
  entry *b = bucket_of(t, key);
  entry *free_entry = NULL;
  for (int w = 0; w < WAYS; w++) {
    if (b[w].key == key) return &b[w];
    if (b[w].key == 0 && !free_entry) free_entry = &b[w];
  }
  return free_entry ? free_entry : &b[(hash_of(key) >> 40) % WAYS];
}

/*
 * Whether every chunk of the range has an entry (for a write: writable or a
 * hole; for a read: none that may reach past the file's end). Counts the
 * holes and the entries marked TAIL. Caller holds a lock.
 */
static int covered(chunk_table *t, uint64_t ino, off_t off, size_t size, int write, int *holes, int *tails, entry **hits) {
  uint64_t first = (uint64_t)off / t->chunk_size;
  uint64_t last = ((uint64_t)off + size - 1) / t->chunk_size;
  *holes = 0;
  *tails = 0;
  for (uint64_t i = first; i <= last; i++) {
    entry *e = find(t, ino, i);
    if (!e) return 0;
    if (i - first < HITS) hits[i - first] = e;
    int64_t st = atomic_load_explicit(&e->state, memory_order_acquire);
    if ((st & TAIL) && !write) return 0;
    /* For a write, holes and mapped chunks it may not write in place are both taken before serving. */
    *holes += write && !(st & WRITABLE);
    *tails += (st & TAIL) != 0;
  }
  return 1;
}

/* ---- serving ---------------------------------------------------------------- */

/* pread or pwrite all of n bytes at `at`; 0 or an errno. A read past the file's end is zeros. */
static int transfer(int fd, char *buf, size_t n, off_t at, int write) {
  size_t piece = 0;
  while (piece < n) {
    ssize_t k = write ? pwrite(fd, buf + piece, n - piece, at + (off_t)piece) : pread(fd, buf + piece, n - piece, at + (off_t)piece);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return errno;
    if (k == 0) { /* a never-written tail of the data file */
      if (write) return EIO;
      memset(buf + piece, 0, n - piece);
      k = (ssize_t)(n - piece);
    }
    piece += (size_t)k;
  }
  return 0;
}

/* The entry of chunk `index`, from the lookups `covered` kept where it could. */
static entry *hit(chunk_table *t, uint64_t ino, uint64_t index, uint64_t first, entry **hits) {
  return index - first < HITS ? hits[index - first] : find(t, ino, index);
}

/* Caller holds a lock and checked `covered` (filling hits) with no holes for writes. */
static int serve(chunk_table *t, uint64_t ino, char *buf, size_t size, off_t off, int write, entry **hits) {
  uint64_t first = (uint64_t)off / t->chunk_size;
  uint64_t last = ((uint64_t)off + size - 1) / t->chunk_size;
  size_t done = 0;
  while (done < size) {
    uint64_t pos = (uint64_t)off + done;
    uint64_t index = pos / t->chunk_size;
    uint64_t within = pos - index * t->chunk_size;
    size_t n = t->chunk_size - within;
    if (n > size - done) n = size - done;
    int64_t st = atomic_load_explicit(&hit(t, ino, index, first, hits)->state, memory_order_acquire);
    if (st & HOLE) { /* reads only (writes take holes first): an unmapped chunk reads as zeros */
      memset(buf + done, 0, n);
      done += n;
      continue;
    }
    int64_t offset = offset_of(st);
    off_t at = (off_t)(offset + (int64_t)within);
    /* Chunks that sit back to back in the data file make one system call. */
    while (n < size - done && index + 1 <= last) {
      int64_t next_st = atomic_load_explicit(&hit(t, ino, index + 1, first, hits)->state, memory_order_acquire);
      if ((next_st & HOLE) || offset_of(next_st) != offset + (int64_t)t->chunk_size) break;
      size_t more = t->chunk_size;
      if (more > size - done - n) more = size - done - n;
      n += more;
      index++;
      offset += (int64_t)t->chunk_size;
    }
    int err = transfer(t->data_fd, buf + done, n, at, write);
    if (err) return err;
    done += n;
  }
  return 0;
}

/*
 * The journal record of a take, in the room journal_promise set aside: a
 * block volume's chunk is its map's index; a cowfs file's chunk is the
 * file's, which a successor places through the file's region.
 */
static uint64_t journal_take(chunk_table *t, uint64_t ino, uint64_t index, int64_t offset) {
  if (t->journal_volume < 0) return journal_append_promised(t->journal, key_of(ino, index), offset, -1);
  int64_t payload[3] = {(int64_t)ino, (int64_t)index, offset};
  return journal_append_long_promised(t->journal, JOURNAL_FILE_TAKE, (uint64_t)t->journal_volume, 0, payload, sizeof(payload));
}

/* The journal slots a break's record needs: a cowfs file's names the old chunk too, so a successor checks it replaces that one. */
static uint64_t break_slots(chunk_table *t) {
  return t->journal_volume >= 0 ? journal_slots(4 * sizeof(int64_t)) : 1;
}

/* The journal record of a CoW break, in the room journal_promise set aside for it (break_slots). */
static uint64_t journal_break(chunk_table *t, uint64_t ino, uint64_t index, int64_t fresh, int64_t old) {
  if (t->journal_volume < 0) return journal_append_promised(t->journal, key_of(ino, index), fresh, old);
  int64_t payload[4] = {(int64_t)ino, (int64_t)index, fresh, old};
  return journal_append_long_promised(t->journal, JOURNAL_FILE_BREAK, (uint64_t)t->journal_volume, 0, payload, sizeof(payload));
}

/*
 * Turns one hole into a reserved chunk and records it for JavaScript.
 * Caller holds a read lock. 0 when the reserve or the record ring is out.
 */
static int take_one(chunk_table *t, uint64_t ino, uint64_t index, entry *e, int64_t hole, reader_slot *me) {
  pthread_mutex_lock(&t->spare);
  int ok = t->reserved > 0 && t->taken_count < TABLE_RESERVE_MAX;
  /* Other tables append to the same journal: the room is set aside before the CAS, so the record cannot fail after it. */
  uint64_t slots = t->journal_volume >= 0 ? journal_slots(3 * sizeof(int64_t)) : 1;
  if (ok && t->journal) ok = journal_promise(t->journal, slots);
  if (ok) {
    int64_t offset = t->reserve[--t->reserved];
    if (atomic_compare_exchange_strong_explicit(&e->state, &hole, offset | WRITABLE | (hole & TAIL), memory_order_acq_rel, memory_order_acquire)) {
      /* Journaled before any write through it is answered: the caller serves after we return. */
      uint64_t seq = t->journal ? journal_take(t, ino, index, offset) : 0;
      t->taken[t->taken_count++] = (table_taken){.ino = ino, .index = index, .offset = offset, .seq = seq, .old = -1};
      atomic_store_explicit(&t->taken_hint, t->taken_count, memory_order_release);
      atomic_fetch_add_explicit(&me->first_writes, 1, memory_order_relaxed);
    } else {
      t->reserve[t->reserved++] = offset; /* another request took it first: it is mapped now */
      if (t->journal) journal_unpromise(t->journal, slots);
    }
  }
  /* Ask ahead, so a sequential writer keeps finding holes and chunks without a trip to JavaScript. */
  int low = !t->low_signalled && (t->reserved <= t->low || t->taken_count >= TABLE_RESERVE_MAX - TABLE_RESERVE_LOW);
  if (low) t->low_signalled = 1;
  pthread_mutex_unlock(&t->spare);
  if (low && t->on_low) t->on_low(t->low_ctx);
  return ok;
}

/* Copies chunk `old` into `fresh`; 0 or an errno. On failure `fresh` may hold part of the copy. */
static int copy_chunk(chunk_table *t, int64_t old, int64_t fresh) {
  char *buf = malloc(t->chunk_size);
  if (!buf) return ENOMEM;
  int err = transfer(t->data_fd, buf, t->chunk_size, (off_t)old, 0);
  if (!err) err = transfer(t->data_fd, buf, t->chunk_size, (off_t)fresh, 1);
  free(buf);
  return err;
}

/*
 * Breaks the sharing of one mapped chunk the entry does not mark writable:
 * copies it into a reserved chunk and maps that instead, writable. Caller
 * holds a read lock. 0 when the reserve, the records or the journal are
 * out, or the copy failed (the request then goes to JavaScript).
 */
static int take_cow(chunk_table *t, uint64_t ino, uint64_t index, entry *e, reader_slot *me) {
  pthread_mutex_lock(&t->spare);
  int64_t st = atomic_load_explicit(&e->state, memory_order_acquire);
  /* Another writer broke it while we waited for `spare`: write in place. */
  int ok = (st & WRITABLE) != 0;
  uint64_t slots = break_slots(t);
  /* The slots are promised before the copy: another table's append cannot leave this break without its record. */
  if (!ok && t->reserved > 0 && t->taken_count < TABLE_RESERVE_MAX && (!t->journal || journal_promise(t->journal, slots))) {
    int64_t fresh = t->reserve[--t->reserved];
    int64_t old = offset_of(st);
    if (copy_chunk(t, old, fresh) == 0) {
      /* Only a take changes a state under a read lock, and every take holds `spare`: nothing raced this store.
       * The copy holds the file's end if the chunk did: later writes through it must still note how far they reach. */
      atomic_store_explicit(&e->state, fresh | WRITABLE | (st & TAIL), memory_order_release);
      uint64_t seq = t->journal ? journal_break(t, ino, index, fresh, old) : 0;
      t->taken[t->taken_count++] = (table_taken){.ino = ino, .index = index, .offset = fresh, .seq = seq, .old = old};
      atomic_fetch_add_explicit(&me->cow_breaks, 1, memory_order_relaxed);
      ok = 1;
    } else {
      if (t->journal) journal_unpromise(t->journal, slots);
      /* The chunk may no longer read as zeros: JavaScript gives it back and punches it (inode 0: no volume). */
      t->taken[t->taken_count++] = (table_taken){.ino = 0, .index = 0, .offset = fresh, .seq = 0, .old = -1};
    }
    atomic_store_explicit(&t->taken_hint, t->taken_count, memory_order_release);
  }
  int low = !t->low_signalled && (t->reserved <= t->low || t->taken_count >= TABLE_RESERVE_MAX - TABLE_RESERVE_LOW);
  if (low) t->low_signalled = 1;
  pthread_mutex_unlock(&t->spare);
  if (low && t->on_low) t->on_low(t->low_ctx);
  return ok;
}

/*
 * Takes every hole of the range, and breaks every chunk it may not write in
 * place, counting the holes in *took. Caller holds a read lock. 1 when all are done.
 */
static int take_holes(chunk_table *t, uint64_t ino, off_t off, size_t size, reader_slot *me, entry **hits, unsigned *took) {
  uint64_t first = (uint64_t)off / t->chunk_size;
  uint64_t last = ((uint64_t)off + size - 1) / t->chunk_size;
  for (uint64_t i = first; i <= last; i++) {
    entry *e = hit(t, ino, i, first, hits);
    int64_t st = atomic_load_explicit(&e->state, memory_order_acquire);
    if (st & WRITABLE) continue;
    if (st & FROZEN) return 0;
    if (st & HOLE) {
      if (!take_one(t, ino, i, e, st, me)) return 0;
      if (took) (*took)++;
    } else if (!take_cow(t, ino, i, e, me)) {
      return 0;
    }
  }
  return 1;
}

int table_io(chunk_table *t, uint64_t ino, char *buf, size_t size, off_t off, int write, int *err, unsigned *took) {
  if (took) *took = 0;
  if (size == 0) return 0;
  reader_slot *me = slot_of_thread(t);
  entry *hits[HITS];
  pthread_rwlock_rdlock(&me->lock);
  int holes = 0, tails = 0;
  int ok = covered(t, ino, off, size, write, &holes, &tails, hits);
  /* Noted before any byte goes in, under the read lock: JavaScript's invalidate of the file waits for it. */
  if (ok && tails > 0) ok = t->on_tail != NULL && t->on_tail(t->tail_ctx, ino, (uint64_t)off + size);
  /* A hole taken and then left unwritten (the reserve ran out further on) is
   * harmless: the chunk reads as zeros, as the hole did. */
  if (ok && write && holes > 0) ok = take_holes(t, ino, off, size, me, hits, took);
  if (ok) *err = serve(t, ino, buf, size, off, write, hits);
  pthread_rwlock_unlock(&me->lock);
  if (ok) atomic_fetch_add_explicit(write ? &me->fast_writes : &me->fast_reads, 1, memory_order_relaxed);
  return ok;
}

/* ---- JavaScript's side ------------------------------------------------------ */

void table_map(chunk_table *t, uint64_t ino, uint64_t index, int64_t offset, int writable, int breakable, int tail) {
  uint64_t key = key_of(ino, index);
  if (key == 0) return;
  lock_all(t);
  entry *e = place(t, key);
  e->key = key;
  atomic_store_explicit(&e->state, offset | (writable ? WRITABLE : breakable ? 0 : FROZEN) | (tail ? TAIL : 0), memory_order_release);
  unlock_all(t);
}

/*
 * A hole never replaces a mapping: JavaScript offers holes for indices its
 * map leaves unmapped, and a mapping here for one of them can only be a
 * first write taken since JavaScript last drained (it will fold it).
 */
void table_holes(chunk_table *t, uint64_t ino, const uint64_t *indices, size_t n, int tail) {
  int64_t hole = HOLE | (tail ? TAIL : 0);
  lock_all(t);
  for (size_t i = 0; i < n; i++) {
    uint64_t key = key_of(ino, indices[i]);
    if (key == 0) continue;
    entry *e = place(t, key);
    if (e->key == key && !(atomic_load(&e->state) & HOLE)) continue;
    e->key = key;
    atomic_store_explicit(&e->state, hole, memory_order_release);
  }
  unlock_all(t);
}

void table_invalidate(chunk_table *t, uint64_t ino, int64_t index) {
  lock_all(t);
  if (index >= 0) {
    entry *e = find(t, ino, (uint64_t)index);
    if (e) e->key = 0;
  } else {
    /* Inode 0 names no file: it stands for every entry. */
    for (size_t i = 0; i < t->slots; i++)
      if (ino == 0 || t->entries[i].key >> 32 == ino) t->entries[i].key = 0;
  }
  unlock_all(t);
}

size_t table_reserve(chunk_table *t, const int64_t *offsets, size_t n) {
  pthread_mutex_lock(&t->spare);
  size_t added = 0;
  while (added < n && t->reserved < TABLE_RESERVE_MAX) t->reserve[t->reserved++] = offsets[added++];
  /* Ask again once half of it is spent: JavaScript sizes the reserve (a cowfs mount's is small). */
  t->low = t->reserved / 2 < TABLE_RESERVE_LOW ? t->reserved / 2 : TABLE_RESERVE_LOW;
  t->low_signalled = 0;
  pthread_mutex_unlock(&t->spare);
  return added;
}

size_t table_taken_drain(chunk_table *t, table_taken *out, size_t max) {
  /* JavaScript drains before most of its work: the common empty case must not wait for I/O. */
  if (atomic_load_explicit(&t->taken_hint, memory_order_acquire) == 0) return 0;
  pthread_mutex_lock(&t->spare);
  size_t n = t->taken_count < max ? t->taken_count : max;
  /* Set before the records leave: an fsync must not find neither records nor the flag. A cowfs
   * table's caller marks the files instead (table_set_tail), so other files keep their data syncs. */
  if (n > 0 && !t->on_tail) atomic_store(&t->commit_needed, 1);
  memcpy(out, t->taken, n * sizeof(table_taken));
  memmove(t->taken, t->taken + n, (t->taken_count - n) * sizeof(table_taken));
  t->taken_count -= n;
  atomic_store_explicit(&t->taken_hint, t->taken_count, memory_order_release);
  t->low_signalled = 0;
  pthread_mutex_unlock(&t->spare);
  return n;
}

/* Whether a first write of `ino` (any, for 0) waits to be folded. */
static int taken_waits(chunk_table *t, uint64_t ino) {
  if (atomic_load_explicit(&t->taken_hint, memory_order_acquire) == 0) return 0;
  if (ino == 0) return 1;
  pthread_mutex_lock(&t->spare);
  size_t i = 0;
  while (i < t->taken_count && t->taken[i].ino != ino) i++;
  int found = i < t->taken_count;
  pthread_mutex_unlock(&t->spare);
  return found;
}

int table_flush(chunk_table *t, uint64_t ino, int *err) {
  if (atomic_load(&t->commit_needed) || atomic_load(&t->flush_errno) || taken_waits(t, ino)) return 0;
  *err = fdatasync(t->data_fd) == 0 ? 0 : errno;
  if (*err) atomic_store(&t->flush_errno, *err);
  atomic_fetch_add_explicit(&slot_of_thread(t)->fast_flushes, 1, memory_order_relaxed);
  return 1;
}

void table_commit_needed(chunk_table *t, int needed) {
  atomic_store(&t->commit_needed, needed != 0);
}

table_counts table_counts_sum(chunk_table *t) {
  table_counts c = {0, 0, 0, 0, 0, atomic_load(&t->flush_errno)};
  for (int i = 0; i < READER_SLOTS; i++) {
    c.fast_reads += atomic_load_explicit(&t->readers[i].fast_reads, memory_order_relaxed);
    c.fast_writes += atomic_load_explicit(&t->readers[i].fast_writes, memory_order_relaxed);
    c.first_writes += atomic_load_explicit(&t->readers[i].first_writes, memory_order_relaxed);
    c.fast_flushes += atomic_load_explicit(&t->readers[i].fast_flushes, memory_order_relaxed);
    c.cow_breaks += atomic_load_explicit(&t->readers[i].cow_breaks, memory_order_relaxed);
  }
  return c;
}

void table_set_tail(chunk_table *t, int (*on_tail)(void *ctx, uint64_t ino, uint64_t end), void *ctx) {
  lock_all(t);
  t->on_tail = on_tail;
  t->tail_ctx = ctx;
  unlock_all(t);
}

void table_set_journal(chunk_table *t, struct journal *j, int64_t volume) {
  pthread_mutex_lock(&t->spare);
  t->journal = j;
  t->journal_volume = volume;
  pthread_mutex_unlock(&t->spare);
}

uint64_t table_cover(chunk_table *t) {
  pthread_mutex_lock(&t->spare);
  uint64_t covered = t->taken_count > 0 && t->taken[0].seq != 0 ? t->taken[0].seq : (t->journal ? journal_next(t->journal) : 0);
  pthread_mutex_unlock(&t->spare);
  return covered;
}

uint64_t table_journal(chunk_table *t, uint64_t ino, uint64_t index, int64_t offset, int64_t old) {
  pthread_mutex_lock(&t->spare);
  uint64_t seq = t->journal ? journal_append(t->journal, key_of(ino, index), offset, old) : 0;
  pthread_mutex_unlock(&t->spare);
  return seq;
}
