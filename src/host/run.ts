/**
 * Runs the node's storage tools (losetup, mkfs, mount...). A failure becomes
 * one line, the command and the tool's last line of stderr, as a
 * CowvolError: EIO, with the tool's exit status kept in `toolExit`.
 *
 * Tools start through the addon's posix_spawn (native/src/spawn.c), not
 * child_process: libuv forks, and forking the daemon (its chunk table,
 * journal and page cache) cost 19 ms per tool here against about 1 ms. At
 * most TOOLS_MAX run at once (each has a thread while it runs); the rest
 * wait their turn in order.
 */
import { CowvolError } from '../errors.js';
import { native } from '../native.js';

/** A limit on every external call: a wedged mount must not hold an RPC forever. */
const TIMEOUT_MS = 120_000;
/** Tools running at once; kubelet stages a node's volumes in parallel. */
const TOOLS_MAX = 16;

let running = 0;
const waiting: (() => void)[] = [];

async function turn(): Promise<void> {
  if (running < TOOLS_MAX) {
    running++;
    return;
  }
  // A finishing tool hands its slot straight over, so `running` stays counted.
  await new Promise<void>((resolve) => waiting.push(resolve));
}

function done(): void {
  const next = waiting.shift();
  if (next) next();
  else running--;
}

export async function run(cmd: string, args: string[]): Promise<string> {
  await turn();
  let result: [number, string, string];
  try {
    result = await native.spawnTool([cmd, ...args], TIMEOUT_MS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new CowvolError('EIO', `${cmd} ${args.join(' ')}: could not start it (${code})`, null);
  } finally {
    done();
  }
  const [status, stdout, stderr] = result;
  if (status === 0) return stdout;
  const last = stderr.trim().split('\n').pop() ?? '';
  const why = status === -1 ? `timed out after ${TIMEOUT_MS / 1000} s` : last !== '' ? last : `exit status ${status}`;
  throw new CowvolError('EIO', `${cmd} ${args.join(' ')}: ${why}`, status);
}
