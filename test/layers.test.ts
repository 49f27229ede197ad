/**
 * The layers of docs/architecture.md, as the imports really run: a module
 * imports only from layers below its own (or from its own folder). A new
 * import that runs upward, or sideways between two layers of one rank,
 * fails here with the file and the import named.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

/** Rank of each layer, top (high) to bottom (0). Equal ranks may not import each other. */
const RANK: Record<string, number> = {
  cli: 7,
  daemon: 6,
  csi: 5,
  admin: 5,
  volumes: 4,
  fuse: 3,
  cowfs: 2,
  blockstore: 1,
  host: 1,
  // Shared small pieces at the bottom: errors.ts, native.ts, size.ts, log.ts.
  '.': 0,
};

function layerOf(file: string): string {
  const rel = path.relative(src, file);
  return rel.includes(path.sep) ? (rel.split(path.sep)[0] ?? '.') : '.';
}

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const found: string[] = [];
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) if (m[1] !== undefined) found.push(m[1]);
  return found;
}

/** Every import that breaks the order, as "file -> target". */
function violations(files: string[], read: (file: string) => string[] = importsOf): string[] {
  const bad: string[] = [];
  for (const file of files) {
    const from = layerOf(file);
    for (const spec of read(file)) {
      const target = path.resolve(path.dirname(file), spec.replace(/\.js$/, '.ts'));
      const to = layerOf(target);
      if (to === from) continue;
      const a = RANK[from];
      const b = RANK[to];
      if (a === undefined || b === undefined || b >= a) bad.push(`${path.relative(src, file)} -> ${path.relative(src, target)}`);
    }
  }
  return bad;
}

t.test('every import runs downward through the layers', async (t) => {
  const files = sources(src);
  t.ok(files.length > 40, `read ${files.length} source files`);
  for (const file of files) t.ok(layerOf(file) in RANK, `${path.relative(src, file)} sits in a known layer`);
  t.same(violations(files), [], 'no import runs upward or sideways');
});

t.test('the check catches an upward import', async (t) => {
  // A blockstore file that imports the CLI, and a csi file that imports admin (same rank): both flagged.
  t.same(violations([path.join(src, 'blockstore', 'probe.ts')], () => ['../cli/main.js']), ['blockstore/probe.ts -> cli/main.ts']);
  t.same(violations([path.join(src, 'csi', 'probe.ts')], () => ['../admin/server.js']), ['csi/probe.ts -> admin/server.ts']);
  t.same(violations([path.join(src, 'csi', 'probe.ts')], () => ['../volumes/volumes.js', './driver.js']), [], 'downward and same-folder imports pass');
});
