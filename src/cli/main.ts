/**
 * `cowvol`: the operator's command line. Parses the command, runs it, prints
 * its text (or JSON with --json). Any error is one line on stderr that says
 * what to fix, with exit status 1 (2 for a malformed command line).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

import { CowvolError, fail, fromSystemError, isSystemError } from '../errors.js';
import { PoolDir, initPoolDir, isPoolDir, resolvePoolDir } from '../blockstore/pool-dir.js';
import { askDaemon } from '../admin/client.js';
import { runOperation } from '../admin/operations.js';
import type { OpName } from '../admin/protocol.js';
import { isLogLevel } from '../log.js';
import { DEFAULT_DRIVER_NAME, DEFAULT_KUBELET_DIR, DEFAULT_MAX_VOLUMES, socketPathOf } from '../csi/driver.js';
import { Volumes } from '../volumes/volumes.js';
import { formatSize, parseSize } from '../size.js';
import { type Parsed, parseArgs } from './args.js';
import { COMMANDS, type Command, type Output } from './commands.js';
import { Progress } from './progress.js';

/** The one command with no admin operation: it makes the pool that operations then run on, always here. */
const POOL_INIT_USAGE = 'pool init [--chunk-size SIZE] [--capacity SIZE]';
const GROUPS = new Set(['pool', 'volume', 'snapshot', 'group']);
/** The flags `cowvol serve` takes (deploy/ is checked against this list). */
export const SERVE_FLAGS = ['pool', 'mount', 'log-level', 'cache-size', 'csi-endpoint', 'node-id', 'kubelet-dir', 'driver-name', 'max-volumes', 'handover-grace', 'metrics-address', 'fs-threads', 'commit-interval'] as const;

const SERVE_USAGE =
  'serve [--mount DIR] [--log-level LEVEL] [--handover-grace SECONDS | --fd-store] [--metrics-address IP:PORT|none] [--fs-threads N] [--commit-interval SECONDS] [--csi-endpoint unix:///PATH [--node-id ID] [--kubelet-dir DIR] [--driver-name NAME] [--max-volumes N]]   (the node daemon; default mount /run/cowvol; SIGTERM hands the mount to the next serve within the grace, default 30; /metrics and /healthz on 127.0.0.1:9464 unless told; every cowfs mount shares --fs-threads FUSE threads, default 4; what nobody flushed is committed every --commit-interval seconds, default 5)';
const STOP_USAGE = 'stop   (stops the daemon for good: drain, commit, unmount; and the keeper that holds its mount)';
/** How long `cowvol stop` waits for the daemon and its keeper to exit. */
const STOP_WAIT_MS = 120_000;

export function helpText(): string {
  return [
    'usage: cowvol COMMAND [--pool DIR] [--cache-size SIZE] [--json]',
    '',
    `  cowvol ${POOL_INIT_USAGE}`,
    ...Object.values(COMMANDS).map((c) => `  cowvol ${c.usage}`),
    `  cowvol ${SERVE_USAGE}`,
    `  cowvol ${STOP_USAGE}`,
    '  cowvol bench [--quick] [--runtime SECONDS]   (fio against cowvol, a C FUSE passthrough and a plain file)',
    '',
    'SIZE: bytes, or a number with K, M, G or T and an optional iB (binary units).',
    'Pool directory: --pool DIR, else $COWVOL_POOL, else /var/lib/cowvol.',
    'Metadata cache: --cache-size SIZE (default 64M) bounds the memory the pool uses.',
  ].join('\n');
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs one CLI command: in the daemon that holds the pool, or on the pool directly when none does. */
export async function run(argv: string[]): Promise<RunResult> {
  const [first, second] = argv;
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') {
    return { stdout: `${helpText()}\n`, stderr: '', exitCode: first === undefined ? 2 : 0 };
  }
  if (first === 'stop') return await runStop(argv.slice(1));
  const name = GROUPS.has(first) ? `${first} ${second ?? ''}` : first;
  const spec = COMMANDS[name];
  if (!spec && name !== 'pool init') {
    const what = GROUPS.has(first) ? `'${first} ${second ?? ''}'`.replace(/ '$/, "'") : `'${first}'`;
    return { stdout: '', stderr: `cowvol: unknown command ${what}: see 'cowvol help'\n`, exitCode: 2 };
  }
  const rest = argv.slice(GROUPS.has(first) ? 2 : 1);
  try {
    const values = spec?.values ?? (spec ? [] : ['chunk-size', 'capacity']);
    const args = parseArgs(rest, new Set(['pool', 'cache-size', ...values]), new Set(['json', ...(spec?.switches ?? [])]));
    const pool = args.flags.get('pool');
    const poolDir = resolvePoolDir(typeof pool === 'string' ? pool : undefined);
    const out = spec ? await runCommand(spec, args, poolDir) : poolInit(args, poolDir);
    const stdout = args.flags.has('json') ? `${JSON.stringify(out.json, null, 2)}\n` : `${out.text}\n`;
    return { stdout, stderr: '', exitCode: out.exitCode ?? 0 };
  } catch (err) {
    if (err instanceof CowvolError || isSystemError(err)) {
      return { stdout: '', stderr: `cowvol: ${fromSystemError(err).message}\n`, exitCode: 1 };
    }
    throw err;
  }
}

/** `cowvol stop`: through the daemon's socket, then waits until it and its keeper are gone; with no daemon, a keeper waiting for one lets go. */
async function runStop(argv: string[]): Promise<RunResult> {
  try {
    const args = parseArgs(argv, new Set(['pool']), new Set(['json']));
    if (args.positional[0] !== undefined) fail('EINVAL', `unexpected argument '${args.positional[0]}': see 'cowvol help'`);
    const pool = args.flags.get('pool');
    const poolDir = resolvePoolDir(typeof pool === 'string' ? pool : undefined);
    const remote = await askDaemon(poolDir, 'daemon.stop', {}, () => {});
    let json: { pid: number | null; keeperPid: number | null };
    let text: string;
    if (remote !== null) {
      json = remote.result as { pid: number; keeperPid: number | null };
      await exited(json.pid as number);
      if (json.keeperPid !== null) await exited(json.keeperPid);
      text = `stopped the daemon (pid ${json.pid}): unmounted${json.keeperPid !== null ? `, keeper ${json.keeperPid} gone` : ''}`;
    } else {
      const { stopKeeper } = await import('../daemon/keeper.js');
      const keeper = stopKeeper(poolDir);
      // The cowfs connections it held died with its letting go: their mount points go too.
      if (keeper) (await import('../daemon/fs-mounts.js')).detachDeadMounts(poolDir);
      json = { pid: null, keeperPid: null };
      text = keeper ? 'no daemon was serving; the keeper unmounted what it held' : `nothing serves ${poolDir}`;
    }
    return { stdout: `${args.flags.has('json') ? JSON.stringify(json) : text}\n`, stderr: '', exitCode: 0 };
  } catch (err) {
    if (err instanceof CowvolError || isSystemError(err)) return { stdout: '', stderr: `cowvol: ${fromSystemError(err).message}\n`, exitCode: 1 };
    throw err;
  }
}

/** Waits for a process to exit (a zombie counts: its parent may be busy); nothing here to wait on but the process table. */
async function exited(pid: number): Promise<void> {
  const until = Date.now() + STOP_WAIT_MS;
  for (;;) {
    let stat = '';
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return;
    }
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return;
    if (Date.now() > until) fail('EBUSY', `process ${pid} is still running after ${STOP_WAIT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function runCommand(spec: Command, args: Parsed, poolDir: string): Promise<Output> {
  const cache = args.flags.get('cache-size');
  const cacheBytes = cache === undefined ? undefined : parseSize(String(cache), 'cache size');
  const opArgs = spec.args(args);
  const lines: string[] = [];
  if (spec.op === 'demo' && !isPoolDir(poolDir)) {
    initPoolDir(poolDir);
    lines.push(`initialized pool ${poolDir}`);
  }
  const result = await execute(spec.op, opArgs, poolDir, cacheBytes, spec.progress?.(opArgs));
  const out = spec.format(result as never, opArgs);
  if (spec.op !== 'demo') return out;
  const list = COMMANDS['volume list'] as Command;
  const vols = list.format((await execute(list.op, {}, poolDir, cacheBytes)) as never, {});
  return { text: [...lines, out.text, '', '$ cowvol volume list', vols.text].join('\n'), json: { pool: poolDir } };
}

/** One admin operation, through the daemon if one answers, else on the pool opened here. */
async function execute(op: OpName, args: object, poolDir: string, cacheBytes?: number, progressLabel?: string): Promise<unknown> {
  const bar = progressLabel === undefined ? null : new Progress(progressLabel);
  const progress = (done: number, total: number): void => bar?.update(done, total);
  try {
    const remote = await askDaemon(poolDir, op, args, progress);
    if (remote !== null) return remote.result;
    const handle = PoolDir.open(poolDir, cacheBytes === undefined ? {} : { cacheBytes });
    try {
      return await runOperation({ volumes: new Volumes(handle.pool), poolDir }, op, args, progress);
    } finally {
      handle.close();
    }
  } finally {
    bar?.done();
  }
}

function poolInit(args: Parsed, poolDir: string): Output {
  if (args.positional[0] !== undefined) fail('EINVAL', `unexpected argument '${args.positional[0]}': see 'cowvol help'`);
  // Before the lock: a daemon holding an existing pool must not turn "exists" into "busy".
  if (isPoolDir(poolDir)) fail('EEXIST', `a pool already exists in ${poolDir}`);
  const chunk = args.flags.get('chunk-size');
  const capacity = args.flags.get('capacity');
  initPoolDir(poolDir, {
    chunkSize: chunk === undefined ? undefined : parseSize(String(chunk), 'chunk size'),
    capacity: capacity === undefined ? undefined : parseSize(String(capacity), 'capacity'),
  });
  const handle = PoolDir.open(poolDir);
  try {
    const pool = handle.pool;
    return { text: `initialized pool ${poolDir} (chunk size ${formatSize(pool.chunkSize)})`, json: { pool: poolDir, chunkSize: pool.chunkSize, uuid: pool.uuid } };
  } finally {
    handle.close();
  }
}

/** Starts the daemon; it runs until SIGTERM or SIGINT. */
async function runServe(argv: string[]): Promise<void> {
  // Loaded here: the daemon (gRPC, FUSE) is more than a CLI command needs.
  const { DEFAULT_COMMIT_SECONDS, DEFAULT_MOUNT, serve } = await import('../daemon/serve.js');
  const { DEFAULT_GRACE_SECONDS } = await import('../daemon/keeper.js');
  const { DEFAULT_METRICS_ADDRESS, parseMetricsAddress } = await import('../daemon/metrics-endpoint.js');
  const { DEFAULT_FS_THREADS } = await import('../daemon/fs-mounts.js');
  let daemon;
  try {
    const args = parseArgs(argv, new Set(SERVE_FLAGS), new Set(['fd-store']));
    if (args.positional.length > 0) fail('EINVAL', `unexpected argument '${args.positional[0]}': see 'cowvol help'`);
    const flag = (name: string): string | undefined => {
      const v = args.flags.get(name);
      return typeof v === 'string' ? v : undefined;
    };
    const logLevel = flag('log-level') ?? 'info';
    if (!isLogLevel(logLevel)) fail('EINVAL', `invalid log level '${logLevel}': use fatal, error, warn, info, debug, trace or silent`);
    const cache = flag('cache-size');
    const endpoint = flag('csi-endpoint');
    if (endpoint === undefined) {
      for (const f of ['node-id', 'kubelet-dir', 'driver-name', 'max-volumes']) {
        if (flag(f) !== undefined) fail('EINVAL', `--${f} needs --csi-endpoint`);
      }
    } else socketPathOf(endpoint);
    const maxVolumes = Number(flag('max-volumes') ?? DEFAULT_MAX_VOLUMES);
    if (!Number.isSafeInteger(maxVolumes) || maxVolumes < 0) fail('EINVAL', `invalid --max-volumes '${flag('max-volumes')}': use a whole number, 0 for no limit`);
    const driverName = flag('driver-name') ?? DEFAULT_DRIVER_NAME;
    if (!/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,61}[a-zA-Z0-9])?$/.test(driverName)) fail('EINVAL', `invalid --driver-name '${driverName}': a domain-style name of at most 63 characters`);
    const grace = Number(flag('handover-grace') ?? DEFAULT_GRACE_SECONDS);
    if (!Number.isFinite(grace) || grace < 0 || grace > 3600) fail('EINVAL', `invalid --handover-grace '${flag('handover-grace')}': seconds from 0 (no keeper) to 3600`);
    const fdStore = args.flags.has('fd-store');
    if (fdStore && !process.env.NOTIFY_SOCKET) fail('EINVAL', '--fd-store keeps the FUSE connection in systemd\'s fd store: run it from the unit (no $NOTIFY_SOCKET here)');
    const metricsAddress = parseMetricsAddress(flag('metrics-address') ?? DEFAULT_METRICS_ADDRESS);
    const fsThreads = Number(flag('fs-threads') ?? DEFAULT_FS_THREADS);
    if (!Number.isSafeInteger(fsThreads) || fsThreads < 1 || fsThreads > 64) fail('EINVAL', `invalid --fs-threads '${flag('fs-threads')}': a whole number from 1 to 64`);
    const commitSeconds = Number(flag('commit-interval') ?? DEFAULT_COMMIT_SECONDS);
    if (!Number.isFinite(commitSeconds) || commitSeconds < 0.1 || commitSeconds > 3600) fail('EINVAL', `invalid --commit-interval '${flag('commit-interval')}': seconds from 0.1 to 3600`);
    const nodeId = flag('node-id') ?? os.hostname();
    if (nodeId === '' || Buffer.byteLength(nodeId) > 128) fail('EINVAL', `invalid --node-id '${nodeId}': 1 to 128 bytes`);
    daemon = serve({
      poolDir: resolvePoolDir(flag('pool')),
      mount: flag('mount') ?? DEFAULT_MOUNT,
      logLevel,
      cacheBytes: cache === undefined ? undefined : parseSize(cache, 'cache size'),
      handoverGrace: grace,
      fdStore,
      metricsAddress,
      fsThreads,
      commitSeconds,
      csi:
        endpoint === undefined
          ? undefined
          : { endpoint, nodeId, kubeletDir: flag('kubelet-dir') ?? DEFAULT_KUBELET_DIR, driverName, maxVolumesPerNode: maxVolumes },
    });
  } catch (err) {
    // Start-up failures (lock held, mount point unusable, FUSE refused) are one line too.
    if (!(err instanceof Error)) throw err;
    process.stderr.write(`cowvol: ${err.message}\n`);
    process.exitCode = 1;
    return;
  }
  const d = daemon;
  d.started.catch((err: unknown) => {
    // The CSI endpoint could not start: say so in one line and give the pool back.
    process.stderr.write(`cowvol: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
    void d.stop('start-up failed', true).catch(() => undefined);
  });
  // However it stops (a signal, or `cowvol stop` through the socket), the process ends with it.
  d.ended.then(
    () => process.exit(process.exitCode ?? 0),
    (err: unknown) => {
      d.log.fatal({ err }, 'stop failed');
      process.exit(1);
    },
  );
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void d.stop(signal).catch(() => undefined));
}

export async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'serve') {
    await runServe(argv.slice(1));
    return;
  }
  if (argv[0] === 'keeper') {
    // Started by `cowvol serve` (keeper.ts), not by people: holds the FUSE connection between daemons.
    const args = parseArgs(argv.slice(1), new Set(['pool', 'grace']), new Set());
    const { runKeeper } = await import('../daemon/keeper.js');
    const pool = args.flags.get('pool');
    runKeeper(resolvePoolDir(typeof pool === 'string' ? pool : undefined), Number(args.flags.get('grace') ?? 30));
    return;
  }
  if (argv[0] === 'bench') {
    // The fio harness is a program of its own (bench/fio-bench.ts); it runs for minutes.
    const harness = fileURLToPath(new URL('../../bench/fio-bench.js', import.meta.url));
    const r = spawnSync(process.execPath, [harness, ...argv.slice(1)], { stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
    return;
  }
  const result = await run(argv);
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  process.exitCode = result.exitCode;
}
