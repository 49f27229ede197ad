/**
 * The CLI's side of the admin API (src/daemon/admin.ts). When a daemon
 * serves the pool, commands go to it; when none answers, the CLI opens the
 * pool itself. File arguments are made absolute first, since the daemon
 * runs elsewhere.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { resolvePoolDir } from '../blockstore/pool-dir.js';
import { type CommandResult, adminSocketPath } from '../daemon/admin.js';

/** Positions (in argv) of file arguments, by command. */
const FILE_ARGS: Record<string, number> = { import: 1, export: 2 };

function poolFlag(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--pool') return argv[i + 1];
    if (a.startsWith('--pool=')) return a.slice('--pool='.length);
  }
  return undefined;
}

export async function askDaemon(argv: string[]): Promise<CommandResult | null> {
  const first = argv[0];
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') return null;
  const socket = adminSocketPath(resolvePoolDir(poolFlag(argv)));
  if (!fs.existsSync(socket)) return null;
  const sent = [...argv];
  const at = FILE_ARGS[first];
  if (at !== undefined && sent[at] !== undefined) sent[at] = path.resolve(sent[at]);
  return new Promise((resolve) => {
    const conn = net.createConnection(socket);
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${JSON.stringify({ argv: sent })}\n`));
    conn.on('data', (chunk: string) => (buf += chunk));
    conn.on('end', () => {
      try {
        resolve(JSON.parse(buf) as CommandResult);
      } catch {
        resolve({ stdout: '', stderr: 'cowvol: the daemon sent a malformed answer\n', exitCode: 1 });
      }
    });
    // No daemon behind the socket (it died): work on the pool directly.
    conn.on('error', () => resolve(null));
  });
}
