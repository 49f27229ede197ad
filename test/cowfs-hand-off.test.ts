/**
 * A request for JavaScript does not hold the FUSE thread that read it
 * (native/src/fs_ops.c, `hand_off`): the thread goes back to reading, so
 * while JavaScript has not answered, the addon still serves what it serves
 * natively, on this mount and on the others that share the threads.
 *
 * The mount runs on one FUSE thread (the first cowfs mount of this process
 * sets the number), and the test's own event loop answers its JavaScript
 * requests: a synchronous child process keeps that loop, and so every
 * answer, waiting for as long as the child runs.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';

import t from 'tap';

import { fuseConnectionOf, fuseControlDir } from '../src/host/fusectl.js';
import { allReleased, serveInProcess } from './helpers/cowfs.js';

const CHUNK = 64 * 1024;

// The child opens the file (an open goes to JavaScript) and says so, then waits for a line. On it, a thread of
// it lists the directory (a READDIR, which only JavaScript answers) and blocks; once the connection counts that
// request as waiting, another thread reads a chunk the addon serves. What came of the read goes into a FIFO the
// test reads synchronously, holding its event loop (and so every JavaScript answer) until then. The join's
// bound only ends a failing run: without the hand-off, the read waits for the one FUSE thread forever.
const CHILD = `
import mmap, os, sys, threading, time
d, f, conn, out = sys.argv[1:5]
fd = os.open(f, os.O_RDONLY | os.O_DIRECT)
print("opened", flush=True)
sys.stdin.readline()
threading.Thread(target=lambda: os.listdir(d), daemon=True).start()
waiting = os.path.join(conn, "waiting")
result = "the listing never reached the mount"
for _ in range(200000):
    with open(waiting) as w:
        if int(w.read()) >= 1:
            break
    time.sleep(0.0005)
else:
    fd = -1
def read():
    global result
    buf = mmap.mmap(-1, ${CHUNK})
    n = os.preadv(fd, [buf], 0)
    result = "read %d %d" % (n, buf[0])
if fd >= 0:
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60)
    if reader.is_alive():
        result = "the read waited for JavaScript"
with open(out, "w") as o:
    o.write(result)
os._exit(0)
`;

t.test('a read the addon serves is answered while a request waits for JavaScript on the only FUSE thread', async (t) => {
  const s = await serveInProcess(t, 'hand-off', { threads: 1 });
  const file = path.join(s.dir, 'f');
  await fs.promises.writeFile(file, Buffer.alloc(2 * CHUNK, 7));
  // Once JavaScript has read a whole chunk, the addon serves it (file-chunks.ts).
  const fh = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
  await fh.read(Buffer.alloc(CHUNK), 0, CHUNK, 0);
  await fh.close();
  // Its release comes in the background: counted as waiting, it would stand in for the listing below.
  await allReleased(s.mount);
  const before = s.mount.stats();
  const fifo = path.join(path.dirname(s.dir), 'result');
  spawnSync('mkfifo', [fifo]);
  const child = spawn('python3', ['-c', CHILD, s.dir, file, fuseControlDir(fuseConnectionOf(s.dir)), fifo], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  t.equal((await lines.next()).value, 'opened');
  child.stdin.write('go\n');
  // Synchronous: until the child writes, nothing on this event loop runs, so no JavaScript request is answered.
  const result = fs.readFileSync(fifo, 'utf8');
  t.equal(result, `read ${CHUNK} 7`, 'the read was answered while JavaScript could answer nothing');
  t.equal(s.mount.stats().fastReads, before.fastReads + 1, 'by the addon');
  // The listing's request, its process gone, is answered once the loop runs again; the mount serves on.
  t.same(await fs.promises.readdir(s.dir), ['f'], 'and the mount lists the directory afterwards');
});
