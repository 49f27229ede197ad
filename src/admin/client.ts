/**
 * The CLI's side of the admin protocol (protocol.ts). When a daemon serves
 * the pool, an operation goes to it; when none answers (no socket, or a
 * socket left by a daemon that died), the caller opens the pool itself.
 */
import fs from 'node:fs';
import net from 'node:net';

import { CowvolError, type ErrorCode } from '../errors.js';
import type { ProgressFn } from '../volumes/slices.js';
import { PROTOCOL_VERSION, type Reply } from './protocol.js';
import { adminSocketPath } from './server.js';

/**
 * The operation's result from the daemon, or null if no daemon answers.
 * A refusal is thrown as the CowvolError the daemon reported.
 */
export function askDaemon(poolDir: string, op: string, args: object, progress: ProgressFn): Promise<{ result: unknown } | null> {
  const socket = adminSocketPath(poolDir);
  if (!fs.existsSync(socket)) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socket);
    let buf = '';
    let connected = false;
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      fn();
    };
    conn.setEncoding('utf8');
    conn.on('connect', () => {
      connected = true;
      conn.write(`${JSON.stringify({ v: PROTOCOL_VERSION, op, args })}\n`);
    });
    conn.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const reply = parseReply(line);
        if (reply === null) settle(() => reject(new CowvolError('EIO', 'the daemon sent a malformed answer')));
        else if ('progress' in reply) progress(reply.progress.done, reply.progress.total);
        else if ('result' in reply) settle(() => resolve({ result: reply.result }));
        else settle(() => reject(new CowvolError(reply.error.code, reply.error.message)));
      }
    });
    conn.on('end', () => settle(() => reject(new CowvolError('EIO', 'the daemon closed the connection without an answer'))));
    // No daemon behind the socket (it died): the caller works on the pool directly.
    conn.on('error', (err) => settle(() => (connected ? reject(new CowvolError('EIO', `lost the daemon: ${err.message}`)) : resolve(null))));
  });
}

function parseReply(line: string): Reply | null {
  try {
    const j = JSON.parse(line) as Record<string, unknown>;
    if (typeof j.progress === 'object' && j.progress !== null) return j as Reply;
    if ('result' in j) return j as Reply;
    const e = j.error as { code?: unknown; message?: unknown } | undefined;
    if (e && typeof e.code === 'string' && typeof e.message === 'string') return { error: { code: e.code as ErrorCode, message: e.message } };
  } catch {
    // fall through: malformed
  }
  return null;
}
