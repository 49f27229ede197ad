#!/usr/bin/env node
// The whole test suite, as CI runs it: type-check and build, lint, then every
// test file under tap. Prints each named test's result and closes with the
// line "N passed, N failed"; exits non-zero on any failure. A skipped or
// todo test counts as failed: nothing passes by not running.
import { spawnSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
process.chdir(root);
let passed = 0;
let failed = 0;

function step(name, cmd, args) {
  console.log(`\n== ${name}: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status === 0) passed++;
  else {
    failed++;
    console.log(`not ok - ${name}`);
  }
  return r.status === 0;
}

fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true });
const built = step('type-check and build', 'npx', ['tsc', '-p', 'tsconfig.json']);
step('lint', 'npx', ['eslint', '.']);

if (built) {
  const filter = process.argv.slice(2);
  const files = fs
    .readdirSync(path.join(root, 'dist', 'test'))
    .filter((f) => f.endsWith('.test.js'))
    .filter((f) => filter.length === 0 || filter.some((x) => f.includes(x)))
    .sort()
    .map((f) => path.join('dist', 'test', f));
  console.log(`\n== tap: ${files.length} files`);
  const tap = spawn('npx', ['tap', '--reporter=tap', '--jobs=2', ...files], { stdio: ['ignore', 'pipe', 'inherit'] });
  let buffer = '';
  const onLine = (line) => {
    process.stdout.write(`${line}\n`);
    // Level 0: one per file (a file that dies before its tests counts once);
    // level 1: each named t.test().
    const m = /^( {0}| {4})(not ok|ok) \d+ - (.*)$/.exec(line);
    if (!m) return;
    const level = m[1].length / 4;
    const bad = m[2] === 'not ok' || /# (SKIP|TODO)/i.test(m[3]);
    if (level === 1) {
      if (bad) failed++;
      else passed++;
    }
    else if (bad) failed++;
  };
  tap.stdout.on('data', (d) => {
    buffer += d.toString();
    let i;
    while ((i = buffer.indexOf('\n')) >= 0) {
      onLine(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
    }
  });
  const code = await new Promise((resolve) => tap.on('close', resolve));
  if (buffer) onLine(buffer);
  if (code !== 0 && failed === 0) {
    failed++;
    console.log(`not ok - tap exited with status ${code}`);
  }
}

console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
