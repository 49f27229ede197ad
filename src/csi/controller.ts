/**
 * The CSI Controller service: volumes and snapshots in the pool. Every
 * change is one pool transaction that commits before the answer goes back,
 * so a success is durable. Volumes are thin: capacity is what the volume
 * may grow to, not space taken.
 */
import { isSnapshotName } from '../volumes/names.js';
import type { VolumeView, Volumes } from '../volumes/volumes.js';
import { COWFS, MULTI_NODE_MODES, type Usage, usageOf } from './capabilities.js';
import { type DriverContext, InFlight, LABEL, TOPOLOGY_KEY, nodeTopology, poolCondition } from './driver.js';
import { nameProblem, poolNameFor, snapshotIdFor } from './ids.js';
import type { CapacityRange, ContentSource, CreateVolumeRequest, CsiSnapshot, CsiVolume, Topology, TopologyRequirement, VolumeCapability, VolumeCondition } from './proto.js';
import { timestamp } from './proto.js';
import { CsiError, csiFail, status } from './status.js';

const MiB = 1 << 20;
export const DEFAULT_VOLUME_SIZE = 1 << 30;
/** mkfs.xfs refuses smaller filesystems. */
const XFS_MIN_SIZE = 300 * MiB;

export class ControllerService {
  private readonly volumes: Volumes;

  constructor(
    private readonly ctx: DriverContext,
    private readonly inflight: InFlight,
  ) {
    this.volumes = ctx.volumes;
  }

  // ---- volumes -----------------------------------------------------------------

  async createVolume(req: CreateVolumeRequest): Promise<CsiVolume> {
    const problem = nameProblem(req.name);
    if (problem !== null) csiFail(status.INVALID_ARGUMENT, problem);
    if (req.volumeCapabilities.length === 0) csiFail(status.INVALID_ARGUMENT, 'volume_capabilities is required');
    const usages = req.volumeCapabilities.map((c, i) => usageOf(c, `volume_capabilities[${i}]`));
    checkParameters(req.parameters, 'parameters');
    if (Object.keys(req.mutableParameters).length > 0) csiFail(status.INVALID_ARGUMENT, 'mutable_parameters are not supported (no MODIFY_VOLUME)');
    this.checkTopology(req.accessibilityRequirements, usages.some((u) => MULTI_NODE_MODES.includes(u.mode)));
    const name = poolNameFor(req.name);
    const source = this.contentSource(req.volumeContentSource);
    const minSize = usages.some((u) => u.fsType === 'xfs') ? XFS_MIN_SIZE : 4096;
    const kind = kindFor(usages);
    const params = JSON.stringify(sorted(req.parameters));
    return this.inflight.run([name], async () => {
      const existing = this.volumes.find(name);
      if (existing) {
        if (existing.readOnly || existing.labels[LABEL.name] !== req.name) csiFail(status.ALREADY_EXISTS, `'${name}' exists and was not created for CSI name '${req.name}'`);
        const range = req.capacityRange;
        if (range && ((range.requiredBytes > 0 && existing.size < range.requiredBytes) || (range.limitBytes > 0 && existing.size > range.limitBytes))) {
          csiFail(status.ALREADY_EXISTS, `volume '${req.name}' exists with ${existing.size} bytes, outside the capacity range asked for`);
        }
        if ((existing.labels[LABEL.source] ?? '') !== sourceKey(req.volumeContentSource)) csiFail(status.ALREADY_EXISTS, `volume '${req.name}' exists with another content source`);
        if ((existing.labels[LABEL.parameters] ?? '{}') !== params) csiFail(status.ALREADY_EXISTS, `volume '${req.name}' exists with other parameters`);
        if (existing.kind !== kind) csiFail(status.ALREADY_EXISTS, `volume '${req.name}' exists as a ${existing.kind} volume`);
        return this.csiVolume(existing);
      }
      const size = pickSize(req.capacityRange, Math.max(minSize, source?.size ?? 0), source?.size ?? DEFAULT_VOLUME_SIZE);
      const labels: Record<string, string> = { [LABEL.name]: req.name, [LABEL.parameters]: params };
      const key = sourceKey(req.volumeContentSource);
      if (key !== '') labels[LABEL.source] = key;
      if (source && this.volumes.find(source.name)?.kind !== kind) csiFail(status.INVALID_ARGUMENT, `the content source is a ${this.volumes.find(source.name)?.kind} volume, the request asks for ${kind === 'fs' ? 'cowfs' : 'a block device or ext4/xfs'}`);
      const v = source ? await this.volumes.cloneLive(source.name, name, { size, labels }) : this.volumes.create(name, { size, labels, kind });
      this.ctx.log.info({ volume: name, size, source: source?.name }, 'volume created');
      return this.csiVolume(v);
    });
  }

  async deleteVolume(volumeId: string): Promise<void> {
    if (volumeId === '') csiFail(status.INVALID_ARGUMENT, 'volume_id is required');
    await this.inflight.run([volumeId], () => {
      // Absent is OK, as the spec asks. A snapshot's id is refused as the CLI refuses it (EINVAL), and a volume
      // still staged by the pool itself (its loop device holds it: EBUSY, FAILED_PRECONDITION).
      if (this.volumes.find(volumeId) === undefined) return;
      this.volumes.delete(volumeId);
      this.ctx.log.info({ volume: volumeId }, 'volume deleted');
    });
  }

  validate(volumeId: string, caps: VolumeCapability[], context: Record<string, string>, parameters: Record<string, string>): object {
    const v = this.existingVolume(volumeId);
    if (caps.length === 0) csiFail(status.INVALID_ARGUMENT, 'volume_capabilities is required');
    try {
      caps.forEach((c, i) => usageOf(c, `volume_capabilities[${i}]`));
      if (Object.keys(parameters).length > 0 && JSON.stringify(sorted(parameters)) !== (v.labels[LABEL.parameters] ?? '{}')) {
        return { message: 'the parameters differ from those the volume was created with' };
      }
    } catch (err) {
      if (err instanceof CsiError && err.code === status.INVALID_ARGUMENT) return { message: err.message };
      throw err;
    }
    return { confirmed: { volumeContext: context, volumeCapabilities: caps, parameters } };
  }

  listVolumes(maxEntries: number, startingToken: string): object {
    const [page, next] = paginate(this.volumes.list(), maxEntries, startingToken);
    return { entries: page.map((v) => ({ volume: this.csiVolume(v), status: { volumeCondition: this.condition(v) } })), nextToken: next };
  }

  getVolume(volumeId: string): object {
    const v = this.existingVolume(volumeId);
    return { volume: this.csiVolume(v), status: { publishedNodeIds: [], volumeCondition: this.condition(v) } };
  }

  capacity(caps: VolumeCapability[], topology: Topology | null): object {
    caps.forEach((c, i) => usageOf(c, `volume_capabilities[${i}]`));
    if (topology && topology.segments[TOPOLOGY_KEY] !== this.ctx.nodeId) return { availableCapacity: 0 };
    const st = this.volumes.pool.stats();
    const available = Number.isFinite(st.freeChunks) ? st.freeChunks * st.chunkSize : this.ctx.hostFree();
    return { availableCapacity: available };
  }

  capabilities(): object[] {
    return [
      'CREATE_DELETE_VOLUME',
      'LIST_VOLUMES',
      'GET_CAPACITY',
      'CREATE_DELETE_SNAPSHOT',
      'LIST_SNAPSHOTS',
      'CLONE_VOLUME',
      'VOLUME_CONDITION',
      'GET_VOLUME',
      'SINGLE_NODE_MULTI_WRITER',
      'GET_SNAPSHOT',
    ].map((type) => ({ rpc: { type } }));
  }

  // ---- snapshots ---------------------------------------------------------------

  createSnapshot(sourceVolumeId: string, name: string, parameters: Record<string, string>): Promise<CsiSnapshot> {
    if (sourceVolumeId === '') csiFail(status.INVALID_ARGUMENT, 'source_volume_id is required');
    const problem = nameProblem(name);
    if (problem !== null) csiFail(status.INVALID_ARGUMENT, problem);
    checkParameters(parameters, 'parameters');
    return this.inflight.run([sourceVolumeId], async () => {
      const same = this.volumes.listSnapshots().find((v) => v.labels[LABEL.name] === name && v.group === null);
      if (same) {
        if (same.origin !== sourceVolumeId) csiFail(status.ALREADY_EXISTS, `snapshot '${name}' exists for volume '${same.origin}', not '${sourceVolumeId}'`);
        return this.csiSnapshot(same);
      }
      const src = this.existingVolume(sourceVolumeId);
      const snap = await this.volumes.snapshotLive(snapshotIdFor(src.name, name), { [LABEL.name]: name });
      this.ctx.log.info({ snapshot: snap.name }, 'snapshot created');
      return this.csiSnapshot(snap);
    });
  }

  deleteSnapshot(snapshotId: string): void {
    if (snapshotId === '') csiFail(status.INVALID_ARGUMENT, 'snapshot_id is required');
    const snap = this.findSnapshot(snapshotId);
    if (!snap) return;
    this.volumes.deleteSnapshot(snap.name);
    this.ctx.log.info({ snapshot: snapshotId }, 'snapshot deleted');
  }

  listSnapshots(maxEntries: number, startingToken: string, sourceVolumeId: string, snapshotId: string): object {
    let all = this.volumes.listSnapshots();
    if (snapshotId !== '') all = all.filter((v) => v.name === snapshotId);
    if (sourceVolumeId !== '') all = all.filter((v) => v.origin === sourceVolumeId);
    const [page, next] = paginate(all, maxEntries, startingToken);
    return { entries: page.map((v) => ({ snapshot: this.csiSnapshot(v) })), nextToken: next };
  }

  getSnapshot(snapshotId: string): CsiSnapshot {
    if (snapshotId === '') csiFail(status.INVALID_ARGUMENT, 'snapshot_id is required');
    const snap = this.findSnapshot(snapshotId);
    if (!snap) csiFail(status.NOT_FOUND, `no snapshot '${snapshotId}'`);
    return this.csiSnapshot(snap);
  }

  csiSnapshot(v: VolumeView): CsiSnapshot {
    return {
      sizeBytes: v.size,
      snapshotId: v.name,
      sourceVolumeId: v.origin,
      creationTime: timestamp(v.createdAt),
      readyToUse: true,
      groupSnapshotId: v.group ?? '',
    };
  }

  /** A snapshot id that names no snapshot is, for CSI, one that does not exist (never malformed). */
  findSnapshot(id: string): VolumeView | undefined {
    const v = isSnapshotName(id) ? this.volumes.find(id) : undefined;
    return v?.readOnly === true ? v : undefined;
  }

  // ---- internals -------------------------------------------------------------------

  private existingVolume(volumeId: string): VolumeView {
    if (volumeId === '') csiFail(status.INVALID_ARGUMENT, 'volume_id is required');
    return this.volumes.volume(volumeId);
  }

  private contentSource(src: ContentSource | null): VolumeView | undefined {
    if (!src || src.type === undefined) return undefined;
    if (src.type === 'snapshot') {
      const id = src.snapshot?.snapshotId ?? '';
      if (id === '') csiFail(status.INVALID_ARGUMENT, 'volume_content_source.snapshot.snapshot_id is required');
      if (!isSnapshotName(id)) csiFail(status.NOT_FOUND, `no snapshot '${id}' to restore from`);
      return this.volumes.snapshot(id);
    }
    const id = src.volume?.volumeId ?? '';
    if (id === '') csiFail(status.INVALID_ARGUMENT, 'volume_content_source.volume.volume_id is required');
    return this.volumes.volume(id);
  }

  /**
   * Volumes live on this node. A requisite topology must include it; a mode
   * that names several nodes needs every requisite topology to be this node,
   * which is how "multi-node" is pinned to one.
   */
  private checkTopology(req: TopologyRequirement | null, multiNode: boolean): void {
    const here = (t: Topology): boolean => t.segments[TOPOLOGY_KEY] === this.ctx.nodeId;
    const requisite = req?.requisite ?? [];
    if (requisite.length > 0 && !requisite.some(here)) {
      csiFail(status.RESOURCE_EXHAUSTED, `this driver provisions on node '${this.ctx.nodeId}' only, which the requisite topology does not include`);
    }
    if (multiNode && (requisite.length === 0 || !requisite.every(here))) {
      csiFail(status.INVALID_ARGUMENT, `multi-node access modes need the volume pinned to node '${this.ctx.nodeId}' by requisite topology (volumes are node-local)`);
    }
  }

  private condition(v: VolumeView): VolumeCondition {
    return poolCondition(this.ctx, v) ?? { abnormal: false, message: 'healthy' };
  }

  private csiVolume(v: VolumeView): CsiVolume {
    const source = v.labels[LABEL.source] ?? '';
    let contentSource: ContentSource | null = null;
    if (source.startsWith('snapshot:')) contentSource = { snapshot: { snapshotId: source.slice(9) } };
    else if (source.startsWith('volume:')) contentSource = { volume: { volumeId: source.slice(7) } };
    return { capacityBytes: v.size, volumeId: v.name, volumeContext: {}, contentSource, accessibleTopology: [nodeTopology(this.ctx)] };
  }
}

/**
 * A size in the range: the required size (or, without one, the source's
 * size or 1 GiB) rounded up to 1 MiB, or to 4 KiB if the limit is tighter.
 */
export function pickSize(range: CapacityRange | null, minimum: number, fallback = DEFAULT_VOLUME_SIZE): number {
  const required = range?.requiredBytes ?? 0;
  const limit = range?.limitBytes ?? 0;
  if (required < 0 || limit < 0) csiFail(status.INVALID_ARGUMENT, 'capacity_range values must not be negative');
  if (limit > 0 && required > limit) csiFail(status.INVALID_ARGUMENT, `required_bytes ${required} is above limit_bytes ${limit}`);
  let want = required > 0 ? required : fallback;
  if (required === 0 && limit > 0) want = Math.min(want, limit);
  want = Math.max(want, minimum);
  let size = Math.ceil(want / MiB) * MiB;
  if (limit > 0 && size > limit) size = Math.ceil(want / 4096) * 4096;
  if (limit > 0 && size > limit) csiFail(status.OUT_OF_RANGE, `no size fits: at least ${want} bytes are needed and limit_bytes is ${limit}`);
  return size;
}

/** cowvol takes no parameters of its own; kubernetes' own keys pass through. */
function checkParameters(params: Record<string, string>, field: string): void {
  for (const k of Object.keys(params)) {
    if (!k.startsWith('csi.storage.k8s.io/')) csiFail(status.INVALID_ARGUMENT, `${field}: unknown key '${k}' (cowvol takes no parameters of its own)`);
  }
}

function sourceKey(src: ContentSource | null): string {
  if (!src || src.type === undefined) return '';
  return src.type === 'snapshot' ? `snapshot:${src.snapshot?.snapshotId ?? ''}` : `volume:${src.volume?.volumeId ?? ''}`;
}

function sorted(m: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Pages by position in the name-ordered list; a token that is not a position gets ABORTED, as the spec says. */
export function paginate<T>(all: T[], maxEntries: number, token: string): [T[], string] {
  if (maxEntries < 0) csiFail(status.INVALID_ARGUMENT, 'max_entries must not be negative');
  let start = 0;
  if (token !== '') {
    if (!/^\d+$/.test(token) || Number(token) > all.length) throw new CsiError(status.ABORTED, `starting_token '${token}' is not valid (the list may have changed)`);
    start = Number(token);
  }
  const end = maxEntries > 0 ? Math.min(all.length, start + maxEntries) : all.length;
  return [all.slice(start, end), end < all.length ? String(end) : ''];
}

/** cowfs capabilities make a filesystem volume; the rest a block volume (ext4 and xfs go on its loop device). */
function kindFor(usages: Usage[]): 'fs' | 'block' {
  const cowfs = usages.filter((u) => u.fsType === COWFS).length;
  if (cowfs > 0 && cowfs < usages.length) csiFail(status.INVALID_ARGUMENT, 'a cowfs volume cannot also be a block device or carry another filesystem');
  return cowfs > 0 ? 'fs' : 'block';
}
