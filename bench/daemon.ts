/**
 * A `cowvol serve` for a bench run: started from a given cowvol build (so a
 * bench can compare builds), resolved once it says it is serving.
 */
import { type ChildProcess, spawn } from 'node:child_process';

export async function startDaemon(bin: string, pool: string, mount: string, extra: string[] = []): Promise<ChildProcess> {
  const d = spawn(process.execPath, [bin, 'serve', '--pool', pool, '--mount', mount, '--handover-grace', '0', ...extra], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve, reject) => {
    d.stdout?.on('data', (b: Buffer) => (b.toString().includes('serving') ? resolve() : undefined));
    d.once('exit', () => reject(new Error('daemon exited')));
  });
  return d;
}
