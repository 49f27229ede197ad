/**
 * Processes a test talks to one line at a time over stdin and stdout, so
 * it can act between their steps without waiting on a clock: `Talker`
 * runs a Python script, and `HOLDER` is one that keeps files open in a
 * mount across whatever the test does to the daemon serving it.
 */
import { type ChildProcess, spawn } from 'node:child_process';

import type { Test } from 'tap';

/**
 * A process that holds `log` (appended to) and `gone` (unlinked at once)
 * open and answers one line per command on stdin: `write` appends record N
 * to both and fsyncs them; `dirty` does the same without the fsyncs, so the
 * daemon holds changes no commit has; `check` reads both back whole and
 * verifies every record. Any OSError is printed and ends it with status 1.
 */
export const HOLDER = `
import os, sys
live = sys.argv[1]
log = os.open(os.path.join(live, "log"), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
gone = os.open(os.path.join(live, "gone"), os.O_RDWR | os.O_CREAT, 0o644)
os.unlink(os.path.join(live, "gone"))
n = 0
def record(i):
    return (b"record %06d " % i) + bytes([65 + i % 26]) * 4000 + b"\\n"
try:
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() in ("write", "dirty"):
            os.write(log, record(n))
            os.pwrite(gone, record(n), n * len(record(0)))
            if line.strip() == "write":
                os.fsync(log)
                os.fdatasync(gone)
            n += 1
        want = b"".join(record(i) for i in range(n))
        for fd in (log, gone):
            got = os.pread(fd, len(want) + 1, 0)
            if got != want:
                print("mismatch", fd, len(got), len(want), flush=True)
                sys.exit(1)
        print("ok", n, flush=True)
except OSError as e:
    print("error", e, flush=True)
    sys.exit(1)
`;

/** A child speaking one line per request. */
export class Talker {
  readonly child: ChildProcess;
  private out = '';
  private waiting: (() => void) | null = null;
  readonly exited: Promise<number>;

  constructor(t: Test, script: string, arg: string) {
    this.child = spawn('python3', ['-c', script, arg], { stdio: ['pipe', 'pipe', 'pipe'] });
    // A test that failed half-way must not leave it waiting on its stdin (nor holding the mount).
    t.teardown(() => void this.child.kill('SIGKILL'));
    this.child.stdout?.on('data', (b: Buffer) => this.heard(b.toString()));
    this.child.stderr?.on('data', (b: Buffer) => this.heard(b.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code ?? -1)));
    void this.exited.then(() => this.waiting?.());
  }

  private heard(text: string): void {
    this.out += text;
    this.waiting?.();
  }

  /** The next line it says (or everything it said, once it exited). */
  async line(): Promise<string> {
    for (;;) {
      const i = this.out.indexOf('\n');
      if (i >= 0) {
        const l = this.out.slice(0, i);
        this.out = this.out.slice(i + 1);
        return l;
      }
      if (this.child.exitCode !== null) return `exited ${this.child.exitCode}: ${this.out}`;
      await new Promise<void>((resolve) => (this.waiting = resolve));
      this.waiting = null;
    }
  }

  async ask(command: string): Promise<string> {
    this.child.stdin?.write(`${command}\n`);
    return this.line();
  }

  async end(): Promise<{ code: number; said: string }> {
    this.child.stdin?.end();
    const said = await this.line();
    return { code: await this.exited, said };
  }
}

