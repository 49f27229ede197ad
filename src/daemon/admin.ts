/**
 * The admin API: a unix socket in the pool directory (cowvol.sock, mode
 * 0600, so root only) over which the CLI runs its commands inside the
 * daemon that holds the pool. One request per connection: a JSON line
 * {"argv": [...]} in, a JSON line {"stdout", "stderr", "exitCode"} out.
 * Commands run one at a time on the event loop, like any pool call.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import type { Logger } from './log.js';

export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Largest request accepted; an argv is small. */
const MAX_REQUEST = 64 * 1024;

export function adminSocketPath(poolDir: string): string {
  return path.join(poolDir, 'cowvol.sock');
}

export function startAdminServer(socket: string, execute: (argv: string[]) => CommandResult, log: Logger): net.Server {
  fs.rmSync(socket, { force: true });
  const server = net.createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST) {
        conn.end(`${JSON.stringify({ stdout: '', stderr: 'cowvol: admin request too large\n', exitCode: 2 })}\n`);
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let result: CommandResult;
      try {
        const req = JSON.parse(buf.slice(0, nl)) as { argv?: unknown };
        if (!Array.isArray(req.argv) || !req.argv.every((a) => typeof a === 'string')) throw new Error('argv must be a list of strings');
        log.info({ argv: req.argv }, 'admin command');
        result = execute(req.argv as string[]);
      } catch (err) {
        log.error({ err }, 'admin command failed');
        result = { stdout: '', stderr: `cowvol: ${(err as Error).message}\n`, exitCode: 1 };
      }
      conn.end(`${JSON.stringify(result)}\n`);
    });
    conn.on('error', () => {});
  });
  const old = process.umask(0o177);
  try {
    server.listen(socket);
  } finally {
    process.umask(old);
  }
  return server;
}
