/**
 * Prometheus metrics from a real daemon: I/O through the kernel, then a
 * scrape over HTTP, and the counters must say what was done, per volume,
 * with CSI's PVC labels, and for the pool, the engine and CSI calls.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import t, { type Test } from 'tap';

import { abortFuseConnection, fuseConnectionOf } from '../src/host/fusectl.js';
import { MiB, blockCap, startCsi } from './helpers/csi.js';
import { Daemon, cli, metricsAddress, mountedVolume, scratchPool, sh } from './helpers/daemon.js';
import { type Scrape, get, scrape } from './helpers/scrape.js';

const CHUNK = 64 * 1024;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Writes `count` chunks of fresh bytes from chunk `first`, one write(2) each. */
function writeChunks(file: string, first: number, count: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    for (let i = 0; i < count; i++) fs.writeSync(fd, Buffer.alloc(CHUNK, i + 1), 0, CHUNK, (first + i) * CHUNK);
  } finally {
    fs.closeSync(fd);
  }
}

t.test('per-volume counters say what the kernel sent, in diskstats shape', async (t) => {
  const s = await startCsi(t, 'metrics-io', [], ['--metrics-address', '127.0.0.1:0']);
  t.equal(cli(s.pool, 'volume', 'create', 'v', '--size', '16M').status, 0);
  const address = metricsAddress(s.pool);
  if (address === null) throw new Error('no metrics address');
  t.match(address, /^127\.0\.0\.1:\d+$/, 'listens on localhost, on the port the kernel picked');
  const v = { volume: 'v' };
  const file = s.daemon.file('v');

  writeChunks(file, 0, 16);
  const fd = fs.openSync(file, 'r');
  for (let i = 0; i < 8; i++) fs.readSync(fd, Buffer.alloc(CHUNK), 0, CHUNK, i * CHUNK);
  fs.closeSync(fd);
  let m = await scrape(address);
  t.equal(m.value('cowvol_volume_writes_completed_total', v), 16);
  t.equal(m.value('cowvol_volume_written_bytes_total', v), 16 * CHUNK);
  t.equal(m.value('cowvol_volume_reads_completed_total', v), 8);
  t.equal(m.value('cowvol_volume_read_bytes_total', v), 8 * CHUNK);
  t.ok(m.value('cowvol_volume_write_time_seconds_total', v) > 0, 'write time counted');
  t.ok(m.value('cowvol_volume_read_time_seconds_total', v) > 0, 'read time counted');
  t.equal(m.value('cowvol_volume_size_bytes', v), 16 * MiB);
  t.equal(m.value('cowvol_volume_allocated_bytes', v), 16 * CHUNK);
  t.equal(m.value('cowvol_volume_condition_abnormal', v), 0);
  t.same(m.all('cowvol_volume_reads_completed_total', v)[0]?.labels, { volume: 'v', namespace: '', persistentvolumeclaim: '' }, 'no PVC: empty labels');
  t.equal(m.value('cowvol_fuse_untracked_requests_total'), 0);
  checkHistogram(t, m, 'read', 8);
  checkHistogram(t, m, 'write', 16);

  // The first fsync after first writes commits (JavaScript); the next one is the addon's own data sync.
  const before = m.value('cowvol_commits_total');
  const w = fs.openSync(file, 'r+');
  fs.fsyncSync(w);
  fs.writeSync(w, Buffer.alloc(CHUNK, 9), 0, CHUNK, 0);
  fs.fsyncSync(w);
  fs.closeSync(w);
  m = await scrape(address);
  t.equal(m.value('cowvol_volume_flushes_completed_total', v), 2);
  t.ok(m.value('cowvol_volume_flush_time_seconds_total', v) > 0);
  t.ok(m.value('cowvol_commits_total') > before, 'the fsync committed');
  t.equal(m.value('cowvol_commit_duration_seconds_count'), m.value('cowvol_commits_total'), 'every commit timed');
  t.ok(m.value('cowvol_fuse_javascript_requests_total', { op: 'fsync' }) >= 1, 'the committing fsync went to JavaScript');
  t.ok(m.value('cowvol_fuse_native_requests_total', { op: 'fsync' }) >= 1, 'the data-only fsync did not');
  t.ok(m.value('cowvol_fuse_javascript_requests_total', { op: 'lookup' }) >= 1);
  t.ok(m.value('cowvol_fuse_native_first_writes_total') >= 1, 'first writes served natively are counted');

  const punch = sh('fallocate', ['--punch-hole', '--offset', String(2 * CHUNK), '--length', String(2 * CHUNK), file]);
  t.equal(punch.status, 0, punch.stderr);
  m = await scrape(address);
  t.equal(m.value('cowvol_volume_discards_completed_total', v), 1);
  t.equal(m.value('cowvol_volume_discarded_bytes_total', v), 2 * CHUNK);
  t.equal(m.value('cowvol_volume_allocated_bytes', v), 14 * CHUNK, 'the punched chunks are gone');
  t.equal(m.value('cowvol_pool_used_bytes'), 14 * CHUNK);
  t.ok(m.value('cowvol_pool_free_bytes') > 0);
  t.equal(m.value('cowvol_pool_capacity_bytes'), m.value('cowvol_pool_used_bytes') + m.value('cowvol_pool_free_bytes'));
  t.equal(m.value('cowvol_pool_volumes'), 1);
  t.ok(m.value('cowvol_pool_metadata_pages') > 0);
  t.ok(m.value('cowvol_metadata_cache_hits_total') > 0);
  t.ok(m.value('cowvol_metadata_cache_budget_bytes') >= m.value('cowvol_metadata_cache_bytes'));
  t.ok(m.value('process_resident_memory_bytes') > 0, 'prom-client\'s process metrics');

  // A snapshot shares all 14 chunks; a write into one breaks it.
  t.equal(cli(s.pool, 'snapshot', 'create', 'v@s').status, 0);
  m = await scrape(address);
  t.equal(m.value('cowvol_pool_shared_chunk_references'), 14);
  const breaks = m.value('cowvol_cow_breaks_total');
  writeChunks(file, 5, 1);
  m = await scrape(address);
  t.equal(m.value('cowvol_cow_breaks_total'), breaks + 1);
  t.equal(m.value('cowvol_pool_shared_chunk_references'), 13);
  t.equal(m.value('cowvol_volume_size_bytes', { volume: 'v@s' }), 16 * MiB, 'snapshots have series too');

  // A deleted volume's series go with it.
  t.equal(cli(s.pool, 'snapshot', 'delete', 'v@s').status, 0);
  t.equal(cli(s.pool, 'volume', 'delete', 'v').status, 0);
  m = await scrape(address);
  t.same(m.all('cowvol_volume_writes_completed_total', v), [], 'no series for a deleted volume');
  t.equal(m.value('cowvol_pool_volumes'), 0);
});

function checkHistogram(t: Test, m: Scrape, op: string, count: number): void {
  const buckets = m.all('cowvol_request_duration_seconds_bucket', { op });
  t.ok(buckets.length > 10, `${op}: buckets`);
  for (let i = 1; i < buckets.length; i++) t.ok((buckets[i]?.value ?? 0) >= (buckets[i - 1]?.value ?? 0), `${op}: cumulative at ${buckets[i]?.labels.le}`);
  t.equal(buckets.at(-1)?.labels.le, '+Inf');
  t.equal(buckets.at(-1)?.value, count, `${op}: +Inf holds every request`);
  t.equal(m.value('cowvol_request_duration_seconds_count', { op }), count);
  t.ok(m.value('cowvol_request_duration_seconds_sum', { op }) > 0);
}

t.test('CSI volumes carry their PVC, and CSI calls are timed by method and code', async (t) => {
  const s = await startCsi(t, 'metrics-csi', [], ['--metrics-address', '127.0.0.1:0']);
  const address = metricsAddress(s.pool);
  if (address === null) throw new Error('no metrics address');
  const params = { 'csi.storage.k8s.io/pvc/name': 'data-db-0', 'csi.storage.k8s.io/pvc/namespace': 'shop', 'csi.storage.k8s.io/pv/name': 'pvc-1' };
  const created = await s.client.call<{ volume: { volumeId: string } }>('Controller', 'CreateVolume', {
    name: 'pvc-1',
    capacityRange: { requiredBytes: 8 * MiB },
    volumeCapabilities: [blockCap()],
    parameters: params,
  });
  const bad = await s.client.code('Controller', 'CreateVolume', { name: '', volumeCapabilities: [blockCap()] });
  t.not(bad.code, 0);
  writeChunks(s.daemon.file(created.volume.volumeId), 0, 3);
  const m = await scrape(address);
  const claim = { namespace: 'shop', persistentvolumeclaim: 'data-db-0' };
  t.equal(m.value('cowvol_volume_writes_completed_total', claim), 3, 'counted under the PVC\'s labels');
  t.equal(m.all('cowvol_volume_size_bytes', claim)[0]?.labels.volume, created.volume.volumeId);
  t.equal(m.value('cowvol_csi_operation_duration_seconds_count', { method: 'CreateVolume', code: 'OK' }), 1);
  t.equal(m.value('cowvol_csi_operation_duration_seconds_count', { method: 'CreateVolume', code: 'INVALID_ARGUMENT' }), 1);
});

t.test('cowfs mounts: what the addon served and what went to JavaScript, per mounted volume', async (t) => {
  const { pool, live: dir, d } = await mountedVolume(t, 'metrics-cowfs', 'files', '64M', ['--metrics-address', '127.0.0.1:0']);
  t.teardown(() => d.stop());
  const address = metricsAddress(pool) ?? '';
  let m = await scrape(address);
  t.equal(m.value('cowvol_cowfs_mounts'), 1, 'one mount');
  const v = { volume: 'files' };
  const js = m.value('cowvol_cowfs_javascript_requests_total', v);
  // A directory made in the mount: a missing name in it is answered natively, and so are reads of
  // chunks JavaScript served once.
  fs.mkdirSync(path.join(dir, 'd'));
  // Each create's lookup of its new name is a missing name too.
  fs.writeFileSync(path.join(dir, 'd', 'small'), Buffer.alloc(4096, 2));
  const file = path.join(dir, 'd', 'f');
  fs.writeFileSync(file, Buffer.alloc(4 * CHUNK, 3));
  for (let i = 0; i < 3; i++) t.notOk(fs.existsSync(path.join(dir, 'd', `missing-${i}`)));
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_DIRECT);
  for (let i = 0; i < 2; i++) fs.readSync(fd, Buffer.alloc(CHUNK), 0, CHUNK, 0);
  fs.closeSync(fd);
  m = await scrape(address);
  t.ok(m.value('cowvol_cowfs_javascript_requests_total', v) > js, 'the mkdir, create and open went to JavaScript');
  t.equal(m.value('cowvol_cowfs_native_requests_total', { ...v, op: 'lookup_absent' }), 5, 'two new names and three missing ones, answered natively');
  t.ok(m.value('cowvol_cowfs_native_requests_total', { ...v, op: 'read' }) >= 1, 'a read of a chunk JavaScript served once, natively');
  t.ok(m.value('cowvol_cowfs_native_first_writes_total', v) >= 1, 'the small file\'s first chunk, taken from the reserve natively');
  t.same(m.all('cowvol_cowfs_native_requests_total', { ...v, op: 'write' })[0]?.labels, { volume: 'files', namespace: '', persistentvolumeclaim: '', op: 'write' }, 'labelled as the block volumes are');
  // After a snapshot the file's chunks are shared: a read enters one, and a write into it is copied by the addon.
  t.equal(cli(pool, 'snapshot', 'create', 'files@s').status, 0);
  const again = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_DIRECT);
  const page = Buffer.alloc(CHUNK);
  fs.readSync(again, page, 0, CHUNK, CHUNK);
  fs.writeSync(again, Buffer.alloc(4096, 4), 0, 4096, CHUNK);
  fs.closeSync(again);
  m = await scrape(address);
  t.equal(m.value('cowvol_cowfs_native_cow_breaks_total', v), 1, 'the shared chunk, copied by the addon at its first write');
  t.equal(cli(pool, 'unmount', dir).status, 0);
  m = await scrape(address);
  t.equal(m.value('cowvol_cowfs_mounts'), 0, 'unmounted: no mount');
  t.same(m.all('cowvol_cowfs_javascript_requests_total', v), [], 'and its series are gone');
});

t.test('/healthz answers for the daemon, other paths and methods are refused', async (t) => {
  const s = scratchPool(t, 'metrics-health');
  const d = await Daemon.start(s.pool, s.mount, ['--metrics-address', '127.0.0.1:0']);
  t.teardown(() => d.stop());
  const address = metricsAddress(s.pool) ?? '';
  t.same(await get(`http://${address}/healthz`).then((r) => [r.status, r.body]), [200, 'ok\n']);
  t.equal((await get(`http://${address}/nope`)).status, 404);
  t.equal((await get(`http://${address}/metrics`, 'POST')).status, 405);
  const r = await get(`http://${address}/metrics`);
  t.match(r.type, /^text\/plain; version=0\.0\.4/, 'Prometheus text format');
  // A connection the kernel gave up on: the mount no longer answers, and /healthz says so.
  t.ok(abortFuseConnection(fuseConnectionOf(s.mount)), 'aborted the FUSE connection');
  const sick = await get(`http://${address}/healthz`);
  t.equal(sick.status, 503);
  t.match(sick.body, /^the mount .* does not answer: .*ENOTCONN/);
  await d.stop();
  await t.rejects(get(`http://${address}/healthz`), 'a stopped daemon no longer listens');
});

t.test('--metrics-address: none turns it off, a bad one is one line and nothing starts', async (t) => {
  const s = scratchPool(t, 'metrics-off');
  const d = await Daemon.start(s.pool, s.mount, ['--metrics-address', 'none']);
  t.equal(metricsAddress(s.pool), null);
  t.match(cli(s.pool, 'pool', 'show').stdout, /metrics +off/);
  await d.stop();
  for (const bad of ['9464', 'example.com:9464', '127.0.0.1:99999']) {
    const r = cli(s.pool, 'serve', '--mount', s.mount, '--metrics-address', bad);
    t.equal(r.status, 1, `'${bad}' refused`);
    t.match(r.stderr, /^cowvol: --metrics-address '.*' must be IP:PORT .*\n$/);
  }
});

t.test('the Grafana dashboard asks only for metrics the daemon exports', async (t) => {
  const s = await startCsi(t, 'metrics-dashboard', [], ['--metrics-address', '127.0.0.1:0']);
  t.equal(cli(s.pool, 'volume', 'create', 'v', '--size', '1M').status, 0);
  await s.client.code('Identity', 'Probe');
  writeChunks(s.daemon.file('v'), 0, 1);
  // A mounted filesystem volume: the cowfs panels' series exist only while one is mounted.
  const files = path.join(s.dir, 'files');
  fs.mkdirSync(files);
  t.equal(cli(s.pool, 'volume', 'create', 'f', '--size', '64M', '--kind', 'fs').status, 0);
  t.equal(cli(s.pool, 'mount', 'f', files).status, 0);
  const m = await scrape(metricsAddress(s.pool) ?? '');
  const exported = new Set(m.samples.map((x) => x.name));
  const dashboard = JSON.parse(fs.readFileSync(path.join(root, 'deploy', 'monitoring', 'grafana-dashboard.json'), 'utf8')) as {
    panels: { title: string; targets?: { expr: string }[] }[];
    templating: { list: { name: string; type: string; definition?: string }[] };
  };
  const exprs = [
    ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((x) => ({ panel: p.title, expr: x.expr }))),
    ...dashboard.templating.list.filter((v) => v.type === 'query').map((v) => ({ panel: `variable ${v.name}`, expr: v.definition ?? '' })),
  ];
  t.ok(exprs.length >= 8, 'the dashboard has queries');
  for (const { panel, expr } of exprs) {
    const names = [...expr.matchAll(/\b(cowvol_[a-z0-9_]+|process_[a-z0-9_]+|nodejs_[a-z0-9_]+)\b/g)].map((x) => x[1] as string);
    t.ok(names.length > 0, `${panel}: names a metric`);
    for (const name of names) t.ok(exported.has(name), `${panel}: ${name} is exported`);
  }
});
