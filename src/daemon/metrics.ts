/**
 * What `cowvol serve` tells Prometheus (prom-client): per volume, counters
 * in the shape of node_exporter's diskstats (so dashboards and alerts made
 * for disks read them), per cowfs mount, and for the pool, the engine, FUSE
 * and CSI.
 *
 * Nothing is counted here on the data path: the addon counts per FUSE
 * thread (native/src/volume_stats.c), the pool counts commits and CoW
 * breaks, and a scrape reads all of it once (`Reading`) before the
 * collectors report from it, so the numbers of one scrape agree. Only the
 * commit and CSI histograms are observed as things happen (both off the
 * data path).
 *
 * Caveats: counters start at zero with each daemon process, a restart
 * included (Prometheus treats that as a counter reset). A volume's series
 * go away with the volume. The native latency histogram is written out by
 * hand (latencyText): its buckets are counted in C, and prom-client's
 * Histogram can only be fed one observation at a time.
 */
import client from 'prom-client';

import type { Pool, PoolStats, VolumeInfo } from '../blockstore/pool.js';
import { poolFreeBytes } from '../blockstore/pool-dir.js';
import type { BlockFiles } from '../fuse/block-files.js';
import { STAT_KINDS, type IoCounts } from '../fuse/session.js';
import { claimOf } from '../csi/driver.js';
import type { MountCounters } from './fs-mounts.js';

/** Volumes a FUSE thread slot counts separately (native/src/volume_stats.c); beyond, requests are counted as untracked. */
export const COUNTED_VOLUMES = 1024;

export interface MetricsSources {
  pool: Pool;
  files: BlockFiles;
  /** Bytes free on the filesystem under the pool (the limit of a pool without a capacity). */
  hostFree(): number;
  /** The cowfs mounts' counters; none without it. */
  fsMounts?(): MountCounters[];
}

const VOLUME_LABELS = ['volume', 'namespace', 'persistentvolumeclaim'] as const;

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

/** What one scrape reads from the pool and the addon, once, before any collector runs. */
interface Reading {
  volumes: VolumeInfo[];
  io: Map<number, IoCounts>;
  untracked: number;
  pool: PoolStats;
  activity: ReturnType<Pool['activity']>;
  hostFree: number;
  fuse: ReturnType<BlockFiles['stats']>;
  slow: Map<string, number>;
  /** Each cowfs mount's counters, with its series labels resolved once per scrape. */
  cowfs: (MountCounters & { labels: Record<string, string> })[];
}

export class Metrics {
  readonly registry = new client.Registry();
  private readonly src: MetricsSources;
  private readonly csi: client.Histogram<'method' | 'code'>;
  private now: Reading;

  constructor(src: MetricsSources) {
    this.src = src;
    this.now = this.read();
    client.collectDefaultMetrics({ register: this.registry });
    this.volumeMetrics();
    this.poolMetrics();
    this.engineMetrics();
    this.cowfsMetrics();
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

  /** The whole exposition, in Prometheus' text format: the sources are read once, then every collector reports from that. */
  async text(): Promise<string> {
    this.now = this.read();
    return (await this.registry.metrics()) + latencyText(this.src.files);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private read(): Reading {
    const { pool, files } = this.src;
    const io = files.volumeStats();
    const volumes = pool.list();
    return {
      volumes,
      io: io.byVolume,
      untracked: io.untracked,
      pool: pool.stats(),
      activity: pool.activity(),
      hostFree: this.src.hostFree(),
      fuse: files.stats(),
      slow: files.slowRequests(),
      cowfs: (this.src.fsMounts?.() ?? []).map((m) => ({ ...m, labels: mountLabels(m, volumes) })),
    };
  }

  /** A counter or gauge family reported from the scrape's reading: `values` gives each series' labels and value. */
  private family(kind: 'counter' | 'gauge', name: string, help: string, labelNames: readonly string[], values: (r: Reading) => [Record<string, string>, number][]): void {
    const reading = (): Reading => this.now;
    const opts = { name, help, labelNames, registers: [this.registry] };
    if (kind === 'counter') {
      new client.Counter({
        ...opts,
        collect() {
          this.reset();
          for (const [labels, value] of values(reading())) this.inc(labels, value);
        },
      });
    } else {
      new client.Gauge({
        ...opts,
        collect() {
          this.reset();
          for (const [labels, value] of values(reading())) this.set(labels, value);
        },
      });
    }
  }

  private volumeMetrics(): void {
    const { files } = this.src;
    const perVolume = (value: (v: VolumeInfo, r: Reading) => number) => (r: Reading): [Record<string, string>, number][] =>
      r.volumes.map((v) => [volumeLabels(v.name, v.labels), value(v, r)]);
    for (const [name, field, help] of VOLUME_COUNTERS) {
      this.family('counter', name, help, VOLUME_LABELS, perVolume((v, r) => {
        const counts = r.io.get(v.id);
        return counts === undefined ? 0 : field(counts);
      }));
    }
    this.family('gauge', 'cowvol_volume_size_bytes', 'Size of the volume', VOLUME_LABELS, perVolume((v) => v.size));
    this.family('gauge', 'cowvol_volume_allocated_bytes', 'Bytes of chunks the volume maps (shared ones included)', VOLUME_LABELS, perVolume((v) => v.allocatedBytes));
    this.family('gauge', 'cowvol_volume_condition_abnormal', '1 once the block file answered the volume EIO or EUCLEAN since the daemon started', VOLUME_LABELS, perVolume((v) => (files.errorCount(v.id) > 0 ? 1 : 0)));
  }

  private poolMetrics(): void {
    const gauge = (name: string, help: string, value: (r: Reading) => number): void => this.family('gauge', name, help, [], (r) => [[{}, value(r)]]);
    gauge('cowvol_pool_capacity_bytes', 'Bytes the pool may hold: its capacity, or what it holds plus what the host filesystem has free', (r) =>
      r.pool.capacityBytes > 0 ? r.pool.capacityBytes : r.pool.usedBytes + r.hostFree,
    );
    gauge('cowvol_pool_used_bytes', 'Bytes of chunks in use', (r) => r.pool.usedBytes);
    gauge('cowvol_pool_free_bytes', 'Bytes the pool can still allocate: within its capacity and what the host filesystem has free', (r) => poolFreeBytes(r.pool, r.hostFree));
    gauge('cowvol_pool_metadata_pages', 'Metadata pages in use (4 KiB each)', (r) => r.pool.metaPages);
    gauge('cowvol_pool_volumes', 'Volumes and snapshots in the pool', (r) => r.pool.volumes);
    gauge('cowvol_pool_shared_chunk_references', 'Chunk references beyond each chunk\'s first: chunks snapshots and clones hold without a copy', (r) => {
      const mapped = r.volumes.reduce((sum, v) => sum + v.allocatedBytes, 0) / r.pool.chunkSize;
      return Math.max(0, mapped - r.pool.usedChunks);
    });
    gauge('cowvol_metadata_cache_bytes', 'Bytes of metadata pages in memory', (r) => r.pool.cacheBytes);
    gauge('cowvol_metadata_cache_budget_bytes', 'The budget those pages are held to (--cache-size)', (r) => r.pool.cacheBudget);
  }

  private engineMetrics(): void {
    const counter = (name: string, help: string, value: (r: Reading) => number): void => this.family('counter', name, help, [], (r) => [[{}, value(r)]]);
    counter('cowvol_commits_total', 'Durable commits', (r) => r.activity.commits);
    counter('cowvol_cow_breaks_total', 'Writes that found their chunk shared and copied it', (r) => r.activity.cowBreaks);
    counter('cowvol_metadata_cache_hits_total', 'Metadata page lookups served from memory', (r) => r.activity.cache.hits);
    counter('cowvol_metadata_cache_misses_total', 'Metadata page lookups read from disk', (r) => r.activity.cache.misses);
    counter('cowvol_metadata_cache_evictions_total', 'Metadata pages pushed out by the budget', (r) => r.activity.cache.evictions);
    counter('cowvol_fuse_native_first_writes_total', 'Chunks first written by the addon itself, from the chunks the pool set aside', (r) => r.fuse.firstWrites);
    counter('cowvol_fuse_untracked_requests_total', 'Requests counted for no volume because a thread\'s table of volumes was full', (r) => r.untracked);
    this.family('counter', 'cowvol_fuse_javascript_requests_total', 'FUSE requests the native fast path handed to JavaScript, by operation', ['op'], (r) =>
      [...r.slow].map(([op, n]) => [{ op }, n]),
    );
    this.family('counter', 'cowvol_fuse_native_requests_total', 'FUSE requests the addon served without JavaScript, by what they were', ['op'], (r) => [
      [{ op: 'read' }, r.fuse.fastReads],
      [{ op: 'write' }, r.fuse.fastWrites],
      [{ op: 'fsync' }, r.fuse.fastFlushes],
    ]);
  }

  /** Per cowfs mount, counted since it was mounted or taken over: a remount or restart starts them again (a counter reset). */
  private cowfsMetrics(): void {
    this.family('gauge', 'cowvol_cowfs_mounts', 'cowfs mounts the daemon serves', [], (r) => [[{}, r.cowfs.length]]);
    const opLabels = [...VOLUME_LABELS, 'op'];
    this.family('counter', 'cowvol_cowfs_native_requests_total', 'cowfs requests the addon served without JavaScript, by what they were', opLabels, (r) =>
      r.cowfs.flatMap(
        (m) =>
          [
            [{ ...m.labels, op: 'read' }, m.fastReads],
            [{ ...m.labels, op: 'write' }, m.fastWrites],
            [{ ...m.labels, op: 'fdatasync' }, m.fastFlushes],
            [{ ...m.labels, op: 'lookup_absent' }, m.absentNames],
          ] as [Record<string, string>, number][],
      ),
    );
    this.family('counter', 'cowvol_cowfs_native_first_writes_total', 'Chunks a cowfs mount\'s addon first wrote itself, from its reserve (among the native writes)', VOLUME_LABELS, (r) =>
      r.cowfs.map((m) => [m.labels, m.firstWrites]),
    );
    this.family('counter', 'cowvol_cowfs_native_cow_breaks_total', 'Shared chunks (after a snapshot or a reflink) a cowfs mount\'s addon copied itself at their first write, into its reserve', VOLUME_LABELS, (r) =>
      r.cowfs.map((m) => [m.labels, m.cowBreaks]),
    );
    this.family('counter', 'cowvol_cowfs_javascript_requests_total', 'cowfs requests decided in JavaScript (metadata, and data the addon does not serve)', VOLUME_LABELS, (r) =>
      r.cowfs.map((m) => [m.labels, m.slowRequests]),
    );
  }
}

/** A volume's series labels (VOLUME_LABELS): its name and, for a CSI volume, its PVC. */
function volumeLabels(name: string, labels: Record<string, string>): Record<string, string> {
  const claim = claimOf(labels);
  return { volume: name, namespace: claim?.namespace ?? '', persistentvolumeclaim: claim?.name ?? '' };
}

/** A cowfs mount's series carry its volume (VOL, or VOL@SNAP for a snapshot mounted read-only) as the block volumes' do. */
function mountLabels(m: MountCounters, volumes: VolumeInfo[]): Record<string, string> {
  return volumeLabels(m.source, volumes.find((v) => v.name === m.source)?.labels ?? {});
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
