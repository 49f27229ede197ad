/**
 * The test double: a Disk held in memory, where every write is durable at
 * once. Fast enough for the model-based tests to run thousands of sequences.
 */
import type { Disk } from './disk.js';

export class MemoryDisk implements Disk {
  private bytes: Buffer;
  private length: number;

  constructor(initial?: Buffer) {
    this.bytes = initial ? Buffer.from(initial) : Buffer.alloc(0);
    this.length = this.bytes.length;
  }

  read(buf: Buffer, position: number): void {
    const end = Math.min(this.length, position + buf.length);
    const n = Math.max(0, end - position);
    if (n > 0) this.bytes.copy(buf, 0, position, end);
    if (n < buf.length) buf.fill(0, n);
  }

  write(buf: Buffer, position: number): void {
    this.ensure(position + buf.length);
    buf.copy(this.bytes, position);
  }

  punch(position: number, length: number): void {
    const end = Math.min(this.length, position + length);
    if (end > position) this.bytes.fill(0, position, end);
  }

  sync(): void {}

  size(): number {
    return this.length;
  }

  close(): void {}

  /** A copy of the disk's content, to reopen a pool from. */
  image(): Buffer {
    return Buffer.from(this.bytes.subarray(0, this.length));
  }

  private ensure(end: number): void {
    if (end > this.bytes.length) {
      const grown = Buffer.alloc(Math.max(end, this.bytes.length * 2, 65536));
      this.bytes.copy(grown, 0, 0, this.length);
      this.bytes = grown;
    }
    if (end > this.length) this.length = end;
  }
}
