/**
 * `cowvol`: the operator's command line. Parses the command, runs it, prints
 * its text (or JSON with --json). Any error is one line on stderr that says
 * what to fix, with exit status 1 (2 for a malformed command line).
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

import { CowvolError, fail } from '../errors.js';
import { resolvePoolDir } from '../blockstore/pool-dir.js';
import type { Pool } from '../blockstore/pool.js';
import { askDaemon } from './admin-client.js';
import { isLogLevel } from '../daemon/log.js';
import { DEFAULT_DRIVER_NAME, DEFAULT_KUBELET_DIR, DEFAULT_MAX_VOLUMES, socketPathOf } from '../csi/driver.js';
import { parseArgs } from './args.js';
import * as cmd from './commands.js';
import { parseSize } from './size.js';

interface CommandSpec {
  run: (ctx: cmd.Context) => cmd.Output;
  values?: string[];
  usage: string;
}

const COMMANDS: Record<string, CommandSpec> = {
  'pool init': { run: cmd.poolInit, values: ['chunk-size', 'capacity'], usage: 'pool init [--chunk-size SIZE] [--capacity SIZE]' },
  'pool show': { run: cmd.poolShow, usage: 'pool show' },
  'volume create': { run: cmd.volumeCreate, values: ['size'], usage: 'volume create NAME --size SIZE' },
  'volume list': { run: cmd.volumeList, usage: 'volume list' },
  'volume show': { run: cmd.volumeShow, usage: 'volume show NAME' },
  'volume grow': { run: cmd.volumeGrow, values: ['size'], usage: 'volume grow NAME --size SIZE' },
  'volume delete': { run: cmd.volumeDelete, usage: 'volume delete NAME' },
  'snapshot create': { run: cmd.snapshotCreate, usage: 'snapshot create VOL@SNAP' },
  'snapshot list': { run: cmd.snapshotList, usage: 'snapshot list [VOL]' },
  'snapshot delete': { run: cmd.snapshotDelete, usage: 'snapshot delete VOL@SNAP' },
  clone: { run: cmd.clone, values: ['size'], usage: 'clone SOURCE NEWVOL [--size SIZE]   (SOURCE: VOL or VOL@SNAP)' },
  import: { run: cmd.importCmd, usage: 'import FILE VOL' },
  export: { run: cmd.exportCmd, usage: 'export SOURCE FILE' },
  check: { run: cmd.check, usage: 'check' },
  demo: { run: cmd.demo, usage: 'demo   (init a pool if needed, then create, import, snapshot and clone a volume)' },
};

const GROUPS = new Set(['pool', 'volume', 'snapshot']);
/** The flags `cowvol serve` takes (deploy/ is checked against this list). */
export const SERVE_FLAGS = ['pool', 'mount', 'log-level', 'cache-size', 'csi-endpoint', 'node-id', 'kubelet-dir', 'driver-name', 'max-volumes'] as const;

const SERVE_USAGE =
  'serve [--mount DIR] [--log-level LEVEL] [--csi-endpoint unix:///PATH [--node-id ID] [--kubelet-dir DIR] [--driver-name NAME] [--max-volumes N]]   (the node daemon; default mount /run/cowvol)';

export function helpText(): string {
  return [
    'usage: cowvol COMMAND [--pool DIR] [--cache-size SIZE] [--json]',
    '',
    ...Object.values(COMMANDS).map((c) => `  cowvol ${c.usage}`),
    `  cowvol ${SERVE_USAGE}`,
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

/** Where a command runs: on its own (opening the pool) or inside the daemon that holds it. */
export interface Host {
  pool: Pool;
  poolDir: string;
}

export function run(argv: string[], host?: Host): RunResult {
  const [first, second] = argv;
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') {
    return { stdout: `${helpText()}\n`, stderr: '', exitCode: first === undefined ? 2 : 0 };
  }
  const name = GROUPS.has(first) ? `${first} ${second ?? ''}` : first;
  const spec = COMMANDS[name];
  if (!spec) {
    const what = GROUPS.has(first) ? `'${first} ${second ?? ''}'`.replace(/ '$/, "'") : `'${first}'`;
    return { stdout: '', stderr: `cowvol: unknown command ${what}: see 'cowvol help'\n`, exitCode: 2 };
  }
  const rest = argv.slice(GROUPS.has(first) ? 2 : 1);
  try {
    const args = parseArgs(rest, new Set(['pool', 'cache-size', ...(spec.values ?? [])]), new Set(['json']));
    const pool = args.flags.get('pool');
    const poolDir = host?.poolDir ?? resolvePoolDir(typeof pool === 'string' ? pool : undefined);
    const out = spec.run({ args, poolDir, pool: host?.pool });
    const stdout = args.flags.has('json') ? `${JSON.stringify(out.json, null, 2)}\n` : `${out.text}\n`;
    return { stdout, stderr: '', exitCode: out.exitCode ?? 0 };
  } catch (err) {
    if (err instanceof CowvolError) {
      return { stdout: '', stderr: `cowvol: ${err.message}\n`, exitCode: 1 };
    }
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && typeof e.path === 'string') {
      return { stdout: '', stderr: `cowvol: ${e.path}: ${e.message.replace(/^[A-Z]+: /, '')}\n`, exitCode: 1 };
    }
    throw err;
  }
}

/** Starts the daemon; it runs until SIGTERM or SIGINT. */
async function runServe(argv: string[]): Promise<void> {
  // Loaded here: the daemon (gRPC, FUSE) is more than a CLI command needs.
  const { DEFAULT_MOUNT, serve } = await import('../daemon/serve.js');
  let daemon;
  try {
    const args = parseArgs(argv, new Set(SERVE_FLAGS), new Set());
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
    const nodeId = flag('node-id') ?? os.hostname();
    if (nodeId === '' || Buffer.byteLength(nodeId) > 128) fail('EINVAL', `invalid --node-id '${nodeId}': 1 to 128 bytes`);
    daemon = serve({
      execute: run,
      poolDir: resolvePoolDir(flag('pool')),
      mount: flag('mount') ?? DEFAULT_MOUNT,
      logLevel,
      cacheBytes: cache === undefined ? undefined : parseSize(cache, 'cache size'),
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
    d.stop('start-up failed').finally(() => process.exit(1));
  });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      d.stop(signal).then(
        () => process.exit(0),
        (err: unknown) => {
          d.log.fatal({ err }, 'stop failed');
          process.exit(1);
        },
      );
    });
  }
}

export async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'serve') {
    await runServe(argv.slice(1));
    return;
  }
  if (argv[0] === 'bench') {
    // The fio harness is a program of its own (bench/fio-bench.ts); it runs for minutes.
    const harness = fileURLToPath(new URL('../../bench/fio-bench.js', import.meta.url));
    const r = spawnSync(process.execPath, [harness, ...argv.slice(1)], { stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
    return;
  }
  // A running daemon holds the pool: the command goes to it, same output, same errors.
  const result = (await askDaemon(argv)) ?? run(argv);
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  process.exitCode = result.exitCode;
}
