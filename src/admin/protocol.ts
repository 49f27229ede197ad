/**
 * The admin protocol: what the CLI and the daemon say over the root-only
 * socket POOL/cowvol.sock. One request per connection, one JSON object per
 * line each way:
 *
 *   CLI -> daemon   {"v": 2, "op": "volume.create", "args": {"name": "a", "size": 1048576}}
 *   daemon -> CLI   {"progress": {"done": 3, "total": 9}}      (long operations, any number)
 *                   {"result": ...} or {"error": {"code": "EEXIST", "message": "..."}}   (last)
 *
 * Results are data (the CLI formats them, or prints them with --json);
 * errors carry a stable code from src/errors.ts. Version 1 carried argv in
 * and terminal text out; a daemon answers a version-1 request in version 1's
 * shape with a message that says what to do, and a request of another
 * version with EPROTO.
 */
import type { MountView } from '../fuse/cowfs-mount.js';
import type { CheckReport } from '../blockstore/check.js';
import type { ErrorCode } from '../errors.js';
import type { ExportResult, ImportResult } from '../volumes/image.js';
import type { VolumeView } from '../volumes/volumes.js';

export const PROTOCOL_VERSION = 2;

/** Largest request accepted; requests are small. */
export const MAX_REQUEST_BYTES = 64 * 1024;

export interface PoolSummary {
  pool: string;
  uuid: string;
  chunkSize: number;
  capacityBytes: number | null;
  usedBytes: number;
  freeBytes: number;
  volumes: number;
  snapshots: number;
  metadataPages: number;
  generation: number;
  /** The daemon serving the pool, and the keeper holding its FUSE connection (null when none). */
  pid: number | null;
  keeperPid: number | null;
  /** Where the daemon's /metrics and /healthz answer (HOST:PORT), or null. */
  metricsAddress: string | null;
}

/** Every operation: its arguments and its result. */
export interface Operations {
  'pool.show': [Record<string, never>, PoolSummary];
  'volume.create': [{ name: string; size: number; kind?: string }, VolumeView];
  'volume.list': [Record<string, never>, VolumeView[]];
  'volume.show': [{ name: string }, VolumeView & { exclusiveBytes: number }];
  'volume.grow': [{ name: string; size: number }, VolumeView];
  'volume.delete': [{ name: string }, { deleted: string }];
  'snapshot.create': [{ name: string }, VolumeView];
  'snapshot.list': [{ volume?: string }, VolumeView[]];
  'snapshot.delete': [{ name: string }, { deleted: string }];
  'group.create': [{ name: string; volumes: string[] }, VolumeView[]];
  'group.delete': [{ name: string }, { deleted: string[] }];
  clone: [{ source: string; name: string; size?: number }, VolumeView];
  import: [{ file: string; volume: string }, ImportResult];
  export: [{ source: string; file: string }, ExportResult];
  check: [Record<string, never>, CheckReport];
  demo: [Record<string, never>, { lines: string[] }];
  'daemon.stop': [Record<string, never>, { pid: number; keeperPid: number | null }];
  mount: [{ source: string; dir: string; readOnly?: boolean }, MountView];
  unmount: [{ dir: string }, { unmounted: string }];
  'mount.list': [Record<string, never>, MountView[]];
}

export type { MountView } from '../fuse/cowfs-mount.js';

export type OpName = keyof Operations;
export type ArgsOf<K extends OpName> = Operations[K][0];
export type ResultOf<K extends OpName> = Operations[K][1];

export interface Request {
  v: number;
  op: string;
  args: Record<string, unknown>;
}

export type Reply = { progress: { done: number; total: number } } | { result: unknown } | { error: { code: ErrorCode; message: string } };
