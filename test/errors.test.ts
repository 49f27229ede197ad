/**
 * One error vocabulary: every code has one errno and one gRPC status; OS
 * errors (Node's fs, the native addon, node tools) come in with their
 * meaning kept; the addon names the real errno.
 */
import t from 'tap';

import { CowvolError, ErrorCodes, Grpc, MEANING, errno, fromSystemError } from '../src/errors.js';
import { run } from '../src/host/run.js';
import { native } from '../src/native.js';

t.test('each code maps to one errno and one gRPC status', async (t) => {
  for (const code of Object.values(ErrorCodes)) {
    t.ok(MEANING[code].errno > 0, `${code}: an errno`);
    t.ok(Object.values(Grpc).includes(MEANING[code].grpc as never) && MEANING[code].grpc !== Grpc.OK, `${code}: a gRPC status`);
    t.equal(errno[code], MEANING[code].errno);
  }
  t.equal(MEANING.ENOENT.grpc, Grpc.NOT_FOUND);
  t.equal(MEANING.ECORRUPT.errno, 117, 'EUCLEAN, as ext4 reports corruption');
});

t.test('the native addon throws the errno by its real name', async (t) => {
  const codeOf = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      return String((err as { code?: unknown }).code);
    }
    return 'none';
  };
  t.equal(codeOf(() => native.loopBackingDevice('/nonexistent/loop')), 'ENOENT', 'open of a missing path: ENOENT (it used to read EIO)');
  t.equal(codeOf(() => native.punchHole(987654, 0, 4096)), 'EBADF', 'a closed fd: EBADF');
  t.equal(codeOf(() => native.punchHole(-1 as number, 0, 4096)), 'EINVAL', 'a bad argument: EINVAL');
});

t.test('OS errors keep their meaning; anything else is EIO', async (t) => {
  const enoent = fromSystemError(Object.assign(new Error('ENOENT: no such file or directory, open'), { code: 'ENOENT', path: '/x' }));
  t.equal(enoent.code, 'ENOENT');
  t.equal(enoent.message, '/x: no such file or directory, open');
  t.equal(fromSystemError(Object.assign(new Error('x'), { code: 'EDQUOT' })).code, 'ENOSPC');
  t.equal(fromSystemError(Object.assign(new Error('x'), { code: 'ETIMEDOUT' })).code, 'EIO');
  const ours = new CowvolError('EEXIST', 'taken');
  t.equal(fromSystemError(ours), ours, 'ours pass through');
  const tool = await run('false', []).catch((err: unknown) => err);
  t.ok(tool instanceof CowvolError && tool.code === 'EIO' && tool.toolExit === 1, 'a failed node tool is EIO with its exit status');
});
