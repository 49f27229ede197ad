/**
 * The cowvol CLI as an operator runs it: a real process on a real pool
 * directory. Every bad input gets one line on stderr, a non-zero exit and an
 * unchanged pool.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import { tmpDir } from './helpers/pools.js';

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'cowvol.js');

interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

function cowvol(env: Record<string, string>, ...args: string[]): Result {
  const r = spawnSync(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function json<T>(r: Result): T {
  return JSON.parse(r.stdout) as T;
}

interface VolumeJson {
  name: string;
  size: number;
  chunkSize: number;
  allocatedBytes: number;
  exclusiveBytes: number;
  snapshotCount: number;
  origin: string | null;
}

t.test('pool directory: --pool beats $COWVOL_POOL; init twice is refused', async (t) => {
  const a = tmpDir('cli-a');
  const b = tmpDir('cli-b');
  t.teardown(() => [a, b].forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const env = { COWVOL_POOL: a };
  t.equal(cowvol(env, 'pool', 'init', '--chunk-size', '16K').status, 0);
  t.ok(fs.existsSync(path.join(a, 'cowvol.meta')), '$COWVOL_POOL used');
  t.equal(cowvol(env, 'pool', 'init', '--pool', b).status, 0);
  t.ok(fs.existsSync(path.join(b, 'cowvol.meta')), '--pool used');
  const again = cowvol(env, 'pool', 'init');
  t.equal(again.status, 1);
  t.match(again.stderr, /^cowvol: a pool already exists in .*\n$/);
  const show = json<{ chunkSize: number; volumes: number }>(cowvol(env, 'pool', 'show', '--json'));
  t.equal(show.chunkSize, 16384);
  t.equal(show.volumes, 0);
  for (const bad of ['3K', '2M', 'x']) {
    const r = cowvol({ COWVOL_POOL: path.join(a, `bad-${bad}`) }, 'pool', 'init', '--chunk-size', bad);
    t.equal(r.status, 1, `chunk size ${bad} refused`);
    t.equal(r.stderr.split('\n').length, 2, 'one line');
  }
});

t.test('volumes, snapshots and clones through the CLI', async (t) => {
  const dir = tmpDir('cli-v');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const env = { COWVOL_POOL: dir };
  t.equal(cowvol(env, 'pool', 'init').status, 0);
  t.equal(cowvol(env, 'volume', 'create', 'data', '--size', '100MiB').status, 0);
  const img = path.join(dir, 'img.raw');
  const content = Buffer.alloc(4 << 20);
  content.write('first block', 0);
  content.fill(7, 3 << 20);
  fs.writeFileSync(img, content);
  const imp = cowvol(env, 'import', img, 'data');
  t.equal(imp.status, 0, imp.stderr);
  t.equal(cowvol(env, 'snapshot', 'create', 'data@one').status, 0);
  t.equal(cowvol(env, 'clone', 'data@one', 'copy', '--size', '200M').status, 0);
  t.equal(cowvol(env, 'volume', 'grow', 'data', '--size', '1G').status, 0);

  const show = json<VolumeJson>(cowvol(env, 'volume', 'show', 'data', '--json'));
  t.equal(show.name, 'data');
  t.equal(show.size, 1 << 30);
  t.equal(show.chunkSize, 65536);
  t.equal(show.allocatedBytes, (1 << 20) + 65536, 'zeros stayed unallocated: 1 chunk + 1 MiB');
  t.equal(show.exclusiveBytes, 0, 'everything is shared with the snapshot');
  t.equal(show.snapshotCount, 1);
  t.equal(show.origin, null);
  const copy = json<VolumeJson>(cowvol(env, 'volume', 'show', 'copy', '--json'));
  t.equal(copy.origin, 'data@one');
  t.equal(copy.size, 200 << 20);

  const list = json<VolumeJson[]>(cowvol(env, 'volume', 'list', '--json'));
  t.same(list.map((v) => v.name), ['copy', 'data']);
  t.match(cowvol(env, 'volume', 'list').stdout, /^NAME\s+KIND\s+SIZE\s+ALLOCATED\s+SNAPSHOTS\s+ORIGIN\ncopy\s+block\s+200 MiB/);
  t.same(json<VolumeJson[]>(cowvol(env, 'snapshot', 'list', 'data', '--json')).map((s) => s.name), ['data@one']);

  const out = path.join(dir, 'out.raw');
  t.equal(cowvol(env, 'export', 'data@one', out).status, 0);
  const exported = fs.readFileSync(out);
  t.equal(exported.length, 100 << 20, 'export has the volume size');
  t.ok(exported.subarray(0, content.length).equals(content), 'export holds the imported bytes');
  t.ok(fs.statSync(out).blocks * 512 < 4 << 20, 'export is sparse');

  t.equal(cowvol(env, 'volume', 'delete', 'data').status, 0);
  t.same(json<VolumeJson[]>(cowvol(env, 'snapshot', 'list', '--json')).map((s) => s.name), ['data@one'], 'snapshot outlives its volume');
  t.equal(cowvol(env, 'snapshot', 'delete', 'data@one').status, 0);
  const check = cowvol(env, 'check');
  t.equal(check.status, 0);
  t.match(check.stdout, /^clean: /);
  t.equal(json<VolumeJson>(cowvol(env, 'volume', 'show', 'copy', '--json')).exclusiveBytes, (1 << 20) + 65536, 'the clone now owns its chunks');
});

t.test('bad input: one line, non-zero exit, pool unchanged', async (t) => {
  const dir = tmpDir('cli-bad');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const env = { COWVOL_POOL: dir };
  cowvol(env, 'pool', 'init');
  cowvol(env, 'volume', 'create', 'v', '--size', '1M');
  cowvol(env, 'snapshot', 'create', 'v@s');
  const big = path.join(dir, 'big.raw');
  fs.writeFileSync(big, Buffer.alloc(2 << 20, 1));
  const metaBefore = fs.readFileSync(path.join(dir, 'cowvol.meta'));
  const cases: [string[], RegExp][] = [
    [['volume', 'create', 'Bad', '--size', '1M'], /invalid volume name 'Bad'/],
    [['volume', 'create', 'w', '--size', '1.5G'], /invalid size '1.5G'/],
    [['volume', 'create', 'w', '--size', '1000'], /multiple of 4KiB/],
    [['volume', 'create', 'w'], /missing --size/],
    [['volume', 'create', 'v', '--size', '1M'], /'v' already exists/],
    [['volume', 'grow', 'v', '--size', '512K'], /shrinking .* is not supported/],
    [['volume', 'grow', 'nope', '--size', '2M'], /no volume or snapshot named 'nope'/],
    [['volume', 'delete', 'v@s'], /invalid volume name|is a snapshot/],
    [['snapshot', 'create', 'v'], /use VOLUME@SNAPSHOT/],
    [['snapshot', 'create', 'v@s'], /'v@s' already exists/],
    [['snapshot', 'delete', 'v@nope'], /no volume or snapshot named 'v@nope'/],
    [['clone', 'v@s', 'v'], /'v' already exists/],
    [['import', big, 'v'], /larger than 'v'.*grow the volume first/],
    [['import', path.join(dir, 'missing'), 'v'], /no such file/],
    [['import', big, 'v@s'], /read-only snapshot/],
    [['volume', 'list', '--bogus'], /unknown option --bogus/],
    [['volume', 'show'], /missing NAME/],
    [['pool', 'show', '--pool', path.join(dir, 'nowhere')], /does not exist: run 'cowvol pool init/],
    [['pool', 'show', '--pool', path.join(dir, 'big.raw')], /not a cowvol pool/],
  ];
  for (const [args, message] of cases) {
    const r = cowvol(env, ...args);
    t.not(r.status, 0, `${args.join(' ')}: non-zero exit`);
    t.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`);
    t.match(r.stderr, message, `${args.join(' ')}: says what is wrong`);
    t.equal(r.stderr.trimEnd().split('\n').length, 1, `${args.join(' ')}: one line`);
  }
  t.ok(fs.readFileSync(path.join(dir, 'cowvol.meta')).equals(metaBefore), 'metadata file byte-for-byte unchanged');
  const unknown = cowvol(env, 'frobnicate');
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /unknown command 'frobnicate'/);
  t.match(cowvol(env, 'help').stdout, /cowvol volume create NAME --size SIZE/);
});

t.test('a second process gets one line naming the holder', async (t) => {
  const dir = tmpDir('cli-lock');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  cowvol({ COWVOL_POOL: dir }, 'pool', 'init');
  const holderScript = `
    import { PoolDir } from ${JSON.stringify(path.resolve(path.dirname(bin), '..', 'dist', 'src', 'blockstore', 'pool-dir.js'))};
    PoolDir.open(${JSON.stringify(dir)});
    process.stdout.write('holding\\n');
    setInterval(() => {}, 1000);
  `;
  const holder = spawn(process.execPath, ['--input-type=module', '-e', holderScript], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => holder.kill('SIGKILL'));
  await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
  const r = cowvol({ COWVOL_POOL: dir }, 'volume', 'list');
  t.equal(r.status, 1);
  t.equal(r.stderr, `cowvol: pool ${dir} is in use by process ${holder.pid}\n`);
  holder.kill('SIGKILL');
  await new Promise((resolve) => holder.once('exit', resolve));
  t.equal(cowvol({ COWVOL_POOL: dir }, 'volume', 'list').status, 0, 'the lock died with its holder');
});

t.test('check exits non-zero and says what is wrong on a damaged pool', async (t) => {
  const dir = tmpDir('cli-check');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const env = { COWVOL_POOL: dir };
  cowvol(env, 'pool', 'init');
  cowvol(env, 'volume', 'create', 'v', '--size', '1M');
  // A second commit: the first one's pages are damaged too, so falling back past a torn newest commit finds them.
  cowvol(env, 'volume', 'create', 'w', '--size', '1M');
  const meta = path.join(dir, 'cowvol.meta');
  const bytes = fs.readFileSync(meta);
  // Damage every page past the superblocks: some of them are in use.
  for (let p = 2; p * 4096 < bytes.length; p++) bytes[p * 4096 + 200] = (bytes[p * 4096 + 200] ?? 0) ^ 0x5a;
  fs.writeFileSync(meta, bytes);
  const r = cowvol(env, 'check');
  t.not(r.status, 0);
  t.match(r.stdout + r.stderr, /damaged|checksum/);
});

t.test('demo walks through a pool and lists its volumes, and can run again', async (t) => {
  const dir = tmpDir('cli-demo');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const first = cowvol({ COWVOL_POOL: dir }, 'demo');
  t.equal(first.status, 0, first.stderr);
  t.match(first.stdout, /demo-clone reads: "hello from the clone\\n"/);
  t.match(first.stdout, /NAME\s+KIND\s+SIZE\s+ALLOCATED\s+SNAPSHOTS\s+ORIGIN\ndemo\s+block\s+1 GiB\s+[\d.]+ MiB\s+1\s+-\ndemo-clone\s+block\s+2 GiB/);
  const second = cowvol({ COWVOL_POOL: dir }, 'demo');
  t.equal(second.status, 0);
  t.equal(cowvol({ COWVOL_POOL: dir }, 'check').status, 0);
});

t.test('progress bars appear on a terminal and never in pipes', async (t) => {
  const dir = tmpDir('cli-tty');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const env = { COWVOL_POOL: dir };
  cowvol(env, 'pool', 'init');
  cowvol(env, 'volume', 'create', 'v', '--size', '64M');
  const img = path.join(dir, 'img.raw');
  fs.writeFileSync(img, Buffer.alloc(32 << 20, 1));
  const piped = cowvol(env, 'import', img, 'v', '--cache-size', '1M');
  t.equal(piped.status, 0);
  t.equal(piped.stderr, '', 'no progress on a pipe');
  // script(1) runs the command on a pseudo-terminal and copies what it printed.
  const tty = spawnSync('script', ['-qec', `${process.execPath} ${bin} import ${img} v`, '/dev/null'], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  t.equal(tty.status, 0, tty.stderr);
  t.match(tty.stdout, /import v \[#+ *\] +\d+%/, 'a bar with a percentage on the terminal');
  t.match(cowvol(env, 'check', '--cache-size', 'lots').stderr, /invalid cache size 'lots'/);
});
