/**
 * Random namespace and data operations for cowfs, with a plain in-memory
 * model that says what each should do (its result or its errno), and a
 * canonical dump of a filesystem read only through its public operations
 * (lookup by readdir in small batches, getattr, read, readlink, xattrs), so
 * a model and a volume can be compared as text.
 */
import { CowvolError } from '../../src/errors.js';
import { type Filesystem, RENAME_EXCHANGE, RENAME_NOREPLACE } from '../../src/cowfs/filesystem.js';
import { ROOT_INO } from '../../src/cowfs/fs-tree.js';
import { S_IFREG, isDir, isLink, isReg } from '../../src/cowfs/inode.js';
import type { Prng } from '../../src/blockstore/prng.js';

export interface MNode {
  /** Stable across clones: which file this is, whatever its names. */
  id: number;
  kind: 'file' | 'dir' | 'link';
  data: Buffer;
  target: string;
  xattrs: Map<string, string>;
  entries: Map<string, MNode>;
}

export type FsOp =
  | { op: 'create' | 'mkdir'; dir: string[]; name: string }
  | { op: 'symlink'; dir: string[]; name: string; target: string }
  | { op: 'link'; path: string[]; dir: string[]; name: string }
  | { op: 'unlink' | 'rmdir'; dir: string[]; name: string }
  | { op: 'rename'; dir: string[]; name: string; dir2: string[]; name2: string; flags: number }
  | { op: 'write'; path: string[]; offset: number; length: number; byte: number }
  | { op: 'truncate'; path: string[]; size: number }
  | { op: 'punch'; path: string[]; offset: number; length: number }
  | { op: 'copy'; path: string[]; offset: number; path2: string[]; offset2: number; length: number }
  | { op: 'setxattr'; path: string[]; name: string; value: string }
  | { op: 'removexattr'; path: string[]; name: string };

let nextId = 1;

function node(kind: MNode['kind']): MNode {
  return { id: nextId++, kind, data: Buffer.alloc(0), target: '', xattrs: new Map(), entries: new Map() };
}

export class FsModel {
  root: MNode = node('dir');

  /** A deep copy that keeps hard links shared within the copy. */
  clone(): FsModel {
    const copies = new Map<MNode, MNode>();
    const copy = (n: MNode): MNode => {
      const had = copies.get(n);
      if (had) return had;
      const c: MNode = { id: n.id, kind: n.kind, data: Buffer.from(n.data), target: n.target, xattrs: new Map(n.xattrs), entries: new Map() };
      copies.set(n, c);
      for (const [name, child] of n.entries) c.entries.set(name, copy(child));
      return c;
    };
    const m = new FsModel();
    m.root = copy(this.root);
    return m;
  }

  at(path: string[]): MNode | undefined {
    let n: MNode | undefined = this.root;
    for (const p of path) n = n?.entries.get(p);
    return n;
  }

  /** Every path with its node, parents first. */
  all(): [string[], MNode][] {
    const out: [string[], MNode][] = [];
    const go = (path: string[], n: MNode): void => {
      out.push([path, n]);
      for (const [name, child] of n.entries) if (child.kind === 'dir') go([...path, name], child);
        else out.push([[...path, name], child]);
    };
    go([], this.root);
    return out;
  }

  /** What the operation does to the model: null on success, else the errno the filesystem must answer. */
  apply(o: FsOp): string | null {
    const long = 'name' in o && Buffer.byteLength(o.name) > 255;
    switch (o.op) {
      case 'create':
      case 'mkdir':
      case 'symlink': {
        const dir = this.at(o.dir) as MNode;
        if (long) return 'ENAMETOOLONG';
        if (dir.entries.has(o.name)) return 'EEXIST';
        const n = node(o.op === 'create' ? 'file' : o.op === 'mkdir' ? 'dir' : 'link');
        if (o.op === 'symlink') n.target = o.target;
        dir.entries.set(o.name, n);
        return null;
      }
      case 'link': {
        const dir = this.at(o.dir) as MNode;
        if (long) return 'ENAMETOOLONG';
        if (dir.entries.has(o.name)) return 'EEXIST';
        dir.entries.set(o.name, this.at(o.path) as MNode);
        return null;
      }
      case 'unlink':
      case 'rmdir': {
        const dir = this.at(o.dir) as MNode;
        if (long) return 'ENAMETOOLONG';
        const n = dir.entries.get(o.name);
        if (!n) return 'ENOENT';
        if (o.op === 'unlink' && n.kind === 'dir') return 'EISDIR';
        if (o.op === 'rmdir' && n.kind !== 'dir') return 'ENOTDIR';
        if (o.op === 'rmdir' && n.entries.size > 0) return 'ENOTEMPTY';
        dir.entries.delete(o.name);
        return null;
      }
      case 'rename':
        return this.rename(o);
      case 'write': {
        const n = this.at(o.path) as MNode;
        const end = o.offset + o.length;
        if (end > n.data.length) n.data = Buffer.concat([n.data, Buffer.alloc(end - n.data.length)]);
        n.data.fill(o.byte, o.offset, end);
        return null;
      }
      case 'truncate': {
        const n = this.at(o.path) as MNode;
        n.data = o.size <= n.data.length ? Buffer.from(n.data.subarray(0, o.size)) : Buffer.concat([n.data, Buffer.alloc(o.size - n.data.length)]);
        return null;
      }
      case 'punch': {
        const n = this.at(o.path) as MNode;
        n.data.fill(0, Math.min(o.offset, n.data.length), Math.min(o.offset + o.length, n.data.length));
        return null;
      }
      case 'copy': {
        const src = this.at(o.path) as MNode;
        const dst = this.at(o.path2) as MNode;
        const n = Math.max(0, Math.min(o.length, src.data.length - o.offset));
        if (n === 0) return null;
        if (src === dst && o.offset < o.offset2 + n && o.offset2 < o.offset + n) return 'EINVAL';
        const bytes = Buffer.from(src.data.subarray(o.offset, o.offset + n));
        const end = o.offset2 + n;
        if (end > dst.data.length) dst.data = Buffer.concat([dst.data, Buffer.alloc(end - dst.data.length)]);
        bytes.copy(dst.data, o.offset2);
        return null;
      }
      case 'setxattr':
        (this.at(o.path) as MNode).xattrs.set(o.name, o.value);
        return null;
      case 'removexattr': {
        const n = this.at(o.path) as MNode;
        if (!n.xattrs.has(o.name)) return 'ENODATA';
        n.xattrs.delete(o.name);
        return null;
      }
    }
  }

  private rename(o: Extract<FsOp, { op: 'rename' }>): string | null {
    const from = this.at(o.dir) as MNode;
    const to = this.at(o.dir2) as MNode;
    if (Buffer.byteLength(o.name) > 255) return 'ENAMETOOLONG';
    const moved = from.entries.get(o.name);
    if (!moved) return 'ENOENT';
    if (Buffer.byteLength(o.name2) > 255) return 'ENAMETOOLONG';
    const over = to.entries.get(o.name2);
    const under = (a: MNode, dirPath: string[]): boolean => {
      let n: MNode | undefined = this.root;
      if (n === a) return true;
      for (const p of dirPath) {
        n = n?.entries.get(p);
        if (n === a) return true;
      }
      return false;
    };
    if (o.flags & RENAME_EXCHANGE) {
      if (!over) return 'ENOENT';
      if (over === moved) return null;
      if (from !== to && ((moved.kind === 'dir' && under(moved, o.dir2)) || (over.kind === 'dir' && under(over, o.dir)))) return 'EINVAL';
      from.entries.set(o.name, over);
      to.entries.set(o.name2, moved);
      return null;
    }
    if (over && o.flags & RENAME_NOREPLACE) return 'EEXIST';
    if (over === moved) return null;
    if (moved.kind === 'dir' && under(moved, o.dir2)) return 'EINVAL';
    if (over) {
      if (moved.kind === 'dir' && over.kind !== 'dir') return 'ENOTDIR';
      if (moved.kind !== 'dir' && over.kind === 'dir') return 'EISDIR';
      if (over.kind === 'dir' && over.entries.size > 0) return 'ENOTEMPTY';
    }
    from.entries.delete(o.name);
    to.entries.set(o.name2, moved);
    return null;
  }
}

const NAMES = ['a', 'b', 'c', 'd', 'e', 'f', 'x'.repeat(255)];

/** An operation the model's current state makes interesting; sizes scaled to the chunk size. */
export function nextFsOp(rng: Prng, m: FsModel, chunkSize: number): FsOp {
  const everything = m.all();
  const dirs = everything.filter(([, n]) => n.kind === 'dir').map(([p]) => p);
  const files = everything.filter(([, n]) => n.kind === 'file').map(([p]) => p);
  const nonRoot = everything.filter(([p]) => p.length > 0).map(([p]) => p);
  const dir = rng.pick(dirs);
  const name = rng.chance(0.03) ? 'y'.repeat(256) : rng.pick(NAMES);
  const span = chunkSize * 120;
  const r = rng.int(100);
  if (r < 14) return { op: 'create', dir, name };
  if (r < 22) return { op: 'mkdir', dir, name };
  if (r < 25) return { op: 'symlink', dir, name, target: rng.chance(0.2) ? 't'.repeat(3000) : `to-${rng.int(100)}` };
  if (r < 30 && files.length > 0) return { op: 'link', path: rng.pick(files), dir, name };
  if (r < 38) return { op: 'unlink', dir, name };
  if (r < 43) return { op: 'rmdir', dir, name };
  if (r < 55 && nonRoot.length > 0) {
    const src = rng.pick(nonRoot);
    const flags = rng.chance(0.15) ? RENAME_EXCHANGE : rng.chance(0.15) ? RENAME_NOREPLACE : 0;
    return { op: 'rename', dir: src.slice(0, -1), name: src[src.length - 1] as string, dir2: rng.pick(dirs), name2: rng.pick(NAMES), flags };
  }
  if (files.length === 0) return { op: 'create', dir, name };
  const path = rng.pick(files);
  if (r < 78) return { op: 'write', path, offset: rng.int(span), length: 1 + rng.int(rng.chance(0.3) ? chunkSize * 20 : 3000), byte: 1 + rng.int(250) };
  if (r < 86) return { op: 'truncate', path, size: rng.int(span) };
  if (r < 92) return { op: 'punch', path, offset: rng.int(span), length: 1 + rng.int(chunkSize * 8) };
  if (r < 95) {
    // Mostly chunk-aligned, so whole chunks are shared (and later writes break the share).
    const aligned = rng.chance(0.7);
    const at = (n: number): number => (aligned ? rng.int(Math.floor(n / chunkSize)) * chunkSize : rng.int(n));
    return { op: 'copy', path, offset: at(span / 2), path2: rng.pick(files), offset2: at(span), length: aligned ? chunkSize * (1 + rng.int(40)) : 1 + rng.int(chunkSize * 10) };
  }
  if (r < 97) return { op: 'setxattr', path: rng.pick(nonRoot.length > 0 ? nonRoot : [path]), name: `user.${rng.pick(NAMES.slice(0, 4))}`, value: 'v'.repeat(rng.int(400)) };
  return { op: 'removexattr', path, name: `user.${rng.pick(NAMES.slice(0, 4))}` };
}

const OWNER = { uid: 0, gid: 0 };

export function ino(fs: Filesystem, path: string[]): number {
  let at = ROOT_INO;
  for (const p of path) at = fs.lookup(at, Buffer.from(p)).ino;
  return at;
}

/** Runs the operation on the filesystem: null on success, else the error's code. */
export function applyToFs(fs: Filesystem, o: FsOp): string | null {
  const b = (s: string): Buffer => Buffer.from(s);
  try {
    switch (o.op) {
      case 'create':
        fs.mknod(ino(fs, o.dir), b(o.name), S_IFREG | 0o644, 0, OWNER);
        break;
      case 'mkdir':
        fs.mkdir(ino(fs, o.dir), b(o.name), 0o755, OWNER);
        break;
      case 'symlink':
        fs.symlink(ino(fs, o.dir), b(o.name), b(o.target), OWNER);
        break;
      case 'link':
        fs.link(ino(fs, o.path), ino(fs, o.dir), b(o.name));
        break;
      case 'unlink':
        fs.unlink(ino(fs, o.dir), b(o.name));
        break;
      case 'rmdir':
        fs.rmdir(ino(fs, o.dir), b(o.name));
        break;
      case 'rename':
        fs.rename(ino(fs, o.dir), b(o.name), ino(fs, o.dir2), b(o.name2), o.flags);
        break;
      case 'write':
        fs.write(ino(fs, o.path), o.offset, Buffer.alloc(o.length, o.byte));
        break;
      case 'truncate':
        fs.setattr(ino(fs, o.path), { size: o.size });
        break;
      case 'punch':
        fs.fallocate(ino(fs, o.path), 1 | 2, o.offset, o.length);
        break;
      case 'copy':
        fs.copyFileRange(ino(fs, o.path), o.offset, ino(fs, o.path2), o.offset2, o.length);
        break;
      case 'setxattr':
        fs.setxattr(ino(fs, o.path), b(o.name), b(o.value), 0);
        break;
      case 'removexattr':
        fs.removexattr(ino(fs, o.path), b(o.name));
        break;
    }
    return null;
  } catch (err) {
    if (err instanceof CowvolError) return err.code;
    throw err;
  }
}

export function describeFsOp(o: FsOp): string {
  return JSON.stringify(o, (_k, v: unknown) => (typeof v === 'string' && v.length > 20 ? `${v.slice(0, 3)}*${v.length}` : v));
}

function line(path: string, kind: string, nlink: number, extra: string, xattrs: [string, string][]): string {
  const x = xattrs.sort((a, c) => (a[0] < c[0] ? -1 : 1)).map(([k, v]) => `${k}=${v.length}`).join(',');
  return `/${path} ${kind} nlink=${nlink} ${extra} [${x}]`;
}

function digest(data: Buffer): string {
  let h = 0;
  for (let i = 0; i < data.length; i++) h = (Math.imul(h, 31) + (data[i] as number)) >>> 0;
  return `${data.length}:${h.toString(16)}`;
}

/** The model as dump lines; link counts are what a filesystem must report. `data: false` gives sizes instead of contents. */
export function dumpModel(m: FsModel, data = true): string {
  const names = new Map<MNode, number>();
  for (const [p, n] of m.all()) if (p.length > 0) names.set(n, (names.get(n) ?? 0) + 1);
  return m
    .all()
    .map(([p, n]) => {
      const nlink = n.kind === 'dir' ? 2 + [...n.entries.values()].filter((c) => c.kind === 'dir').length : (names.get(n) ?? 0);
      const extra = n.kind === 'file' ? (data ? digest(n.data) : `${n.data.length}`) : n.kind === 'link' ? `-> ${n.target.length}:${n.target.slice(0, 8)}` : `${n.entries.size} entries`;
      return line(p.join('/'), n.kind, nlink, extra, [...n.xattrs.entries()]);
    })
    .sort()
    .join('\n');
}

/** The filesystem as dump lines, read through its operations only. */
export function dumpFs(fs: Filesystem, data = true): string {
  const out: string[] = [];
  const go = (path: string[], at: number, depth: number): void => {
    if (depth > 64) throw new Error('directory tree deeper than the model can make');
    const entries = [];
    for (let cookie = 0, guard = 0; guard < 100000; guard++) {
      const batch = fs.readdir(at, cookie, 3);
      if (batch.length === 0) break;
      entries.push(...batch);
      cookie = (batch[batch.length - 1] as { next: number }).next;
    }
    for (const e of entries) {
      const name = e.name.toString();
      if (name === '.' || name === '..') continue;
      const i = fs.getattr(e.ino);
      const p = [...path, name];
      const xattrs = fs.listxattr(e.ino).map((x): [string, string] => [x.toString(), fs.getxattr(e.ino, x).toString()]);
      const kind = isDir(i) ? 'dir' : isLink(i) ? 'link' : isReg(i) ? 'file' : '?';
      if ((e.type << 12) !== (i.mode & 0o170000)) throw new Error(`/${p.join('/')}: entry type ${e.type} but mode ${i.mode.toString(8)}`);
      const extra = isReg(i) ? (data ? digest(fs.read(e.ino, 0, i.size)) : `${i.size}`) : isLink(i) ? `-> ${i.size}:${fs.readlink(e.ino).toString().slice(0, 8)}` : `${i.entries} entries`;
      out.push(line(p.join('/'), kind, i.nlink, extra, xattrs));
      if (isDir(i)) go(p, e.ino, depth + 1);
    }
  };
  const root = fs.getattr(ROOT_INO);
  out.push(line('', 'dir', root.nlink, `${root.entries} entries`, fs.listxattr(ROOT_INO).map((x): [string, string] => [x.toString(), fs.getxattr(ROOT_INO, x).toString()])));
  go([], ROOT_INO, 0);
  return out.sort().join('\n');
}
