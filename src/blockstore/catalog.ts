/**
 * The pool's volumes by id and by name, and their persistence: the
 * directory tree maps a volume id to its record page.
 *
 * The catalog is loaded whole at open (one page per volume); its memory
 * grows with the number of volumes, not with their size. Record pages are
 * rewritten at commit for the volumes whose record changed.
 */
import { assert } from '../errors.js';
import type { PageCache } from './page-cache.js';
import { PageKind } from './page.js';
import type { RadixTrees, Tree } from './radix-tree.js';
import type { SpaceMap } from './space-map.js';
import { type Volume, type VolumeRecord, decodeRecord, encodeRecord } from './volume-record.js';

export class Catalog {
  readonly directory: Tree;
  nextId: number;
  private readonly byId = new Map<number, Volume>();
  private readonly byName = new Map<string, Volume>();
  /** Record pages of volumes deleted in this transaction, by id. */
  private readonly removed = new Map<number, number>();
  /** Volumes whose record changed in this transaction (commit cost follows this, not the volume count). */
  private readonly changed = new Set<Volume>();
  /** Volumes written by the commit under way, whose committed tree it moves. */
  private persisted: Volume[] = [];
  private readonly trees: RadixTrees;
  private readonly cache: PageCache;
  private readonly meta: SpaceMap;

  constructor(trees: RadixTrees, meta: SpaceMap, directory: Tree, nextId: number) {
    this.trees = trees;
    this.cache = trees.cache;
    this.meta = meta;
    this.directory = { ...directory };
    this.nextId = nextId;
  }

  load(newXlateId: () => number): void {
    this.trees.forEach(this.directory, 0, Infinity, (id, page) => {
      const record = decodeRecord(this.cache.get(page), page);
      assert(record.id === id, `record page ${page} says id ${record.id}, directory says ${id}`);
      this.index({ ...record, page, committedTree: { ...record.tree }, xlateId: newXlateId(), shareEpoch: 0 });
    });
  }

  get(name: string): Volume | undefined {
    return this.byName.get(name);
  }

  byIdGet(id: number): Volume | undefined {
    return this.byId.get(id);
  }

  all(): Volume[] {
    return [...this.byId.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  size(): number {
    return this.byId.size;
  }

  add(record: Omit<VolumeRecord, 'id'>, xlateId: number): Volume {
    const volume: Volume = { ...record, id: this.nextId++, page: 0, committedTree: null, xlateId, shareEpoch: 0 };
    this.index(volume);
    this.changed.add(volume);
    return volume;
  }

  /** The volume's record (tree, size, mapped count) must be written at the next commit. */
  touch(volume: Volume): void {
    this.changed.add(volume);
  }

  /** Whether the volume's record waits for the next commit. */
  isChanged(volume: Volume): boolean {
    return this.changed.has(volume);
  }

  /** Whether the volume changed since the last durable commit: in the open transaction, or in one sealed and not yet durable. */
  uncommitted(volume: Volume): boolean {
    return this.changed.has(volume) || this.persisted.includes(volume);
  }

  remove(volume: Volume): void {
    this.byId.delete(volume.id);
    this.byName.delete(volume.name);
    this.changed.delete(volume);
    if (volume.page !== 0) this.removed.set(volume.id, volume.page);
  }

  hasChanges(): boolean {
    return this.removed.size > 0 || this.changed.size > 0;
  }

  /** Writes changed records and directory entries into the open transaction. */
  persist(): void {
    for (const [id, page] of this.removed) {
      this.trees.set(this.directory, PageKind.DIRECTORY, id, 0);
      this.freeRecordPage(page);
    }
    this.removed.clear();
    this.persisted = [...this.changed];
    this.changed.clear();
    for (const v of this.persisted) {
      const page = this.meta.reserve();
      this.cache.put(page, encodeRecord(v));
      const old = this.trees.set(this.directory, PageKind.DIRECTORY, v.id, page);
      this.meta.confirm(page);
      assert(old === v.page, `directory held page ${old} for volume ${v.id}, record says ${v.page}`);
      if (old !== 0) this.freeRecordPage(old);
      v.page = page;
    }
  }

  committedNow(): void {
    for (const v of this.persisted) v.committedTree = { ...v.tree };
    this.persisted = [];
  }

  private freeRecordPage(page: number): void {
    const left = this.trees.hooks.decPage(page);
    assert(left === 0, `record page ${page} had other holders`);
  }

  private index(volume: Volume): void {
    assert(!this.byId.has(volume.id), `duplicate volume id ${volume.id}`);
    assert(!this.byName.has(volume.name), `duplicate volume name ${volume.name}`);
    this.byId.set(volume.id, volume);
    this.byName.set(volume.name, volume);
  }
}
