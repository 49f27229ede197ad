/**
 * src/host/run.ts: node tools started by the addon's posix_spawn. What the
 * callers rely on: stdout on success; on failure one line with the tool's
 * last stderr line and its exit status kept; a tool that is not there;
 * default signal dispositions in the child (Node ignores SIGPIPE, and an
 * ignored signal would stay ignored in the tool); many at once.
 */
import t from 'tap';

import { CowvolError } from '../src/errors.js';
import { run } from '../src/host/run.js';

async function failure(cmd: string, args: string[]): Promise<CowvolError> {
  try {
    await run(cmd, args);
  } catch (err) {
    if (err instanceof CowvolError) return err;
    throw err;
  }
  throw new Error(`${cmd} succeeded`);
}

t.test('stdout, exit status and the last line of stderr', async (t) => {
  t.equal(await run('printf', ['%s\\n%s', 'a', 'b']), 'a\nb');
  const e = await failure('sh', ['-c', 'echo first >&2; echo last >&2; exit 3']);
  t.equal(e.code, 'EIO');
  t.equal(e.toolExit, 3);
  t.equal(e.message, 'sh -c echo first >&2; echo last >&2; exit 3: last');
  const quiet = await failure('sh', ['-c', 'exit 2']);
  t.match(quiet.message, /: exit status 2$/, 'no stderr: the status says it');
});

t.test('a tool that is not there, and one a signal ends', async (t) => {
  const e = await failure('no-such-tool-here', ['x']);
  t.equal(e.message, 'no-such-tool-here x: could not start it (ENOENT)');
  t.equal(e.toolExit, null);
  t.equal((await failure('sh', ['-c', 'kill -9 $$'])).toolExit, 128 + 9);
});

t.test('the tool gets default signal dispositions and /dev/null for stdin', async (t) => {
  // With SIGPIPE ignored, as in Node, `yes` would see EPIPE and exit 1 instead of dying of SIGPIPE (141).
  t.equal((await run('bash', ['-c', 'yes | head -n 1 > /dev/null; echo "${PIPESTATUS[0]}"'])).trim(), '141');
  t.equal(await run('cat', []), '', 'stdin is empty');
  t.equal((await run('sh', ['-c', 'grep SigBlk /proc/self/status'])).trim(), 'SigBlk:\t0000000000000000', 'no signal blocked');
});

t.test('many at once, output kept apart', async (t) => {
  const outs = await Promise.all(Array.from({ length: 40 }, (_, i) => run('sh', ['-c', `echo ${i}`])));
  t.same(outs.map((o) => Number(o.trim())), Array.from({ length: 40 }, (_, i) => i));
});
