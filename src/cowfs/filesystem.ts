/**
 * cowfs: a filesystem volume's POSIX operations, decided here in TypeScript
 * over the volume's metadata tree (fs-tree.ts) and its files' regions
 * (file-data.ts). A FUSE frontend calls these with what the kernel asked;
 * each call is one synchronous change to the pool's open transaction, so
 * every namespace operation is atomic across a crash, and a commit (fsync,
 * the daemon's background commit) makes it durable.
 *
 * What the kernel does for us (the frontend mounts with default_permissions):
 * permission checks from mode, owner and group, and the sticky bit's rule
 * on unlink and rename. What is ours, as ext4 does it: setgid directories
 * passing their group (and the bit, to subdirectories), dropping
 * setuid/setgid on ownership changes and, when the kernel says the caller
 * may not keep them, on writes and truncates (the kernel still removes file
 * capabilities itself, with a removexattr); link counts (a directory has 2 plus its
 * subdirectories), times in nanoseconds, unlinked files that stay readable
 * while open (ORPHAN items, reclaimed when the volume is next served after
 * a crash), and the errnos.
 *
 * Caveat: atime is not updated by reads (as with noatime); setattr sets it.
 */
import type { Pool, VolumeRef } from '../blockstore/pool.js';
import type { Reserve } from '../blockstore/reserve.js';
import { assert, fail } from '../errors.js';
import { ACL_ACCESS, ACL_DEFAULT, chmodAcl, decodeAcl, encodeAcl, inheritAcl, modeOfAcl } from './acl.js';
import { FileData, MAX_FILE_BYTES } from './file-data.js';
import { type Counters, FsTree, ROOT_INO, encodeCounters } from './fs-tree.js';
import { type Inode, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID, S_ISUID, type Time, after, decodeInode, encodeInode, hasSetId, isDir, isLink, isReg, now } from './inode.js';
import { ItemType, key } from './keys.js';
import { addNamed, direntIno, direntType, direntValue, findNamed, nameOf, xattrData, xattrValue } from './named-items.js';

export interface Caller {
  uid: number;
  gid: number;
  /** The caller's umask, for a new inode whose directory has no default ACL (the kernel leaves it to us). */
  umask?: number;
}

export interface DirEntry {
  name: Buffer;
  ino: number;
  /** mode >> 12, as readdir's d_type. */
  type: number;
  /** Cookie to resume after this entry. */
  next: number;
}

export interface AttrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** 'now' for UTIME_NOW; absent for UTIME_OMIT. */
  atime?: Time | 'now';
  mtime?: Time | 'now';
  /** Set by the kernel's writeback cache, which keeps a regular file's times; otherwise ctime is now. */
  ctime?: Time;
  /** The gid of a caller the kernel found may not keep set-id bits (a truncate without CAP_FSETID, any chown). */
  killSetId?: number;
}

/** What the addon served without us, for `absorb` (each list may be left out). */
export interface Served {
  /** Chunks taken from the reserve: first writes into holes (`old` -1), or CoW breaks of the chunk at data offset `old`. */
  takes?: Take[];
  ends?: { ino: number; end: number }[];
  written?: { ino: number; at: Time }[];
  kernel?: KernelTimes[];
}

/** A reserved chunk the addon wrote at data file `offset` for file `ino`'s chunk `chunk`: into a hole (`old` -1), or as a copy of the shared chunk at `old`. */
export interface Take {
  ino: number;
  chunk: number;
  offset: number;
  old: number;
}

/** Times the kernel set on a file and the addon answered (its writeback cache keeps a regular file's own). */
export interface KernelTimes {
  ino: number;
  atime?: Time;
  mtime?: Time;
  ctime?: Time;
}

/** How a write reached us (src/fuse/cowfs-mount.ts). */
export interface WriteFrom {
  /** The gid of a writer the kernel found may not keep set-id bits (it lacks CAP_FSETID). */
  killSetId?: number;
  /**
   * Written back from the kernel's page cache: the kernel keeps the file's
   * mtime and ctime (stamped when the process wrote) and sends them with a
   * setattr, so stamping now here would leave the tree later than what
   * every stat showed, once the write-back came after that setattr.
   */
  keepTimes?: boolean;
}

export interface FsStats {
  /** In units of `blockSize`. */
  blocks: number;
  freeBlocks: number;
  blockSize: number;
  files: number;
  freeFiles: number;
  nameMax: number;
}

export const NAME_MAX = 255;
const LINK_MAX = 65000;
const SYMLINK_MAX = 4095;
const SYMLINK_PART = 1900;
const XATTR_NAME_MAX = 255;
/** An xattr's name and value share one tree item. */
const XATTR_ROOM = 1990;
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
/** statfs's inode figures: inodes cost pool metadata pages, not volume blocks, so none is fixed. */
const FILES_REPORTED = 2 ** 32;
/** Freed inodes remembered for the kernel's last flush of their times (Filesystem.gone). */
const GONE_MAX = 256;

export class Filesystem {
  private readonly tree: FsTree;
  private readonly data: FileData;
  /** Open handles per inode; an unlinked inode lives while this is above zero. Lock: event loop only. */
  private readonly opens = new Map<number, number>();
  /** Hears open count changes (watchOpens). */
  private onOpens: ((ino: number, count: number) => void) | null = null;
  /**
   * The last inodes freed, as they were: the kernel may still flush their
   * times after the unlink or rename that freed them (a writeback cache
   * keeps a file's ctime, and sends it right after the name is gone). Up to
   * GONE_MAX, oldest out first; numbers are never reused.
   */
  private readonly gone = new Map<number, Inode>();

  constructor(
    private readonly pool: Pool,
    volume: number,
  ) {
    this.tree = new FsTree(pool, volume);
    this.data = new FileData(this.tree);
  }

  /** The items of an empty filesystem (its counters and root directory), for a volume's creation. */
  static emptyItems(owner: Caller, mode = 0o755): [Buffer, Buffer][] {
    return [
      [key(0, ItemType.SUPER, 0), encodeCounters({ nextIno: ROOT_INO + 1, nextChunk: 0, inodes: 1 })],
      [key(ROOT_INO, ItemType.INODE, 0), encodeInode(newInode(ROOT_INO, S_IFDIR | (mode & 0o7777), owner, ROOT_INO))],
    ];
  }

  /** Writes an empty filesystem into a fresh filesystem volume made without one, and commits. */
  static format(pool: Pool, ref: VolumeRef, owner: Caller, mode = 0o755): void {
    const id = pool.stat(ref).id;
    if (pool.fsGet(id, key(0, ItemType.SUPER, 0)) !== undefined) fail('EEXIST', `volume ${id} already holds a filesystem`);
    pool.atomically(() => {
      for (const [k, v] of Filesystem.emptyItems(owner, mode)) pool.fsPut(id, k, v);
    });
    pool.commit();
  }

  // ---- reading -------------------------------------------------------------

  getattr(ino: number): Inode {
    return this.tree.inode(ino);
  }

  lookup(parent: number, name: Buffer): Inode {
    const found = this.find(parent, name);
    if (found === null) fail('ENOENT', `no entry '${name.toString()}' in directory ${parent}`);
    return found;
  }

  /** lookup() that answers null for a name not there: a create looks its name up first, and an error costs a stack. */
  find(parent: number, name: Buffer): Inode | null {
    const dir = this.dirInode(parent);
    checkName(name);
    const found = findNamed(this.tree, dir.ino, ItemType.DIRENT, name);
    return found === null ? null : this.tree.inode(direntIno(found.value));
  }

  /** Every name in directory `ino` if it holds at most `max`, else null. */
  namesIn(ino: number, max: number): Buffer[] | null {
    const dir = this.dirInode(ino);
    const names: Buffer[] = [];
    this.tree.items(dir.ino, ItemType.DIRENT, 0, (_offset, _k, value) => {
      names.push(Buffer.from(nameOf(ItemType.DIRENT, value)));
      return names.length > max;
    });
    return names.length > max ? null : names;
  }

  /** Up to `max` entries after cookie `after` (0: from the start), '.' and '..' first. */
  readdir(ino: number, after: number, max: number): DirEntry[] {
    const dir = this.dirInode(ino);
    const out: DirEntry[] = [];
    if (after < 1 && out.length < max) out.push({ name: Buffer.from('.'), ino: dir.ino, type: S_IFDIR >> 12, next: 1 });
    if (after < 2 && out.length < max) out.push({ name: Buffer.from('..'), ino: dir.parent, type: S_IFDIR >> 12, next: 2 });
    if (out.length >= max) return out;
    this.tree.items(dir.ino, ItemType.DIRENT, after >= 3 ? after - 2 : 0, (offset, _k, value) => {
      out.push({ name: Buffer.from(nameOf(ItemType.DIRENT, value)), ino: direntIno(value), type: direntType(value), next: offset + 3 });
      return out.length >= max;
    });
    return out;
  }

  readlink(ino: number): Buffer {
    const inode = this.tree.inode(ino);
    if (!isLink(inode)) fail('EINVAL', `inode ${ino} is not a symbolic link`);
    const parts: Buffer[] = [];
    this.tree.items(ino, ItemType.SYMLINK, 0, (_o, _k, value) => {
      parts.push(Buffer.from(value));
    });
    return Buffer.concat(parts);
  }

  read(ino: number, offset: number, length: number): Buffer {
    const inode = this.tree.inode(ino);
    if (isDir(inode)) fail('EISDIR', `inode ${ino} is a directory`);
    checkRange(offset, length);
    return this.data.read(inode, offset, length);
  }

  /**
   * The whole chunks of a regular file that [offset, offset+length) touches
   * below its size, each with its index in the volume's map, and whether the
   * file has set-id bits (a write to it must reach us to clear them).
   */
  chunksIn(ino: number, offset: number, length: number): { chunks: { chunk: number; index: number }[]; setId: boolean } {
    const inode = this.tree.inode(ino);
    if (!isReg(inode)) return { chunks: [], setId: false };
    return { chunks: this.data.wholeChunks(inode, offset, length), setId: hasSetId(inode) };
  }

  /**
   * Where a regular file ends, for the addon's first writes and appends
   * (src/fuse/file-chunks.ts): see FileData.edge; null for anything else.
   */
  edgeOf(ino: number, ahead: number): { partial: { chunk: number; index: number } | null; unmapped: number[]; setId: boolean } | null {
    const inode = this.tree.inode(ino);
    if (!isReg(inode)) return null;
    return { ...this.data.edge(inode, ahead), setId: hasSetId(inode) };
  }

  /** Whether `ino` is a regular file now. */
  isFile(ino: number): boolean {
    return this.tree.hasInode(ino) && isReg(this.tree.inode(ino));
  }

  /** A regular file's unmapped chunks wholly inside it, up to `max` among `window` from chunk `from` (FileData.holesInside); null for anything else. */
  holesInside(ino: number, from: number, max: number, window: number, run = false): { chunks: number[]; setId: boolean } | null {
    const inode = this.tree.inode(ino);
    if (!isReg(inode)) return null;
    return { chunks: this.data.holesInside(inode, from, max, window, run), setId: hasSetId(inode) };
  }

  /**
   * What the addon served without us since the last look
   * (src/fuse/file-chunks.ts), put in the tree in one change that loads and
   * saves each inode once:
   * - first writes into holes, from `reserve` (the chunk at data file
   *   `offset` now holds file chunk `chunk`): each mapped in its file's
   *   region (made if the file had none) and counted in its blocks; a chunk
   *   whose file is gone goes back to the pool; a CoW break replaces the
   *   shared chunk it copied, and the file's blocks stay as they were;
   * - ends: the file is at least that long now;
   * - writes: mtime and ctime become the time of the latest, unless a
   *   later change stamped them already;
   * - kernel: times the addon answered for the kernel, as a setattr sets them.
   * Other changes to files freed since are skipped. Returns the volume map
   * index each take went to, or null.
   */
  absorb(reserve: Reserve | null, served: Served): (number | null)[] {
    const { takes = [], ends = [], written = [], kernel = [] } = served;
    if (takes.length + ends.length + written.length + kernel.length === 0) return [];
    if (takes.length === 0 && this.pool.stat(this.tree.volume).readOnly) return [];
    return this.pool.atomically(() => {
      const loaded = new Map<number, Inode | null>();
      const changed = new Set<Inode>();
      const load = (ino: number): Inode | null => {
        let inode = loaded.get(ino);
        if (inode === undefined) {
          const v = ino === 0 ? undefined : this.tree.get(key(ino, ItemType.INODE, 0));
          inode = v === undefined ? null : decodeInode(ino, v);
          loaded.set(ino, inode);
        }
        return inode;
      };
      assert(takes.length === 0 || reserve !== null, 'first writes came from no reserve');
      const indices = takes.map((t) => this.absorbTake(reserve as Reserve, load(t.ino), t, changed));
      for (const f of ends) {
        const inode = load(f.ino);
        if (inode !== null && isReg(inode) && f.end > inode.size) changed.add(Object.assign(inode, { size: f.end }));
      }
      for (const f of written) {
        const inode = load(f.ino);
        if (inode === null || !after(f.at, inode.mtime)) continue;
        inode.mtime = f.at;
        if (after(f.at, inode.ctime)) inode.ctime = f.at;
        changed.add(inode);
      }
      for (const f of kernel) {
        const inode = load(f.ino);
        if (inode === null) continue;
        inode.atime = f.atime ?? inode.atime;
        inode.mtime = f.mtime ?? inode.mtime;
        inode.ctime = f.ctime ?? inode.ctime;
        changed.add(inode);
      }
      for (const inode of changed) this.tree.saveInode(inode);
      return indices;
    });
  }

  /**
   * What a killed daemon's addon served and never folded (its journal's
   * takes and ends with no later change of their inode): each take mapped
   * where the file's region puts its chunk, each end grown into the size,
   * as `absorb` would have. Part of a journal replay (the pool has no
   * frontend yet); the caller commits. Files gone since are skipped: their
   * chunks stay free. Returns how many takes were placed.
   */
  replayServed(takes: readonly Take[], ends: readonly { ino: number; end: number }[]): number {
    return this.pool.atomically(() => {
      const changed = new Map<number, Inode>();
      const load = (ino: number): Inode | null => {
        const inode = changed.get(ino) ?? (this.tree.hasInode(ino) ? this.tree.inode(ino) : null);
        return inode !== null && isReg(inode) ? inode : null;
      };
      let placed = 0;
      for (const t of takes) {
        const inode = load(t.ino);
        if (inode === null || !this.pool.replayTake(this.tree.volume, this.data.indexFor(inode, t.chunk), t.offset, t.old)) continue;
        placed++;
        if (t.old >= 0) continue;
        inode.chunks++;
        changed.set(inode.ino, inode);
      }
      for (const e of ends) {
        const inode = load(e.ino);
        if (inode !== null && e.end > inode.size) changed.set(inode.ino, Object.assign(inode, { size: e.end }));
      }
      for (const inode of changed.values()) this.tree.saveInode(inode);
      return placed;
    });
  }

  /** Times the addon answered for the kernel (KernelTimes), as a setattr would set them. Files freed since are skipped. */
  applyKernelTimes(files: KernelTimes[]): void {
    this.absorb(null, { kernel: files });
  }

  private absorbTake(reserve: Reserve, inode: Inode | null, t: Take, changed: Set<Inode>): number | null {
    if (inode === null || !isReg(inode)) {
      this.pool.foldTake(reserve, this.tree.volume, null, t.offset);
      return null;
    }
    const index = this.data.indexFor(inode, t.chunk);
    this.pool.foldTake(reserve, this.tree.volume, index, t.offset, t.old);
    if (t.old < 0) inode.chunks++;
    // Saved for a break too: the saved inode is how a journal replay knows its takes were folded.
    changed.add(inode);
    return index;
  }

  seek(ino: number, offset: number, data: boolean): number {
    const inode = this.tree.inode(ino);
    checkRange(offset, 0);
    return this.data.seek(inode, offset, data);
  }

  statfs(): FsStats {
    const info = this.pool.stat(this.tree.volume);
    const blockSize = 4096;
    const counters = this.tree.counters();
    return {
      blocks: Math.floor(info.size / blockSize),
      freeBlocks: Math.max(0, Math.floor((info.size - info.allocatedBytes) / blockSize)),
      blockSize,
      files: FILES_REPORTED,
      freeFiles: FILES_REPORTED - counters.inodes,
      nameMax: NAME_MAX,
    };
  }

  // ---- making names --------------------------------------------------------

  /** Regular files, fifos, sockets and device nodes (mode carries the type). */
  mknod(parent: number, name: Buffer, mode: number, rdev: number, caller: Caller): Inode {
    return this.pool.atomically(() => {
      const type = mode & S_IFMT;
      if (type === S_IFDIR || type === S_IFLNK) fail('EINVAL', 'mknod makes neither directories nor symbolic links');
      return this.make(parent, name, (type === 0 ? S_IFREG : type) | (mode & 0o7777), caller, type === 0x2000 || type === 0x6000 ? rdev : 0);
    });
  }

  mkdir(parent: number, name: Buffer, mode: number, caller: Caller): Inode {
    return this.pool.atomically(() => {
      return this.make(parent, name, S_IFDIR | (mode & 0o7777), caller, 0);
    });
  }

  symlink(parent: number, name: Buffer, target: Buffer, caller: Caller): Inode {
    return this.pool.atomically(() => {
      if (target.length === 0) fail('ENOENT', 'a symbolic link needs a target');
      if (target.length > SYMLINK_MAX) fail('ENAMETOOLONG', `a symbolic link's target is at most ${SYMLINK_MAX} bytes`);
      const inode = this.make(parent, name, S_IFLNK | 0o777, caller, 0, target.length);
      for (let part = 0; part * SYMLINK_PART < target.length; part++) {
        this.tree.put(key(inode.ino, ItemType.SYMLINK, part), target.subarray(part * SYMLINK_PART, (part + 1) * SYMLINK_PART));
      }
      return inode;
    });
  }

  link(ino: number, parent: number, name: Buffer): Inode {
    return this.pool.atomically(() => {
      const inode = this.tree.inode(ino);
      if (isDir(inode)) fail('EPERM', 'hard links to directories are not allowed');
      if (inode.nlink >= LINK_MAX) fail('EMLINK', `inode ${ino} has ${inode.nlink} links already`);
      const dir = this.freeName(parent, name);
      addNamed(this.tree, dir.ino, ItemType.DIRENT, name, direntValue(ino, inode.mode >> 12, name));
      const t = now();
      if (inode.nlink === 0) this.tree.del(key(0, ItemType.ORPHAN, ino));
      inode.nlink++;
      inode.ctime = t;
      this.tree.saveInode(inode);
      this.touchDir(dir, 1, 0, t);
      return inode;
    });
  }

  // ---- removing names ------------------------------------------------------

  /** Returns the inode that lost the link, as it is now (freed if that was its last name and nobody has it open). */
  unlink(parent: number, name: Buffer): Inode {
    return this.pool.atomically(() => {
      const { dir, inode, offset } = this.entry(parent, name);
      if (isDir(inode)) fail('EISDIR', `'${name.toString()}' is a directory`);
      this.tree.del(key(dir.ino, ItemType.DIRENT, offset));
      const t = now();
      this.touchDir(dir, -1, 0, t);
      this.dropLink(inode, t);
      return inode;
    });
  }

  /** Returns the removed directory's inode number. */
  rmdir(parent: number, name: Buffer): number {
    return this.pool.atomically(() => {
      const { dir, inode, offset } = this.entry(parent, name);
      if (!isDir(inode)) fail('ENOTDIR', `'${name.toString()}' is not a directory`);
      if (inode.entries > 0) fail('ENOTEMPTY', `'${name.toString()}' is not empty`);
      this.tree.del(key(dir.ino, ItemType.DIRENT, offset));
      const t = now();
      this.touchDir(dir, -1, -1, t);
      this.dropLink(inode, t);
      return inode.ino;
    });
  }

  rename(parent: number, name: Buffer, newParent: number, newName: Buffer, flags = 0): void {
    return this.pool.atomically(() => {
      if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) !== 0 || flags === (RENAME_NOREPLACE | RENAME_EXCHANGE)) fail('EINVAL', `rename flags ${flags}`);
      const from = this.entry(parent, name);
      const toDir = this.dirInode(newParent);
      checkName(newName);
      const found = findNamed(this.tree, toDir.ino, ItemType.DIRENT, newName);
      const to = found === null ? null : { dir: toDir, inode: this.tree.inode(direntIno(found.value)), offset: found.offset };
      if (flags & RENAME_EXCHANGE) {
        if (to === null) fail('ENOENT', `no entry '${newName.toString()}' to exchange with`);
        return this.exchange(from, to);
      }
      if (to !== null && flags & RENAME_NOREPLACE) fail('EEXIST', `'${newName.toString()}' exists`);
      if (to !== null && to.inode.ino === from.inode.ino) return;
      if (isDir(from.inode)) this.refuseLoop(from.inode.ino, toDir);
      if (to !== null) {
        if (isDir(from.inode) && !isDir(to.inode)) fail('ENOTDIR', `'${newName.toString()}' is not a directory`);
        if (!isDir(from.inode) && isDir(to.inode)) fail('EISDIR', `'${newName.toString()}' is a directory`);
        if (isDir(to.inode) && to.inode.entries > 0) fail('ENOTEMPTY', `'${newName.toString()}' is not empty`);
      }
      const t = now();
      const moved = from.inode;
      const sub = isDir(moved) ? 1 : 0;
      this.tree.del(key(from.dir.ino, ItemType.DIRENT, from.offset));
      // Fresh reads after every change: the two directories may be one inode.
      this.touchDir(this.tree.inode(from.dir.ino), -1, -sub, t);
      if (to !== null) {
        this.tree.put(key(toDir.ino, ItemType.DIRENT, to.offset), direntValue(moved.ino, moved.mode >> 12, newName));
        const dir = this.tree.inode(toDir.ino);
        this.touchDir(dir, 0, sub - (isDir(to.inode) ? 1 : 0), t);
        this.dropLink(to.inode, t);
      } else {
        addNamed(this.tree, toDir.ino, ItemType.DIRENT, newName, direntValue(moved.ino, moved.mode >> 12, newName));
        this.touchDir(this.tree.inode(toDir.ino), 1, sub, t);
      }
      const after = this.tree.inode(moved.ino);
      after.ctime = t;
      if (sub) after.parent = toDir.ino;
      this.tree.saveInode(after);
    });
  }

  // ---- attributes ----------------------------------------------------------

  setattr(ino: number, changes: AttrChanges): Inode {
    const dead = this.gone.get(ino);
    if (dead !== undefined && onlyTimes(changes) && !this.tree.hasInode(ino)) return touchGone(dead, changes);
    return this.pool.atomically(() => {
      const inode = this.tree.inode(ino);
      const t = now();
      if (changes.size !== undefined) this.resize(inode, changes.size, t);
      if (changes.mode !== undefined) {
        inode.mode = (inode.mode & S_IFMT) | (changes.mode & 0o7777);
        this.chmodAcl(inode);
      }
      const owner = (changes.uid !== undefined && changes.uid !== inode.uid) || (changes.gid !== undefined && changes.gid !== inode.gid);
      if (changes.uid !== undefined) inode.uid = changes.uid;
      if (changes.gid !== undefined) inode.gid = changes.gid;
      // A new owner must not inherit set-id powers; setgid without group execute is mandatory locking and stays.
      const chown = changes.uid !== undefined || changes.gid !== undefined;
      if (!isDir(inode) && changes.mode === undefined) {
        if (chown && (owner || changes.killSetId !== undefined)) dropSetId(inode);
        else if (!chown && changes.killSetId !== undefined) dropSetIdFor(inode, changes.killSetId);
      }
      setTimes(inode, changes, t);
      this.tree.saveInode(inode);
      return inode;
    });
  }

  // ---- data ----------------------------------------------------------------

  write(ino: number, offset: number, data: Buffer, from: WriteFrom = {}): number {
    return this.pool.atomically(() => {
      const inode = this.tree.inode(ino);
      if (!isReg(inode)) fail(isDir(inode) ? 'EISDIR' : 'EINVAL', `inode ${ino} is not a regular file`);
      checkRange(offset, data.length);
      if (data.length === 0) return 0;
      if (from.killSetId !== undefined) dropSetIdFor(inode, from.killSetId);
      // Bytes between the old end and this write must read as zeros, whatever a crash left there.
      if (offset > inode.size) this.data.discard(inode, inode.size, offset);
      this.data.write(inode, offset, data);
      inode.size = Math.max(inode.size, offset + data.length);
      if (from.keepTimes !== true) {
        const t = now();
        inode.mtime = t;
        inode.ctime = t;
      }
      this.tree.saveInode(inode);
      return data.length;
    });
  }

  /** fallocate: mode 0 or KEEP_SIZE (1) reserve nothing in a thin volume but the size; PUNCH_HOLE (2, with KEEP_SIZE) and ZERO_RANGE (16) discard. */
  fallocate(ino: number, mode: number, offset: number, length: number): void {
    return this.pool.atomically(() => {
      const inode = this.tree.inode(ino);
      if (!isReg(inode)) fail(isDir(inode) ? 'EISDIR' : 'EINVAL', `inode ${ino} is not a regular file`);
      if (offset < 0 || length <= 0) fail('EINVAL', `invalid range ${offset}+${length}`);
      checkRange(offset, length);
      const keep = (mode & 1) !== 0;
      const punch = (mode & 2) !== 0;
      const zero = (mode & 16) !== 0;
      if ((mode & ~(1 | 2 | 16)) !== 0 || (punch && (!keep || zero))) fail('EOPNOTSUPP', `fallocate mode ${mode}`);
      const end = offset + length;
      const t = now();
      if (punch || zero) {
        this.data.discard(inode, offset, Math.min(end, punch ? inode.size : end));
        inode.mtime = t;
      }
      if (!keep && end > inode.size) {
        this.data.discard(inode, inode.size, end);
        inode.size = end;
      }
      inode.ctime = t;
      this.tree.saveInode(inode);
    });
  }

  /**
   * copy_file_range between files of this volume: chunk-aligned parts are
   * shared, not copied (a reflink), the rest copied. Copies up to the
   * source's end and returns how many bytes; overlapping ranges of one file
   * are EINVAL, as on Linux.
   */
  copyFileRange(inIno: number, inOff: number, outIno: number, outOff: number, length: number): number {
    return this.pool.atomically(() => {
      const src = this.tree.inode(inIno);
      const dst = inIno === outIno ? src : this.tree.inode(outIno);
      for (const i of [src, dst]) if (!isReg(i)) fail(isDir(i) ? 'EISDIR' : 'EINVAL', `inode ${i.ino} is not a regular file`);
      checkRange(inOff, length);
      checkRange(outOff, length);
      const n = Math.max(0, Math.min(length, src.size - inOff));
      if (n === 0) return 0;
      if (outOff + n > MAX_FILE_BYTES) fail('EFBIG', `a file ends at ${MAX_FILE_BYTES} bytes`);
      if (inIno === outIno && inOff < outOff + n && outOff < inOff + n) fail('EINVAL', 'the ranges overlap in one file');
      if (outOff > dst.size) this.data.discard(dst, dst.size, outOff);
      this.data.copy(src, inOff, dst, outOff, n);
      const t = now();
      dst.size = Math.max(dst.size, outOff + n);
      dst.mtime = t;
      dst.ctime = t;
      this.tree.saveInode(dst);
      return n;
    });
  }

  /** fsync/fdatasync of a file, fsync of a directory: everything this volume did so far is durable. */
  flush(): Promise<void> {
    return this.pool.flushAsync(this.tree.volume);
  }

  // ---- extended attributes -------------------------------------------------

  setxattr(ino: number, name: Buffer, value: Buffer, flags: number): void {
    return this.pool.atomically(() => {
      const inode = this.tree.inode(ino);
      checkXattrName(name);
      if (value.length > 65536) fail('E2BIG', `an extended attribute's value is at most 65536 bytes`);
      if (name.length + value.length + 1 > XATTR_ROOM) fail('ENOSPC', `no room for an extended attribute of ${value.length} bytes`);
      const found = findNamed(this.tree, ino, ItemType.XATTR, name);
      if (found !== null && flags & XATTR_CREATE) fail('EEXIST', `attribute ${name.toString()} exists`);
      if (found === null && flags & XATTR_REPLACE) fail('ENODATA', `no attribute ${name.toString()}`);
      const text = name.toString();
      const acl = text === ACL_ACCESS ? modeOfAcl(decodeAcl(value), inode.mode) : null;
      if (text === ACL_DEFAULT) {
        if (!isDir(inode)) fail('EACCES', 'only a directory has a default ACL');
        decodeAcl(value);
      }
      // An access ACL the mode says all of is kept as the mode alone, as ext4 keeps it.
      if (acl !== null) inode.mode = acl.mode;
      if (acl?.minimal === true) {
        if (found !== null) this.tree.del(key(ino, ItemType.XATTR, found.offset));
      } else if (found !== null) this.tree.put(key(ino, ItemType.XATTR, found.offset), xattrValue(name, value));
      else this.addXattr(ino, name, value);
      inode.ctime = now();
      this.tree.saveInode(inode);
    });
  }

  getxattr(ino: number, name: Buffer): Buffer {
    this.tree.inode(ino);
    checkXattrName(name);
    const found = findNamed(this.tree, ino, ItemType.XATTR, name);
    if (found === null) fail('ENODATA', `no attribute ${name.toString()}`);
    return xattrData(found.value);
  }

  listxattr(ino: number): Buffer[] {
    this.tree.inode(ino);
    const names: Buffer[] = [];
    this.tree.items(ino, ItemType.XATTR, 0, (_o, _k, value) => {
      names.push(Buffer.from(nameOf(ItemType.XATTR, value)));
    });
    return names;
  }

  removexattr(ino: number, name: Buffer): void {
    return this.pool.atomically(() => {
      const inode = this.tree.inode(ino);
      checkXattrName(name);
      const found = findNamed(this.tree, ino, ItemType.XATTR, name);
      if (found === null) fail('ENODATA', `no attribute ${name.toString()}`);
      this.tree.del(key(ino, ItemType.XATTR, found.offset));
      inode.ctime = now();
      this.tree.saveInode(inode);
    });
  }

  // ---- opens and orphans ---------------------------------------------------

  opened(ino: number): void {
    this.tree.inode(ino);
    const count = (this.opens.get(ino) ?? 0) + 1;
    this.opens.set(ino, count);
    this.onOpens?.(ino, count);
  }

  /** Hears every change of a file's open count (0: closed), for a successor after a kill (src/daemon/open-counts.ts). */
  watchOpens(fn: (ino: number, count: number) => void): void {
    this.onOpens = fn;
  }

  /** Open counts by inode, for a daemon that hands the mount to the next one (the kernel's open files stay open). */
  openFiles(): [number, number][] {
    return [...this.opens];
  }

  /**
   * Takes over the open counts a previous daemon served this mount with:
   * their RELEASEs come to us, and an orphan among them must live until
   * then. Only for a mount taken over, before it serves anything.
   */
  adoptOpens(list: readonly (readonly [number, number])[]): void {
    if (this.opens.size > 0) fail('EBUSY', 'open files are counted already: adopt only before serving');
    for (const [ino, count] of list) if (Number.isSafeInteger(ino) && ino > 0 && Number.isSafeInteger(count) && count > 0) this.opens.set(ino, count);
  }

  /** The last close of an unlinked file frees it. */
  released(ino: number): void {
    return this.pool.atomically(() => {
      const left = (this.opens.get(ino) ?? 0) - 1;
      this.onOpens?.(ino, Math.max(0, left));
      if (left > 0) {
        this.opens.set(ino, left);
        return;
      }
      this.opens.delete(ino);
      const v = this.tree.get(key(ino, ItemType.INODE, 0));
      if (v === undefined || this.pool.stat(this.tree.volume).readOnly) return;
      const inode = decodeInode(ino, v);
      if (inode.nlink === 0) this.free(inode);
    });
  }

  /**
   * Frees what a crash left behind, for a mount made afresh (a takeover
   * keeps the kernel's open files, so it must not): unlinked files that
   * were open, and chunks a journal replay mapped where no file's region
   * is any more. Returns how many orphans it freed.
   */
  recover(): number {
    return this.pool.atomically(() => {
      const orphans: number[] = [];
      this.tree.items(0, ItemType.ORPHAN, 0, (ino) => {
        orphans.push(ino);
      });
      for (const ino of orphans) this.free(this.tree.inode(ino));
      this.data.dropStray();
      this.pool.commit();
      return orphans.length;
    });
  }

  // ---- internals -----------------------------------------------------------

  private make(parent: number, name: Buffer, mode: number, caller: Caller, rdev: number, size = 0): Inode {
    const dir = this.freeName(parent, name);
    const counters: Counters = this.tree.counters();
    const ino = counters.nextIno;
    this.tree.saveCounters({ ...counters, nextIno: ino + 1, inodes: counters.inodes + 1 });
    const inheritGroup = (dir.mode & S_ISGID) !== 0;
    const inode = newInode(ino, mode, { uid: caller.uid, gid: inheritGroup ? dir.gid : caller.gid }, dir.ino, rdev);
    if (inheritGroup && isDir(inode)) inode.mode |= S_ISGID;
    inode.size = size;
    if (!isLink(inode)) this.inheritAcls(dir, inode, caller.umask ?? 0);
    this.tree.saveInode(inode);
    addNamed(this.tree, dir.ino, ItemType.DIRENT, name, direntValue(ino, mode >> 12, name));
    this.touchDir(dir, 1, isDir(inode) ? 1 : 0, inode.ctime);
    return inode;
  }

  /** A new inode's ACLs and mode: from its directory's default ACL if it has one, else the mode less the umask. */
  private inheritAcls(dir: Inode, inode: Inode, umask: number): void {
    const dflt = this.xattr(dir.ino, ACL_DEFAULT);
    if (dflt === null) {
      inode.mode &= ~(umask & 0o777);
      return;
    }
    const { mode, access } = inheritAcl(decodeAcl(dflt), inode.mode);
    inode.mode = mode;
    if (access !== null) this.addXattr(inode.ino, Buffer.from(ACL_ACCESS), encodeAcl(access));
    if (isDir(inode)) this.addXattr(inode.ino, Buffer.from(ACL_DEFAULT), dflt);
  }

  /** A chmod moves the access ACL's owner, group (or mask) and other entries with it. */
  private chmodAcl(inode: Inode): void {
    const name = Buffer.from(ACL_ACCESS);
    const found = findNamed(this.tree, inode.ino, ItemType.XATTR, name);
    if (found === null) return;
    const current = decodeAcl(xattrData(found.value));
    this.tree.put(key(inode.ino, ItemType.XATTR, found.offset), xattrValue(name, encodeAcl(chmodAcl(current, inode.mode))));
  }

  /** An xattr's value, or null. */
  private xattr(ino: number, name: string): Buffer | null {
    const found = findNamed(this.tree, ino, ItemType.XATTR, Buffer.from(name));
    return found === null ? null : xattrData(found.value);
  }

  /** A new xattr (the caller knows there is none by that name). */
  private addXattr(ino: number, name: Buffer, data: Buffer): void {
    addNamed(this.tree, ino, ItemType.XATTR, name, xattrValue(name, data));
  }

  private dirInode(ino: number): Inode {
    const inode = this.tree.inode(ino);
    if (!isDir(inode)) fail('ENOTDIR', `inode ${ino} is not a directory`);
    return inode;
  }

  private freeName(parent: number, name: Buffer): Inode {
    const dir = this.dirInode(parent);
    checkName(name);
    if (dir.nlink === 0) fail('ENOENT', `directory ${parent} was removed`);
    if (findNamed(this.tree, dir.ino, ItemType.DIRENT, name) !== null) fail('EEXIST', `'${name.toString()}' exists`);
    return dir;
  }

  private entry(parent: number, name: Buffer): { dir: Inode; inode: Inode; offset: number } {
    const dir = this.dirInode(parent);
    checkName(name);
    const found = findNamed(this.tree, dir.ino, ItemType.DIRENT, name);
    if (found === null) fail('ENOENT', `no entry '${name.toString()}' in directory ${parent}`);
    return { dir, inode: this.tree.inode(direntIno(found.value)), offset: found.offset };
  }

  /** A directory gained or lost entries and subdirectories: its counts and times. */
  private touchDir(dir: Inode, entries: number, subdirs: number, t: Time): void {
    dir.entries += entries;
    dir.nlink += subdirs;
    dir.mtime = t;
    dir.ctime = t;
    this.tree.saveInode(dir);
  }

  /** One name of the inode is gone; a directory has only the one (its nlink counts subdirectories' '..'). */
  private dropLink(inode: Inode, t: Time): void {
    inode.nlink = isDir(inode) ? 0 : inode.nlink - 1;
    inode.ctime = t;
    this.release(inode);
  }

  /** An inode with no name left: freed now, or listed as an orphan while it is open. */
  private release(inode: Inode): void {
    if (inode.nlink > 0) this.tree.saveInode(inode);
    else if ((this.opens.get(inode.ino) ?? 0) > 0) {
      this.tree.saveInode(inode);
      this.tree.put(key(0, ItemType.ORPHAN, inode.ino), Buffer.alloc(0));
    } else this.free(inode);
  }

  private free(inode: Inode): void {
    if (isReg(inode)) this.data.dropRegionsFrom(inode, 0);
    for (const type of [ItemType.XATTR, ItemType.SYMLINK, ItemType.INODE]) for (const k of this.tree.keysOf(inode.ino, type)) this.tree.del(k);
    this.tree.del(key(0, ItemType.ORPHAN, inode.ino));
    const counters = this.tree.counters();
    this.tree.saveCounters({ ...counters, inodes: counters.inodes - 1 });
    this.gone.set(inode.ino, { ...inode, nlink: 0 });
    if (this.gone.size > GONE_MAX) this.gone.delete(this.gone.keys().next().value as number);
  }

  private resize(inode: Inode, size: number, t: Time): void {
    if (!isReg(inode)) fail(isDir(inode) ? 'EISDIR' : 'EINVAL', `inode ${inode.ino} is not a regular file`);
    if (!Number.isSafeInteger(size) || size < 0) fail('EINVAL', `invalid size ${size}`);
    if (size > MAX_FILE_BYTES) fail('EFBIG', `a file ends at ${MAX_FILE_BYTES} bytes`);
    if (size < inode.size) this.data.truncate(inode, size);
    else if (size > inode.size) this.data.discard(inode, inode.size, size);
    if (size !== inode.size) inode.mtime = t;
    inode.size = size;
  }

  /** A directory may not move under itself. */
  private refuseLoop(moved: number, target: Inode): void {
    let at = target;
    for (let depth = 0; depth < 1 << 16; depth++) {
      if (at.ino === moved) fail('EINVAL', 'a directory cannot move under itself');
      if (at.ino === ROOT_INO) return;
      at = this.tree.inode(at.parent);
    }
    fail('ECORRUPT', `directory ${target.ino} has no way up to the root`);
  }

  private exchange(a: { dir: Inode; inode: Inode; offset: number }, b: { dir: Inode; inode: Inode; offset: number }): void {
    if (a.inode.ino === b.inode.ino) return;
    if (a.dir.ino !== b.dir.ino) {
      if (isDir(a.inode)) this.refuseLoop(a.inode.ino, b.dir);
      if (isDir(b.inode)) this.refuseLoop(b.inode.ino, a.dir);
    }
    const t = now();
    const aName = nameOf(ItemType.DIRENT, this.tree.get(key(a.dir.ino, ItemType.DIRENT, a.offset)) as Buffer);
    const bName = nameOf(ItemType.DIRENT, this.tree.get(key(b.dir.ino, ItemType.DIRENT, b.offset)) as Buffer);
    this.tree.put(key(a.dir.ino, ItemType.DIRENT, a.offset), direntValue(b.inode.ino, b.inode.mode >> 12, Buffer.from(aName)));
    this.tree.put(key(b.dir.ino, ItemType.DIRENT, b.offset), direntValue(a.inode.ino, a.inode.mode >> 12, Buffer.from(bName)));
    const subA = isDir(a.inode) ? 1 : 0;
    const subB = isDir(b.inode) ? 1 : 0;
    this.touchDir(this.tree.inode(a.dir.ino), 0, a.dir.ino === b.dir.ino ? 0 : subB - subA, t);
    this.touchDir(this.tree.inode(b.dir.ino), 0, a.dir.ino === b.dir.ino ? 0 : subA - subB, t);
    for (const [moved, to] of [
      [a.inode.ino, b.dir.ino],
      [b.inode.ino, a.dir.ino],
    ] as const) {
      const inode = this.tree.inode(moved);
      inode.ctime = t;
      if (isDir(inode)) inode.parent = to;
      this.tree.saveInode(inode);
    }
  }
}

/** A setattr of times alone, which a writeback cache sends at every close and fsync (even for a file already freed). */
export function onlyTimes(c: AttrChanges): boolean {
  return c.size === undefined && c.mode === undefined && c.uid === undefined && c.gid === undefined && c.killSetId === undefined;
}

/** A setattr's times: atime and mtime as asked (UTIME_NOW is `t`), ctime the kernel's if it sent one, else `t`. */
function setTimes(inode: Inode, c: AttrChanges, t: Time): void {
  if (c.atime !== undefined) inode.atime = c.atime === 'now' ? t : c.atime;
  if (c.mtime !== undefined) inode.mtime = c.mtime === 'now' ? t : c.mtime;
  inode.ctime = c.ctime ?? t;
}

/** Times set on a freed inode: answered, and kept nowhere but in the answer. */
function touchGone(dead: Inode, c: AttrChanges): Inode {
  setTimes(dead, c, now());
  return dead;
}

/** setuid goes; setgid only with group execute (without it, it marks mandatory locking and stays). */
function dropSetId(inode: Inode): void {
  inode.mode &= ~(S_ISUID | (inode.mode & 0o010 ? S_ISGID : 0));
}

/**
 * A write or truncate by someone without CAP_FSETID (the kernel says so):
 * setuid goes; setgid goes with group execute, or when the writer is not in
 * the file's group, judged by the writer's gid (the kernel, which knows the
 * supplementary groups too, asks only when something must go).
 */
function dropSetIdFor(inode: Inode, writerGid: number): void {
  inode.mode &= ~S_ISUID;
  if (inode.mode & 0o010 || writerGid !== inode.gid) inode.mode &= ~S_ISGID;
}

function newInode(ino: number, mode: number, owner: Caller, parent: number, rdev = 0): Inode {
  const t = now();
  const dir = (mode & S_IFMT) === S_IFDIR;
  return { ino, mode, uid: owner.uid, gid: owner.gid, nlink: dir ? 2 : 1, rdev, flags: 0, size: 0, chunks: 0, atime: t, mtime: t, ctime: t, btime: t, parent, entries: 0 };
}

function checkName(name: Buffer): void {
  if (name.length === 0) fail('ENOENT', 'an empty name');
  if (name.length > NAME_MAX) fail('ENAMETOOLONG', `a name is at most ${NAME_MAX} bytes`);
  if (name.includes(0x2f) || name.includes(0)) fail('EINVAL', `a name holds no '/' and no NUL byte`);
  if (name.equals(Buffer.from('.')) || name.equals(Buffer.from('..'))) fail('EINVAL', `'${name.toString()}' names no entry of its own`);
}

function checkXattrName(name: Buffer): void {
  if (name.length === 0 || name.length > XATTR_NAME_MAX) fail('ERANGE', `an attribute name is 1 to ${XATTR_NAME_MAX} bytes`);
}

function checkRange(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) fail('EINVAL', `invalid range ${offset}+${length}`);
}
