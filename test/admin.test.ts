/**
 * The typed admin protocol (src/admin/protocol.ts) against a real daemon,
 * spoken raw over its socket: results are data, refusals carry a stable
 * code and change nothing, other protocol versions get a clear message, and
 * a long import reports progress and runs in slices, so a FUSE write that
 * needs the daemon's JavaScript is answered while the import goes on.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import t, { type Test } from 'tap';

import { PROTOCOL_VERSION } from '../src/admin/protocol.js';
import { Daemon, bin, cli, scratchPool } from './helpers/daemon.js';

interface Exchange {
  lines: Record<string, unknown>[];
  /** Resolves with every line once the daemon closes the connection. */
  done: Promise<Record<string, unknown>[]>;
  /** Resolves when a line matching `pred` has arrived. */
  when(pred: (line: Record<string, unknown>) => boolean): Promise<void>;
}

function send(socket: string, request: object): Exchange {
  const conn = net.createConnection(socket);
  const lines: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: () => void }[] = [];
  let buf = '';
  conn.setEncoding('utf8');
  conn.on('connect', () => conn.write(`${JSON.stringify(request)}\n`));
  conn.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
      buf = buf.slice(nl + 1);
      lines.push(line);
      for (const w of waiters.splice(0)) {
        if (w.pred(line)) w.resolve();
        else waiters.push(w);
      }
    }
  });
  const done = new Promise<Record<string, unknown>[]>((resolve) => conn.on('close', () => resolve(lines)));
  const when = (pred: (l: Record<string, unknown>) => boolean): Promise<void> =>
    lines.some(pred) ? Promise.resolve() : new Promise((resolve) => waiters.push({ pred, resolve }));
  return { lines, done, when };
}

async function setup(t: Test, name: string): Promise<{ pool: string; socket: string; d: Daemon; dir: string }> {
  const { dir, pool, mount } = scratchPool(t, name);
  const d = await Daemon.start(pool, mount);
  t.teardown(() => d.stop());
  return { pool, socket: path.join(pool, 'cowvol.sock'), d, dir };
}

t.test('a client that connects and says nothing does not hold the daemon\'s stop', async (t) => {
  const { socket, d } = await setup(t, 'admin-idle');
  const conn = net.createConnection(socket);
  await new Promise<void>((resolve) => conn.once('connect', () => resolve()));
  const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
  conn.on('error', () => {});
  const { code } = await d.stop('SIGTERM');
  t.equal(code, 0, 'the daemon stopped, and cleanly');
  await closed;
  t.pass('and dropped the silent connection');
});

t.test('operations answer data; refusals carry a code and change nothing; other versions are told', async (t) => {
  const s = await setup(t, 'admin-proto');
  const made = await send(s.socket, { v: PROTOCOL_VERSION, op: 'volume.create', args: { name: 'a', size: 1 << 20 } }).done;
  t.match(made, [{ result: { name: 'a', size: 1 << 20, kind: 'block', readOnly: false } }], 'a result is the volume, as data');
  const meta = fs.readFileSync(path.join(s.pool, 'cowvol.meta'));
  const refusals: [string, object, string][] = [
    ['an existing name', { v: PROTOCOL_VERSION, op: 'volume.create', args: { name: 'a', size: 1 << 20 } }, 'EEXIST'],
    ['a size that is a string', { v: PROTOCOL_VERSION, op: 'volume.create', args: { name: 'b', size: '1M' } }, 'EINVAL'],
    ['an unknown argument', { v: PROTOCOL_VERSION, op: 'volume.list', args: { all: true } }, 'EINVAL'],
    ['an unknown operation', { v: PROTOCOL_VERSION, op: 'volume.frobnicate', args: {} }, 'EINVAL'],
    ['a relative path', { v: PROTOCOL_VERSION, op: 'import', args: { file: 'x.raw', volume: 'a' } }, 'EINVAL'],
    ['another protocol version', { v: PROTOCOL_VERSION + 1, op: 'volume.list', args: {} }, 'EPROTO'],
  ];
  for (const [what, req, code] of refusals) {
    const lines = await send(s.socket, req).done;
    t.equal(lines.length, 1, `${what}: one answer`);
    t.match(lines[0], { error: { code, message: /\S/ } }, `${what}: ${code}`);
  }
  const old = await send(s.socket, { argv: ['volume', 'list'] }).done;
  t.match(old, [{ stdout: '', exitCode: 1, stderr: /older than the daemon.*run the cowvol that came with the daemon/ }], 'a version-1 CLI is told in its own shape');
  t.ok(fs.readFileSync(path.join(s.pool, 'cowvol.meta')).equals(meta), 'no refused request changed the metadata');
});

t.test('an import through the daemon reports progress and lets FUSE answer meanwhile', async (t) => {
  const s = await setup(t, 'admin-import');
  const size = 512 << 20;
  t.equal(cli(s.pool, 'volume', 'create', 'big', '--size', String(size)).status, 0);
  t.equal(cli(s.pool, 'volume', 'create', 'other', '--size', '64M').status, 0);
  const image = path.join(s.dir, 'image.raw');
  const block = Buffer.alloc(1 << 20, 0x5a);
  const fd = fs.openSync(image, 'w');
  for (let at = 0; at < size; at += block.length) fs.writeSync(fd, block, 0, block.length, at);
  fs.closeSync(fd);
  // The probe opens its file first, then waits for "go": a 4 KiB O_DIRECT write into a chunk never written (the slow path).
  const probe = spawn('python3', ['-c', PROBE, s.d.file('other')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const probeSays = lineReader(probe.stdout);
  t.equal(await probeSays(), 'ready');
  const imp = send(s.socket, { v: PROTOCOL_VERSION, op: 'import', args: { file: image, volume: 'big' } });
  await imp.when((l) => 'progress' in l);
  probe.stdin.write('go\n');
  t.equal(await probeSays(), 'written', 'the FUSE write was answered');
  t.notOk(imp.lines.some((l) => 'result' in l || 'error' in l), 'while the import was still running');
  const lines = await imp.done;
  t.match(lines[lines.length - 1], { result: { bytes: size, writtenBytes: size } }, 'the import then finished');
  t.ok(lines.filter((l) => 'progress' in l).length >= 1, 'with progress on the way');
  probe.stdin.end();
  // The CLI draws the daemon's progress as its own bar on a terminal.
  const tty = spawnSync('script', ['-qec', `${process.execPath} ${bin} import ${image} big --pool ${s.pool}`, '/dev/null'], { encoding: 'utf8' });
  t.equal(tty.status, 0, tty.stderr);
  t.match(tty.stdout, /import big \[#+ *\] +\d+%/, 'a progress bar while the daemon does the work');
  t.match(cli(s.pool, 'check').stdout, /^clean: /, 'check through the daemon is clean');
});

const PROBE = `
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096); buf.write(b'p' * 4096)
print('ready', flush=True)
sys.stdin.readline()
os.pwritev(fd, [buf], 32 << 20)
print('written', flush=True)
sys.stdin.readline()
`;

function lineReader(stream: NodeJS.ReadableStream): () => Promise<string> {
  const lines: string[] = [];
  let tail = '';
  let wake: (() => void) | null = null;
  stream.on('data', (b: Buffer) => {
    tail += b.toString();
    const parts = tail.split('\n');
    tail = parts.pop() ?? '';
    lines.push(...parts);
    wake?.();
  });
  return async () => {
    while (lines.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    return lines.shift() ?? '';
  };
}

t.test('a check through the daemon stays right while snapshots come and go beside it', async (t) => {
  const s = await setup(t, 'admin-check');
  for (let i = 0; i < 40; i++) {
    const r = await send(s.socket, { v: PROTOCOL_VERSION, op: 'volume.create', args: { name: `v${i}`, size: 1 << 20 } }).done;
    if (!('result' in (r[0] ?? {}))) throw new Error(`creating v${i} failed: ${JSON.stringify(r)}`);
  }
  const check = send(s.socket, { v: PROTOCOL_VERSION, op: 'check', args: {} });
  let changes = 0;
  // Metadata changes between check's slices, for as long as the check runs: the check must not report them as damage.
  while (!check.lines.some((l) => 'result' in l || 'error' in l)) {
    const name = `v${changes % 40}@s${changes}`;
    await send(s.socket, { v: PROTOCOL_VERSION, op: 'snapshot.create', args: { name } }).done;
    await send(s.socket, { v: PROTOCOL_VERSION, op: 'snapshot.delete', args: { name } }).done;
    changes++;
  }
  const lines = await check.done;
  t.ok(changes > 0, `${changes} snapshots made and deleted while the check ran`);
  t.match(lines[lines.length - 1], { result: { ok: true, problems: [] } }, 'the check is clean');
  // The pass that counted saw one instant: the 40 volumes, and the snapshot of that moment if there was one.
  const counted = (lines[lines.length - 1] as { result?: { volumes?: number } }).result?.volumes ?? 0;
  t.ok(counted === 40 || counted === 41, `it counted one instant's volumes (${counted})`);
});
