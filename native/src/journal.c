/*
 * The map-change journal, in a memfd the keeper holds (keeper.c).
 *
 * Why: a daemon acknowledges a write once its data is in the data file and
 * its mapping in the pool's memory; the mapping reaches the disk at the next
 * commit. If the daemon is killed in between, the data is still in the host's
 * page cache but the mapping is gone, and a successor serving the pool from
 * its last commit would silently lose writes that ext4 above believes done.
 * So every mapping change on the data path (a first write, native or not, a
 * CoW break, an unmap) is appended here before the request is answered, and
 * a successor replays what the commit it opened does not hold. The journal
 * lives in memory only: after a reboot the page cache is gone too, and
 * unflushed writes may be lost anyway.
 *
 * cowfs mounts journal more (src/daemon/journal-replay.ts has the rules):
 * each request's tree items as one unit with a DONE record naming it, the
 * addon's first writes into a file's chunks, and writes past a file's end.
 * Those are long records (journal.h): a head slot, then 24 payload bytes
 * per slot, each slot with its own seq, and `next` moves past a record (or
 * a unit of them) only once all of it is stored.
 *
 * Format: a header (marks: which seq each recent commit covers) and a ring
 * of 32-byte records. A record counts once its `seq` field holds its own
 * seq, stored last; `next` moves after that, so a record torn by a kill is
 * past `next` and ignored (its request was not answered; the kernel resends
 * it). Marks are written before a commit's superblock, trims after it.
 *
 * Bounded: `capacity` records; a full ring refuses appends, and the pool
 * commits before that (pool.ts, `journalRoom`). A take promises its slots
 * before its compare-and-swap (journal_promise), so an append from another
 * session's table cannot make it fail after.
 *
 * Lock: `mu` guards appends, promises, marks and trims; every session of a
 * daemon shares one mapping of a memfd (journal_open keeps a registry).
 */
#include "journal.h"
#include "fileops.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define JOURNAL_MAGIC 0x31766f6c6a776f63ULL /* "cowjlov1" */

static size_t header_bytes(void) {
  return (sizeof(journal_header) + 4095) & ~(size_t)4095;
}

/* Mappings of journals this process has open, so sessions sharing a memfd share one lock. */
#define JOURNALS_MAX 8
static journal *journals[JOURNALS_MAX];
static pthread_mutex_t journals_mu = PTHREAD_MUTEX_INITIALIZER;

static journal *journal_map(int fd, int create, uint64_t capacity) {
  journal *j = calloc(1, sizeof(journal));
  if (!j) return NULL;
  if (create) {
    j->bytes = header_bytes() + capacity * sizeof(journal_record);
    if (ftruncate(fd, (off_t)j->bytes) != 0) goto fail;
  } else {
    journal_header probe;
    if (pread(fd, &probe, sizeof(probe), 0) != (ssize_t)sizeof(probe) || probe.magic != JOURNAL_MAGIC || probe.capacity == 0) {
      errno = EINVAL;
      goto fail;
    }
    j->bytes = header_bytes() + probe.capacity * sizeof(journal_record);
  }
  void *p = mmap(NULL, j->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) goto fail;
  j->fd = fd;
  j->h = p;
  j->ring = (journal_record *)((char *)p + header_bytes());
  if (create) {
    memset(j->h, 0, sizeof(journal_header));
    j->h->capacity = capacity;
    j->h->head = 1;
    j->h->next = 1; /* seq 0 means "none" */
    atomic_thread_fence(memory_order_release);
    j->h->magic = JOURNAL_MAGIC;
  }
  pthread_mutex_init(&j->mu, NULL);
  j->refs = 1;
  return j;
fail:
  free(j);
  return NULL;
}

journal *journal_open(int fd, int create, uint64_t capacity) {
  struct stat st;
  if (fstat(fd, &st) != 0) return NULL;
  pthread_mutex_lock(&journals_mu);
  journal *j = NULL;
  int free_at = -1;
  for (int i = 0; i < JOURNALS_MAX && !j; i++) {
    if (journals[i] && journals[i]->file == (uint64_t)st.st_ino && !create) j = journals[i];
    else if (!journals[i] && free_at < 0) free_at = i;
  }
  if (j) {
    j->refs++;
  } else if (free_at < 0) {
    errno = EMFILE;
  } else if ((j = journal_map(fd, create, capacity)) != NULL) {
    j->file = (uint64_t)st.st_ino;
    journals[free_at] = j;
  }
  pthread_mutex_unlock(&journals_mu);
  return j;
}

void journal_close(journal *j) {
  if (!j) return;
  pthread_mutex_lock(&journals_mu);
  int last = --j->refs == 0;
  if (last)
    for (int i = 0; i < JOURNALS_MAX; i++)
      if (journals[i] == j) journals[i] = NULL;
  pthread_mutex_unlock(&journals_mu);
  if (!last) return;
  munmap(j->h, j->bytes);
  pthread_mutex_destroy(&j->mu);
  free(j);
}

/* Caller holds mu. */
static int fits(journal *j, uint64_t slots) {
  return j->h->next - j->h->head + j->promised + slots <= j->h->capacity;
}

/* Caller holds mu and made sure the slot fits. */
static uint64_t put_slot(journal *j, uint64_t key, int64_t offset, int64_t old) {
  uint64_t seq = j->h->next;
  journal_record *r = &j->ring[seq % j->h->capacity];
  r->key = key;
  r->offset = offset;
  r->old = old;
  atomic_store_explicit((_Atomic uint64_t *)&r->seq, seq, memory_order_release);
  /* Published slot by slot: a long record torn by a kill ends past `next` only once whole. */
  return seq;
}

static void publish(journal *j, uint64_t next) {
  atomic_store_explicit((_Atomic uint64_t *)&j->h->next, next, memory_order_release);
}

uint64_t journal_slots(size_t len) {
  return 1 + (len + JOURNAL_PAYLOAD - 1) / JOURNAL_PAYLOAD;
}

/* Caller holds mu and made sure the record fits. */
/* Stores a long record at seq `first` on without publishing it; returns the seq after it. Caller holds mu and made sure it fits. */
static uint64_t put_long(journal *j, uint64_t first, int kind, uint64_t volume, int64_t aux, const void *payload, size_t len) {
  uint64_t seq = first;
  journal_record *r = &j->ring[seq % j->h->capacity];
  r->key = JOURNAL_LONG | (uint64_t)kind << 48 | (volume & 0xffffffffffffULL);
  r->offset = (int64_t)len;
  r->old = aux;
  atomic_store_explicit((_Atomic uint64_t *)&r->seq, seq, memory_order_release);
  for (size_t at = 0; at < len; at += JOURNAL_PAYLOAD) {
    seq++;
    journal_record *p = &j->ring[seq % j->h->capacity];
    size_t n = len - at < JOURNAL_PAYLOAD ? len - at : JOURNAL_PAYLOAD;
    char *dst = (char *)&p->key;
    memset(dst, 0, JOURNAL_PAYLOAD);
    memcpy(dst, (const char *)payload + at, n);
    atomic_store_explicit((_Atomic uint64_t *)&p->seq, seq, memory_order_release);
  }
  return seq + 1;
}

uint64_t journal_append(journal *j, uint64_t key, int64_t offset, int64_t old) {
  pthread_mutex_lock(&j->mu);
  uint64_t seq = 0;
  if (fits(j, 1)) {
    seq = put_slot(j, key, offset, old);
    publish(j, seq + 1);
  }
  pthread_mutex_unlock(&j->mu);
  return seq;
}

uint64_t journal_append_long(journal *j, int kind, uint64_t volume, int64_t aux, const void *payload, size_t len) {
  pthread_mutex_lock(&j->mu);
  uint64_t seq = 0;
  if (fits(j, journal_slots(len))) {
    seq = j->h->next;
    publish(j, put_long(j, seq, kind, volume, aux, payload, len));
  }
  pthread_mutex_unlock(&j->mu);
  return seq;
}

uint64_t journal_append_batch(journal *j, const journal_item *items, size_t n, uint64_t done_volume, uint64_t done) {
  pthread_mutex_lock(&j->mu);
  uint64_t slots = done ? journal_slots(sizeof(done)) : 0;
  for (size_t i = 0; i < n; i++) slots += journal_slots(items[i].klen + items[i].vlen);
  uint64_t first = 0;
  if (fits(j, slots)) {
    first = j->h->next;
    /* `next` moves once, past all of them: a kill part way leaves none. */
    uint64_t next = first;
    for (size_t i = 0; i < n; i++) {
      const journal_item *it = &items[i];
      next = put_long(j, next, it->deleted ? JOURNAL_ITEM_DEL : JOURNAL_ITEM_PUT, it->volume, (int64_t)it->klen, it->payload, it->klen + it->vlen);
    }
    if (done) next = put_long(j, next, JOURNAL_DONE, done_volume, 0, &done, sizeof(done));
    publish(j, next);
  }
  pthread_mutex_unlock(&j->mu);
  return first;
}

int journal_promise(journal *j, uint64_t slots) {
  pthread_mutex_lock(&j->mu);
  int ok = fits(j, slots);
  if (ok) j->promised += slots;
  pthread_mutex_unlock(&j->mu);
  return ok;
}

void journal_unpromise(journal *j, uint64_t slots) {
  pthread_mutex_lock(&j->mu);
  assert(j->promised >= slots);
  j->promised -= slots;
  pthread_mutex_unlock(&j->mu);
}

uint64_t journal_append_promised(journal *j, uint64_t key, int64_t offset, int64_t old) {
  pthread_mutex_lock(&j->mu);
  assert(j->promised >= 1);
  j->promised -= 1;
  uint64_t seq = put_slot(j, key, offset, old);
  publish(j, seq + 1);
  pthread_mutex_unlock(&j->mu);
  return seq;
}

uint64_t journal_append_long_promised(journal *j, int kind, uint64_t volume, int64_t aux, const void *payload, size_t len) {
  pthread_mutex_lock(&j->mu);
  uint64_t slots = journal_slots(len);
  assert(j->promised >= slots);
  j->promised -= slots;
  uint64_t seq = j->h->next;
  publish(j, put_long(j, seq, kind, volume, aux, payload, len));
  pthread_mutex_unlock(&j->mu);
  return seq;
}

uint64_t journal_next(journal *j) {
  return atomic_load_explicit((_Atomic uint64_t *)&j->h->next, memory_order_acquire);
}

double journal_fill(journal *j) {
  pthread_mutex_lock(&j->mu);
  double f = (double)(j->h->next - j->h->head) / (double)j->h->capacity;
  pthread_mutex_unlock(&j->mu);
  return f;
}

void journal_mark(journal *j, uint64_t generation, uint64_t covered) {
  pthread_mutex_lock(&j->mu);
  commit_mark *m = &j->h->marks[j->h->marks_written % JOURNAL_MARKS];
  m->generation = generation;
  m->covered = covered;
  atomic_store_explicit((_Atomic uint64_t *)&j->h->marks_written, j->h->marks_written + 1, memory_order_release);
  pthread_mutex_unlock(&j->mu);
}

void journal_trim(journal *j, uint64_t covered) {
  pthread_mutex_lock(&j->mu);
  if (covered > j->h->head && covered <= j->h->next) j->h->head = covered;
  pthread_mutex_unlock(&j->mu);
}

long journal_since(journal *j, uint64_t generation, journal_record *out, size_t n) {
  pthread_mutex_lock(&j->mu);
  long found = -1;
  uint64_t from = 0;
  uint64_t written = j->h->marks_written;
  for (uint64_t i = 0; i < JOURNAL_MARKS && i < written; i++) {
    commit_mark *m = &j->h->marks[(written - 1 - i) % JOURNAL_MARKS];
    if (m->generation == generation) {
      from = m->covered;
      found = 0;
      break;
    }
  }
  /* The records from `from` must still be in the ring. */
  if (found == 0 && from < j->h->head) found = -1;
  for (uint64_t s = from; found >= 0 && s < j->h->next && (size_t)found < n; s++) {
    journal_record *r = &j->ring[s % j->h->capacity];
    if (r->seq != s) break;
    out[found++] = *r;
  }
  pthread_mutex_unlock(&j->mu);
  return found;
}

/* ---- JavaScript's side ------------------------------------------------------ */

/*
 * journalRead(fd, generation) -> a Buffer of the 32-byte slots past what
 * that commit holds (seq, key, offset, old, little-endian; a long record's
 * payload slots among them), or null when the journal has no mark for it
 * (then it cannot say what is missing). For a successor, before it serves.
 */
napi_value journal_js_read(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  double generation = 0;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_double(env, argv[1], &generation) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "journalRead(fd, generation): bad arguments");
    return NULL;
  }
  journal *j = journal_open(fd, 0, 0);
  if (!j) return cowvol_throw_errno(env, errno, "journal");
  size_t cap = (size_t)j->h->capacity;
  journal_record *out = malloc(cap * sizeof(journal_record));
  long n = out ? journal_since(j, (uint64_t)generation, out, cap) : -1;
  napi_value result;
  if (n < 0) napi_get_null(env, &result);
  else napi_create_buffer_copy(env, (size_t)n * sizeof(journal_record), out, NULL, &result);
  free(out);
  journal_close(j);
  return result;
}

/* journalCreate(capacity) -> fd of a new memfd journal. */
napi_value journal_js_create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double capacity = 0;
  if (argc < 1 || napi_get_value_double(env, argv[0], &capacity) != napi_ok || capacity < 1) {
    napi_throw_type_error(env, "EINVAL", "journalCreate(capacity): bad arguments");
    return NULL;
  }
  int fd = memfd_create("cowvol-journal", MFD_CLOEXEC);
  if (fd < 0) return cowvol_throw_errno(env, errno, "memfd_create");
  journal *j = journal_open(fd, 1, (uint64_t)capacity);
  if (!j) {
    int err = errno;
    close(fd);
    return cowvol_throw_errno(env, err, "journal");
  }
  journal_close(j);
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}
