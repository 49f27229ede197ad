/**
 * A one-line progress bar on stderr, shown only when stderr is a terminal
 * (so scripts and logs get clean output). Redraws at most ten times a second.
 */
export class Progress {
  private readonly label: string;
  private readonly enabled: boolean;
  private last = 0;

  constructor(label: string, enabled = process.stderr.isTTY === true) {
    this.label = label;
    this.enabled = enabled;
  }

  update(done: number, total: number): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.last < 100 && done < total) return;
    this.last = now;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const width = 30;
    const filled = Math.round(frac * width);
    process.stderr.write(`\r${this.label} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%`);
  }

  done(): void {
    if (this.enabled) process.stderr.write('\r\x1b[K');
  }
}
