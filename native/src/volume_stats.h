/*
 * Per-volume I/O counters in the shape of /proc/diskstats, counted on the
 * FUSE threads and summed when Prometheus scrapes (volume_stats.c).
 */
#ifndef COWVOL_VOLUME_STATS_H
#define COWVOL_VOLUME_STATS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { STAT_READ = 0, STAT_WRITE = 1, STAT_FLUSH = 2, STAT_DISCARD = 3, STAT_KINDS = 4 } stat_kind;

/* What one volume did, per kind: completed requests, bytes, nanoseconds spent. */
typedef struct {
  uint64_t ino;
  uint64_t count[STAT_KINDS];
  uint64_t bytes[STAT_KINDS];
  uint64_t ns[STAT_KINDS];
} volume_counts;

/* Latency buckets for every volume together: bucket i holds requests of at most 16 us << i; the last, the rest. */
#define STAT_BUCKETS 21
#define STAT_BUCKET_FIRST_NS 16000ull

typedef struct volume_stats volume_stats;

/* Tracks up to `volumes` inodes per thread slot; beyond, requests are only counted as untracked. */
volume_stats *stats_new(size_t volumes);
void stats_free(volume_stats *s);
void stats_add(volume_stats *s, uint64_t ino, stat_kind kind, uint64_t bytes, uint64_t ns);
/* Every slot's entries (an inode appears once per slot that counted it: the caller sums); returns how many, at most max. */
size_t stats_collect(volume_stats *s, volume_counts *out, size_t max);
/* The most entries stats_collect can return. */
size_t stats_capacity(volume_stats *s);
/* Drops an inode's counts (its volume is gone), so its entries serve other volumes. */
void stats_forget(volume_stats *s, uint64_t ino);
/* Latency histograms by kind, summed over the slots: out[kind][bucket], not cumulative; ns[kind], their total time. */
void stats_latency(volume_stats *s, uint64_t out[STAT_KINDS][STAT_BUCKETS], uint64_t ns[STAT_KINDS]);
/* Requests not counted per volume because a slot was full. */
uint64_t stats_untracked(volume_stats *s);

#endif
