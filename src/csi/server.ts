/**
 * The CSI endpoint: Identity, Controller, GroupController and Node on one
 * unix socket (mode 0600) inside the daemon, over the daemon's open pool.
 * Each handler is wrapped once: requests are logged, errors become the
 * spec's status codes, and nothing but a CsiError's message leaks out.
 */
import fs from 'node:fs';

import * as grpc from '@grpc/grpc-js';

import type { CapacityRange, CreateVolumeRequest, NodePublishVolumeRequest, NodeStageVolumeRequest, Topology, VolumeCapability } from './proto.js';
import { loadCsi } from './proto.js';
import { ControllerService } from './controller.js';
import { type DriverContext, InFlight, VERSION, socketPathOf } from './driver.js';
import { GroupControllerService } from './group-controller.js';
import { NodeService } from './node.js';
import { CsiError, status, toCsiError } from './status.js';

type Handler = (req: never) => Promise<object> | object;

export interface CsiServer {
  close(): Promise<void>;
}

export async function startCsiServer(ctx: DriverContext, endpoint: string, ready: () => boolean): Promise<CsiServer> {
  const services = loadCsi();
  const inflight = new InFlight();
  const controller = new ControllerService(ctx, inflight);
  const group = new GroupControllerService(ctx, inflight, controller);
  const node = new NodeService(ctx, inflight);
  const server = new grpc.Server();
  const add = (name: 'Identity' | 'Controller' | 'GroupController' | 'Node', handlers: Record<string, Handler>): void =>
    server.addService(services[name].service, wrap(ctx, name, handlers, ready));
  add('Identity', identityHandlers(ctx, ready));
  add('Controller', controllerHandlers(controller));
  add('GroupController', groupHandlers(group));
  add('Node', nodeHandlers(node));
  return bind(ctx, server, endpoint);
}

/**
 * One handler per method, wrapped: until the pool is open and stages are
 * rebuilt only Identity answers; every call is logged, and every error
 * becomes a status code (status.ts) with nothing but its message.
 */
function wrap(ctx: DriverContext, service: string, handlers: Record<string, Handler>, ready: () => boolean): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [method, fn] of Object.entries(handlers)) {
    impl[method] = (call: grpc.ServerUnaryCall<unknown, object>, callback: grpc.sendUnaryData<object>) => {
      const started = process.hrtime.bigint();
      const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
      Promise.resolve()
        .then(() => {
          if (service !== 'Identity' && !ready()) throw new CsiError(status.UNAVAILABLE, 'cowvol is starting or stopping; retry');
          return fn(call.request as never);
        })
        .then(
          (res) => {
            ctx.log.debug({ rpc: `${service}.${method}`, ms: seconds() * 1000 }, 'csi call');
            ctx.observe?.(method, 'OK', seconds());
            callback(null, res);
          },
          (err: unknown) => {
            const e = toCsiError(err);
            const level = e.code === status.INTERNAL ? 'error' : 'info';
            ctx.log[level]({ rpc: `${service}.${method}`, code: status[e.code], err: e.message }, 'csi call failed');
            ctx.observe?.(method, status[e.code] ?? String(e.code), seconds());
            callback({ code: e.code, details: e.message });
          },
        );
    };
  }
  return impl;
}

function identityHandlers(ctx: DriverContext, ready: () => boolean): Record<string, Handler> {
  return {
    GetPluginInfo: () => ({ name: ctx.driverName, vendorVersion: VERSION, manifest: {} }),
    GetPluginCapabilities: () => ({
      capabilities: [
        { service: { type: 'CONTROLLER_SERVICE' } },
        { service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } },
        { service: { type: 'GROUP_CONTROLLER_SERVICE' } },
        { volumeExpansion: { type: 'ONLINE' } },
      ],
    }),
    Probe: () => ({ ready: { value: ready() } }),
  };
}

function controllerHandlers(controller: ControllerService): Record<string, Handler> {
  return {
    CreateVolume: async (r: CreateVolumeRequest) => ({ volume: await controller.createVolume(r) }),
    DeleteVolume: async (r: { volumeId: string }) => (await controller.deleteVolume(r.volumeId), {}),
    ControllerPublishVolume: unimplemented('ControllerPublishVolume (attachRequired is false)'),
    ControllerUnpublishVolume: unimplemented('ControllerUnpublishVolume (attachRequired is false)'),
    ValidateVolumeCapabilities: (r: { volumeId: string; volumeCapabilities: VolumeCapability[]; volumeContext: Record<string, string>; parameters: Record<string, string> }) =>
      controller.validate(r.volumeId, r.volumeCapabilities, r.volumeContext, r.parameters),
    ListVolumes: (r: { maxEntries: number; startingToken: string }) => controller.listVolumes(r.maxEntries, r.startingToken),
    GetCapacity: (r: { volumeCapabilities: VolumeCapability[]; accessibleTopology: Topology | null }) => controller.capacity(r.volumeCapabilities, r.accessibleTopology),
    ControllerGetCapabilities: () => ({ capabilities: controller.capabilities() }),
    CreateSnapshot: async (r: { sourceVolumeId: string; name: string; parameters: Record<string, string> }) => ({ snapshot: await controller.createSnapshot(r.sourceVolumeId, r.name, r.parameters) }),
    DeleteSnapshot: (r: { snapshotId: string }) => (controller.deleteSnapshot(r.snapshotId), {}),
    ListSnapshots: (r: { maxEntries: number; startingToken: string; sourceVolumeId: string; snapshotId: string }) =>
      controller.listSnapshots(r.maxEntries, r.startingToken, r.sourceVolumeId, r.snapshotId),
    GetSnapshot: (r: { snapshotId: string }) => ({ snapshot: controller.getSnapshot(r.snapshotId) }),
    // Growth happens on the node that holds the volume (NodeExpandVolume): a per-node resizer does not exist yet.
    ControllerExpandVolume: unimplemented('ControllerExpandVolume (volumes grow in NodeExpandVolume, on their node)'),
    ControllerGetVolume: (r: { volumeId: string }) => controller.getVolume(r.volumeId),
    ControllerModifyVolume: unimplemented('ControllerModifyVolume (no mutable parameters)'),
  };
}

function groupHandlers(group: GroupControllerService): Record<string, Handler> {
  return {
    GroupControllerGetCapabilities: () => ({ capabilities: group.capabilities() }),
    CreateVolumeGroupSnapshot: async (r: { name: string; sourceVolumeIds: string[]; parameters: Record<string, string> }) => ({
      groupSnapshot: await group.create(r.name, r.sourceVolumeIds, r.parameters),
    }),
    DeleteVolumeGroupSnapshot: async (r: { groupSnapshotId: string; snapshotIds: string[] }) => (await group.delete(r.groupSnapshotId, r.snapshotIds), {}),
    GetVolumeGroupSnapshot: (r: { groupSnapshotId: string; snapshotIds: string[] }) => ({ groupSnapshot: group.get(r.groupSnapshotId, r.snapshotIds) }),
  };
}

function nodeHandlers(node: NodeService): Record<string, Handler> {
  return {
    NodeStageVolume: async (r: NodeStageVolumeRequest) => (await node.stage(r), {}),
    NodeUnstageVolume: async (r: { volumeId: string; stagingTargetPath: string }) => (await node.unstage(r.volumeId, r.stagingTargetPath), {}),
    NodePublishVolume: async (r: NodePublishVolumeRequest) => (await node.publish(r), {}),
    NodeUnpublishVolume: async (r: { volumeId: string; targetPath: string }) => (await node.unpublish(r.volumeId, r.targetPath), {}),
    NodeGetVolumeStats: (r: { volumeId: string; volumePath: string }) => node.stats(r.volumeId, r.volumePath),
    NodeExpandVolume: async (r: { volumeId: string; volumePath: string; capacityRange: CapacityRange | null; volumeCapability: VolumeCapability | null }) => ({
      capacityBytes: await node.expand(r.volumeId, r.volumePath, r.capacityRange, r.volumeCapability),
    }),
    NodeGetCapabilities: () => ({ capabilities: node.capabilities() }),
    NodeGetInfo: () => node.info(),
  };
}

/** Listens on the endpoint's socket, root-only; a socket left by a killed daemon is removed first. */
async function bind(ctx: DriverContext, server: grpc.Server, endpoint: string): Promise<CsiServer> {
  const socket = socketPathOf(endpoint);
  fs.rmSync(socket, { force: true });
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
  } finally {
    process.umask(oldMask);
  }
  fs.chmodSync(socket, 0o600);
  ctx.log.info({ endpoint, driver: ctx.driverName, node: ctx.nodeId }, 'CSI endpoint listening');
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => {
          fs.rmSync(socket, { force: true });
          resolve();
        });
      }),
  };
}

function unimplemented(what: string): Handler {
  return () => {
    throw new CsiError(status.UNIMPLEMENTED, `${what} is not implemented`);
  };
}
