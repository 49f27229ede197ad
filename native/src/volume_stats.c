/*
 * Per-volume I/O counters (see volume_stats.h), cheap enough to keep on for
 * every request: each FUSE thread counts into a slot of its own (one of
 * SLOTS, each on its own cache lines), so threads share no written line
 * unless there are more threads than slots. A scrape copies every slot's
 * entries and JavaScript sums them per volume.
 *
 * Locking: each slot has a mutex. The thread that owns the slot takes it for
 * one lookup and one add (uncontended: a few nanoseconds); a scrape and a
 * forget take each slot's mutex in turn. So an entry is never reused for
 * another inode while a thread adds to it.
 *
 * Bounds: a slot tracks at most `volumes` inodes, in an open-addressed table
 * of twice that many entries (linear probing, removal by shifting back).
 * A request whose inode finds its slot full counts only as untracked.
 * Inodes of deleted volumes are forgotten by JavaScript at scrape time.
 */
#include "volume_stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 16

typedef struct {
  _Alignas(64) pthread_mutex_t mu;
  size_t used;
  uint64_t untracked;
  uint64_t latency[STAT_KINDS][STAT_BUCKETS];
  uint64_t latency_ns[STAT_KINDS]; /* kept when a volume is forgotten, unlike its entry */
  volume_counts *entries; /* mask + 1 of them; ino 0 marks an empty entry */
} slot;

struct volume_stats {
  slot slots[SLOTS];
  size_t limit; /* inodes a slot tracks */
  size_t mask;
};

static atomic_uint slots_given;
static _Thread_local int my_slot = -1;

volume_stats *stats_new(size_t volumes) {
  if (volumes == 0) return NULL;
  size_t size = 2;
  while (size < volumes * 2) size <<= 1;
  volume_stats *s = calloc(1, sizeof(volume_stats));
  if (!s) return NULL;
  s->limit = volumes;
  s->mask = size - 1;
  for (int i = 0; i < SLOTS; i++) {
    s->slots[i].entries = calloc(size, sizeof(volume_counts));
    pthread_mutex_init(&s->slots[i].mu, NULL);
    if (!s->slots[i].entries) {
      stats_free(s);
      return NULL;
    }
  }
  return s;
}

void stats_free(volume_stats *s) {
  if (!s) return;
  for (int i = 0; i < SLOTS; i++) {
    pthread_mutex_destroy(&s->slots[i].mu);
    free(s->slots[i].entries);
  }
  free(s);
}

static size_t home_of(volume_stats *s, uint64_t ino) {
  /* Volume inodes are consecutive: a multiplicative hash spreads them. */
  return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 20) & s->mask;
}

/* The inode's entry in the slot, added if there is room; NULL when the slot is full. Under the slot's mutex. */
static volume_counts *entry_of(volume_stats *s, slot *sl, uint64_t ino) {
  size_t i = home_of(s, ino);
  for (size_t probes = 0; probes <= s->mask; probes++, i = (i + 1) & s->mask) {
    volume_counts *e = &sl->entries[i];
    if (e->ino == ino) return e;
    if (e->ino != 0) continue;
    if (sl->used >= s->limit) return NULL;
    sl->used++;
    e->ino = ino;
    return e;
  }
  return NULL; /* not reached: the table is never more than half full */
}

/* The first bucket whose bound (16 us << i) is at least ns. */
static int bucket_of(uint64_t ns) {
  if (ns <= STAT_BUCKET_FIRST_NS) return 0;
  uint64_t q = (ns - 1) / STAT_BUCKET_FIRST_NS; /* >= 1: bucket i holds q < 2^i */
  int i = 64 - __builtin_clzll(q);
  return i < STAT_BUCKETS - 1 ? i : STAT_BUCKETS - 1;
}

void stats_add(volume_stats *s, uint64_t ino, stat_kind kind, uint64_t bytes, uint64_t ns) {
  if (!s || ino == 0 || kind >= STAT_KINDS) return;
  if (my_slot < 0) my_slot = (int)(atomic_fetch_add(&slots_given, 1) % SLOTS);
  slot *sl = &s->slots[my_slot];
  pthread_mutex_lock(&sl->mu);
  sl->latency[kind][bucket_of(ns)]++;
  sl->latency_ns[kind] += ns;
  volume_counts *e = entry_of(s, sl, ino);
  if (e) {
    e->count[kind]++;
    e->bytes[kind] += bytes;
    e->ns[kind] += ns;
  } else {
    sl->untracked++;
  }
  pthread_mutex_unlock(&sl->mu);
}

size_t stats_collect(volume_stats *s, volume_counts *out, size_t max) {
  size_t n = 0;
  for (int i = 0; s && i < SLOTS; i++) {
    slot *sl = &s->slots[i];
    pthread_mutex_lock(&sl->mu);
    for (size_t j = 0; j <= s->mask && n < max; j++) {
      if (sl->entries[j].ino != 0) out[n++] = sl->entries[j];
    }
    pthread_mutex_unlock(&sl->mu);
  }
  return n;
}

size_t stats_capacity(volume_stats *s) {
  return s ? SLOTS * s->limit : 0;
}

/* Removes entry i and shifts later entries of the same probe run back, so every lookup still finds its inode. */
static void remove_at(volume_stats *s, slot *sl, size_t i) {
  size_t hole = i;
  size_t j = (i + 1) & s->mask;
  for (size_t probes = 0; probes < s->mask && sl->entries[j].ino != 0; probes++, j = (j + 1) & s->mask) {
    size_t home = home_of(s, sl->entries[j].ino);
    /* Entry j may fill the hole if its home is not in (hole, j], cyclically. */
    int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    sl->entries[hole] = sl->entries[j];
    hole = j;
  }
  memset(&sl->entries[hole], 0, sizeof(volume_counts));
  sl->used--;
}

void stats_forget(volume_stats *s, uint64_t ino) {
  for (int i = 0; s && ino != 0 && i < SLOTS; i++) {
    slot *sl = &s->slots[i];
    pthread_mutex_lock(&sl->mu);
    size_t j = home_of(s, ino);
    for (size_t probes = 0; probes <= s->mask && sl->entries[j].ino != 0; probes++, j = (j + 1) & s->mask) {
      if (sl->entries[j].ino != ino) continue;
      remove_at(s, sl, j);
      break;
    }
    pthread_mutex_unlock(&sl->mu);
  }
}

void stats_latency(volume_stats *s, uint64_t out[STAT_KINDS][STAT_BUCKETS], uint64_t ns[STAT_KINDS]) {
  memset(out, 0, sizeof(uint64_t) * STAT_KINDS * STAT_BUCKETS);
  memset(ns, 0, sizeof(uint64_t) * STAT_KINDS);
  for (int i = 0; s && i < SLOTS; i++) {
    pthread_mutex_lock(&s->slots[i].mu);
    for (int k = 0; k < STAT_KINDS; k++) {
      for (int b = 0; b < STAT_BUCKETS; b++) out[k][b] += s->slots[i].latency[k][b];
      ns[k] += s->slots[i].latency_ns[k];
    }
    pthread_mutex_unlock(&s->slots[i].mu);
  }
}

uint64_t stats_untracked(volume_stats *s) {
  uint64_t total = 0;
  for (int i = 0; s && i < SLOTS; i++) {
    pthread_mutex_lock(&s->slots[i].mu);
    total += s->slots[i].untracked;
    pthread_mutex_unlock(&s->slots[i].mu);
  }
  return total;
}
