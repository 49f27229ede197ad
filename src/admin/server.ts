/**
 * The daemon's side of the admin protocol (protocol.ts): a unix socket in
 * the pool directory (cowvol.sock, mode 0600, so root only). Each request
 * runs as an operation against the daemon's open pool; long ones run in
 * slices, so FUSE requests keep being answered, and their progress goes back
 * over the same connection.
 *
 * Caveat: operations of different connections interleave between slices
 * (two imports into two volumes proceed side by side).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { CowvolError, fromSystemError } from '../errors.js';
import type { Logger } from '../log.js';
import { type OpContext, isOpName, runOperation } from './operations.js';
import { MAX_REQUEST_BYTES, PROTOCOL_VERSION, type Reply, type Request } from './protocol.js';

/** At most this often a progress event goes out; the last state always does, as the result. */
const PROGRESS_EVERY_MS = 100;

export function adminSocketPath(poolDir: string): string {
  return path.join(poolDir, 'cowvol.sock');
}

/** Connections that have not sent a whole request yet, per server: a stop drops them (closeAdminServer). */
const idleOf = new WeakMap<net.Server, Set<net.Socket>>();

export function startAdminServer(socket: string, ctx: OpContext, log: Logger): net.Server {
  fs.rmSync(socket, { force: true });
  const idle = new Set<net.Socket>();
  const server = net.createServer((conn) => serveConnection(conn, ctx, log, idle));
  idleOf.set(server, idle);
  const old = process.umask(0o177);
  try {
    server.listen(socket);
  } finally {
    process.umask(old);
  }
  return server;
}

/**
 * Stops taking connections and settles once the requests under way are
 * answered. A connection that never sent a whole request is dropped: a
 * client that connects and says nothing must not hold a daemon's stop.
 */
export function closeAdminServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    for (const conn of idleOf.get(server) ?? []) conn.destroy();
  });
}

function serveConnection(conn: net.Socket, ctx: OpContext, log: Logger, idle: Set<net.Socket>): void {
  let buf = '';
  let started = false;
  idle.add(conn);
  conn.on('close', () => idle.delete(conn));
  conn.setEncoding('utf8');
  conn.on('data', (chunk: string) => {
    if (started) return;
    buf += chunk;
    const nl = buf.indexOf('\n');
    if (nl < 0 && buf.length <= MAX_REQUEST_BYTES) return;
    started = true;
    idle.delete(conn);
    const send = (reply: Reply | object): boolean => conn.write(`${JSON.stringify(reply)}\n`);
    if (nl < 0) {
      conn.end(`${JSON.stringify(errorReply(new CowvolError('EINVAL', 'admin request too large')))}\n`);
      return;
    }
    void answer(buf.slice(0, nl), ctx, log, send).finally(() => conn.end());
  });
  conn.on('error', () => {});
}

async function answer(line: string, ctx: OpContext, log: Logger, send: (r: Reply | object) => boolean): Promise<void> {
  let req: Request;
  try {
    req = parseRequest(line);
  } catch (err) {
    if (err instanceof OldClient) {
      // A version-1 CLI prints stderr and exits with exitCode: tell it, in its own shape.
      send({ stdout: '', stderr: `cowvol: ${err.message}\n`, exitCode: 1 });
      return;
    }
    send(errorReply(err));
    return;
  }
  log.info({ op: req.op }, 'admin operation');
  let last = 0;
  const progress = (done: number, total: number): void => {
    const now = Date.now();
    if (now - last < PROGRESS_EVERY_MS) return;
    last = now;
    send({ progress: { done, total } });
  };
  try {
    const op = req.op;
    if (!isOpName(op)) throw new CowvolError('EINVAL', `unknown admin operation '${op}'`);
    send({ result: await runOperation(ctx, op, req.args, progress) });
  } catch (err) {
    if (!(err instanceof CowvolError)) log.error({ err, op: req.op }, 'admin operation failed');
    send(errorReply(err));
  }
}

class OldClient extends Error {}

function parseRequest(line: string): Request {
  let j: unknown;
  try {
    j = JSON.parse(line);
  } catch {
    throw new CowvolError('EINVAL', 'admin request is not JSON');
  }
  const o = (typeof j === 'object' && j !== null ? j : {}) as Record<string, unknown>;
  if (Array.isArray(o.argv)) {
    throw new OldClient(`this cowvol CLI is older than the daemon (admin protocol 1; the daemon speaks ${PROTOCOL_VERSION}): run the cowvol that came with the daemon`);
  }
  if (o.v !== PROTOCOL_VERSION) {
    throw new CowvolError('EPROTO', `the daemon speaks admin protocol ${PROTOCOL_VERSION}, this CLI ${String(o.v)}: run the cowvol that came with the daemon, or restart the daemon after an upgrade`);
  }
  if (typeof o.op !== 'string') throw new CowvolError('EINVAL', 'admin request has no op');
  const args = o.args === undefined ? {} : o.args;
  if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new CowvolError('EINVAL', 'admin request args must be an object');
  return { v: o.v, op: o.op, args: args as Record<string, unknown> };
}

function errorReply(err: unknown): Reply {
  const e = fromSystemError(err);
  return { error: { code: e.code, message: e.message } };
}
