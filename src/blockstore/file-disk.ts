/**
 * A Disk on a real file (or block device): positional reads and writes,
 * fdatasync, and hole punching through the native addon.
 */
import fs from 'node:fs';

import type { Disk } from './disk.js';
import { native } from '../native.js';

export class FileDisk implements Disk {
  readonly path: string;
  private fd: number;

  constructor(filePath: string, options: { create?: boolean } = {}) {
    this.path = filePath;
    this.fd = fs.openSync(filePath, options.create ? 'w+' : 'r+', 0o600);
  }

  read(buf: Buffer, position: number): void {
    let done = 0;
    while (done < buf.length) {
      const n = fs.readSync(this.fd, buf, done, buf.length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    if (done < buf.length) buf.fill(0, done);
  }

  write(buf: Buffer, position: number): void {
    let done = 0;
    while (done < buf.length) {
      done += fs.writeSync(this.fd, buf, done, buf.length - done, position + done);
    }
  }

  punch(position: number, length: number): void {
    native.punchHole(this.fd, position, length);
  }

  /** On libuv's thread pool: freeing the extents of a few hundred megabytes takes the filesystem half a second. */
  punchAsync(position: number, length: number): Promise<void> {
    return native.punchHoleAsync(this.fd, position, length);
  }

  sync(): void {
    fs.fdatasyncSync(this.fd);
  }

  /** fdatasync on libuv's thread pool: the event loop keeps running meanwhile. */
  writeBack(): Promise<void> {
    const fd = this.fd;
    return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
  }

  size(): number {
    return fs.fstatSync(this.fd).size;
  }

  close(): void {
    // Never under a punch still running: the number could be reused by a file it must not touch.
    if (this.fd >= 0) {
      native.punchWait();
      fs.closeSync(this.fd);
    }
    this.fd = -1;
  }
}
