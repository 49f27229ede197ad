/**
 * What `cowvol serve` tells Prometheus (prom-client): per volume, counters
 * in the shape of node_exporter's diskstats (so dashboards and alerts made
 * for disks read them), and for the pool, the engine, FUSE and CSI.
 *
 * Nothing is counted here on the data path: the addon counts per FUSE
 * thread (native/src/volume_stats.c), the pool counts commits and CoW
 * breaks, and every collector reads those at scrape time. Only the commit
 * and CSI histograms are observed as things happen (both off the data path).
 *
 * Caveats: counters start at zero with each daemon process, a restart
 * included (Prometheus treats that as a counter reset). A volume's series
 * go away with the volume. The native latency histogram is written out by
 * hand (latencyText): its buckets are counted in C, and prom-client's
 * Histogram can only be fed one observation at a time.
 */
import client from 'prom-client';

import type { Pool } from '../blockstore/pool.js';
import type { BlockFiles } from '../fuse/block-files.js';
import { STAT_KINDS, type IoCounts } from '../fuse/session.js';
import { claimOf } from '../csi/driver.js';

/** Volumes a FUSE thread slot counts separately (native/src/volume_stats.c); beyond, requests are counted as untracked. */
export const COUNTED_VOLUMES = 1024;

export interface MetricsSources {
  pool: Pool;
  files: BlockFiles;
  /** Bytes free on the filesystem under the pool (the limit of a pool without a capacity). */
  hostFree(): number;
}

const VOLUME_LABELS = ['volume', 'namespace', 'persistentvolumeclaim'] as const;
type VolumeLabel = (typeof VOLUME_LABELS)[number];

/** A per-volume counter, its field of IoCounts, and what it counts. */
const VOLUME_COUNTERS: [string, (c: IoCounts) => number, string][] = [
  ['cowvol_volume_reads_completed_total', (c) => c.read.count, 'Reads completed'],
  ['cowvol_volume_writes_completed_total', (c) => c.write.count, 'Writes completed'],
  ['cowvol_volume_read_bytes_total', (c) => c.read.bytes, 'Bytes read'],
  ['cowvol_volume_written_bytes_total', (c) => c.write.bytes, 'Bytes written'],
  ['cowvol_volume_read_time_seconds_total', (c) => c.read.seconds, 'Seconds spent on reads, request in to reply out'],
  ['cowvol_volume_write_time_seconds_total', (c) => c.write.seconds, 'Seconds spent on writes, request in to reply out'],
  ['cowvol_volume_flushes_completed_total', (c) => c.flush.count, 'Flushes (fsync, fdatasync) completed'],
  ['cowvol_volume_flush_time_seconds_total', (c) => c.flush.seconds, 'Seconds spent on flushes'],
  ['cowvol_volume_discards_completed_total', (c) => c.discard.count, 'Discards (punched holes, zeroed ranges) completed'],
  ['cowvol_volume_discarded_bytes_total', (c) => c.discard.bytes, 'Bytes discarded'],
];

export class Metrics {
  readonly registry = new client.Registry();
  private readonly src: MetricsSources;
  private readonly csi: client.Histogram<'method' | 'code'>;

  constructor(src: MetricsSources) {
    this.src = src;
    client.collectDefaultMetrics({ register: this.registry });
    this.volumeMetrics();
    this.poolMetrics();
    this.engineMetrics();
    const commits = new client.Histogram({
      name: 'cowvol_commit_duration_seconds',
      help: 'Seconds from sealing a commit to its superblock being durable',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers: [this.registry],
    });
    src.pool.onCommit = (seconds) => commits.observe(seconds);
    this.csi = new client.Histogram({
      name: 'cowvol_csi_operation_duration_seconds',
      help: 'CSI calls by method and the gRPC code they were answered with',
      labelNames: ['method', 'code'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [this.registry],
    });
  }

  /** Records one CSI call (DriverContext.observe). */
  observeCsi(method: string, code: string, seconds: number): void {
    this.csi.observe({ method, code }, seconds);
  }

  /** The whole exposition, in Prometheus' text format. */
  async text(): Promise<string> {
    return (await this.registry.metrics()) + latencyText(this.src.files);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private volumeMetrics(): void {
    const { pool, files } = this.src;
    const register = [this.registry];
    const labelsOf = new Map<number, Record<VolumeLabel, string>>();
    let io = new Map<number, IoCounts>();
    // Every collector of the family runs in one scrape; the first reads the sources for all.
    const refresh = (): void => {
      labelsOf.clear();
      for (const v of pool.list()) {
        const claim = claimOf(v.labels);
        labelsOf.set(v.id, { volume: v.name, namespace: claim?.namespace ?? '', persistentvolumeclaim: claim?.name ?? '' });
      }
      io = files.volumeStats().byVolume;
    };
    VOLUME_COUNTERS.forEach(([name, field, help], i) => {
      new client.Counter({
        name,
        help,
        labelNames: VOLUME_LABELS,
        registers: register,
        collect() {
          if (i === 0) refresh();
          this.reset();
          for (const [id, labels] of labelsOf) {
            const counts = io.get(id);
            this.inc(labels, counts === undefined ? 0 : field(counts));
          }
        },
      });
    });
    const gauge = (name: string, help: string, value: (id: number) => number): void => {
      new client.Gauge({
        name,
        help,
        labelNames: VOLUME_LABELS,
        registers: register,
        collect() {
          this.reset();
          for (const [id, labels] of labelsOf) this.set(labels, value(id));
        },
      });
    };
    gauge('cowvol_volume_size_bytes', 'Size of the volume', (id) => pool.stat(id).size);
    gauge('cowvol_volume_allocated_bytes', 'Bytes of chunks the volume maps (shared ones included)', (id) => pool.stat(id).allocatedBytes);
    gauge('cowvol_volume_condition_abnormal', '1 once the block file answered the volume EIO or EUCLEAN since the daemon started', (id) => (files.errorCount(id) > 0 ? 1 : 0));
  }

  private poolMetrics(): void {
    const { pool } = this.src;
    const register = [this.registry];
    const gauge = (name: string, help: string, value: () => number): void => {
      new client.Gauge({
        name,
        help,
        registers: register,
        collect() {
          this.set(value());
        },
      });
    };
    // The host's free space is read once a scrape (by the first of these, which runs first), so the three agree.
    let hostFree = 0;
    const capacity = (): number => {
      hostFree = this.src.hostFree();
      const s = pool.stats();
      return s.capacityBytes > 0 ? s.capacityBytes : s.usedBytes + hostFree;
    };
    gauge('cowvol_pool_capacity_bytes', 'Bytes the pool may hold: its capacity, or what it holds plus what the host filesystem has free', capacity);
    gauge('cowvol_pool_used_bytes', 'Bytes of chunks in use', () => pool.stats().usedBytes);
    gauge('cowvol_pool_free_bytes', 'Bytes the pool can still allocate: within its capacity and what the host filesystem has free', () => {
      const s = pool.stats();
      return s.capacityBytes > 0 ? Math.min(s.freeChunks * s.chunkSize, hostFree) : hostFree;
    });
    gauge('cowvol_pool_metadata_pages', 'Metadata pages in use (4 KiB each)', () => pool.stats().metaPages);
    gauge('cowvol_pool_volumes', 'Volumes and snapshots in the pool', () => pool.stats().volumes);
    gauge('cowvol_pool_shared_chunk_references', 'Chunk references beyond each chunk\'s first: chunks snapshots and clones hold without a copy', () => {
      const mapped = pool.list().reduce((sum, v) => sum + v.allocatedBytes, 0) / pool.chunkSize;
      return Math.max(0, mapped - pool.stats().usedChunks);
    });
    gauge('cowvol_metadata_cache_bytes', 'Bytes of metadata pages in memory', () => pool.stats().cacheBytes);
    gauge('cowvol_metadata_cache_budget_bytes', 'The budget those pages are held to (--cache-size)', () => pool.stats().cacheBudget);
  }

  private engineMetrics(): void {
    const { pool, files } = this.src;
    const register = [this.registry];
    const counter = (name: string, help: string, value: () => number): void => {
      new client.Counter({
        name,
        help,
        registers: register,
        collect() {
          this.reset();
          this.inc(value());
        },
      });
    };
    counter('cowvol_commits_total', 'Durable commits', () => pool.activity().commits);
    counter('cowvol_cow_breaks_total', 'Writes that found their chunk shared and copied it', () => pool.activity().cowBreaks);
    counter('cowvol_metadata_cache_hits_total', 'Metadata page lookups served from memory', () => pool.activity().cache.hits);
    counter('cowvol_metadata_cache_misses_total', 'Metadata page lookups read from disk', () => pool.activity().cache.misses);
    counter('cowvol_metadata_cache_evictions_total', 'Metadata pages pushed out by the budget', () => pool.activity().cache.evictions);
    counter('cowvol_fuse_native_first_writes_total', 'Chunks first written by the addon itself, from the chunks the pool set aside', () => files.stats().firstWrites);
    counter('cowvol_fuse_untracked_requests_total', 'Requests counted for no volume because a thread\'s table of volumes was full', () => files.volumeStats().untracked);
    new client.Counter({
      name: 'cowvol_fuse_javascript_requests_total',
      help: 'FUSE requests the native fast path handed to JavaScript, by operation',
      labelNames: ['op'],
      registers: register,
      collect() {
        this.reset();
        for (const [op, n] of files.slowRequests()) this.inc({ op }, n);
      },
    });
    new client.Counter({
      name: 'cowvol_fuse_native_requests_total',
      help: 'FUSE requests the addon served without JavaScript, by what they were',
      labelNames: ['op'],
      registers: register,
      collect() {
        this.reset();
        const s = files.stats();
        const byOp: Record<string, number> = { read: s.fastReads, write: s.fastWrites, fsync: s.fastFlushes };
        for (const [op, n] of Object.entries(byOp)) this.inc({ op }, n);
      },
    });
  }
}

/** The native latency histogram (volume_stats.c) as a Prometheus histogram family, `op` by request kind. */
function latencyText(files: BlockFiles): string {
  const name = 'cowvol_request_duration_seconds';
  const lines = [
    `# HELP ${name} Seconds from a FUSE request's arrival to its reply, every volume together: op="flush" is fsync latency`,
    `# TYPE ${name} histogram`,
  ];
  const latency = files.latency();
  for (const op of STAT_KINDS) {
    const h = latency.get(op);
    if (h === undefined) continue;
    let total = 0;
    for (const b of h.buckets) {
      total += b.count;
      lines.push(`${name}_bucket{op="${op}",le="${b.le === Infinity ? '+Inf' : String(b.le)}"} ${total}`);
    }
    lines.push(`${name}_sum{op="${op}"} ${h.seconds}`, `${name}_count{op="${op}"} ${total}`);
  }
  return lines.length > 2 ? `\n${lines.join('\n')}\n` : '';
}
