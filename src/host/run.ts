/**
 * Runs the node's storage tools (losetup, mkfs, mount...). A failure becomes
 * one line, the command and the tool's last line of stderr, as a
 * CowvolError: EIO, with the tool's exit status kept in `toolExit`.
 */
import { execFile } from 'node:child_process';

import { CowvolError } from '../errors.js';

/** A limit on every external call: a wedged mount must not hold an RPC forever. */
const TIMEOUT_MS = 120_000;

export function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: TIMEOUT_MS, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err === null) {
        resolve(stdout);
        return;
      }
      const last = stderr.trim().split('\n').pop() ?? '';
      const code = typeof err.code === 'number' ? err.code : null;
      reject(new CowvolError('EIO', `${cmd} ${args.join(' ')}: ${last !== '' ? last : err.message}`, code));
    });
  });
}
