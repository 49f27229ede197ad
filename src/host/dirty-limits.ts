/**
 * The page-cache limits of a FUSE mount (/sys/class/bdi/MAJ:MIN, named
 * after the mount's device number).
 *
 * The kernel gives every FUSE mount a strict limit of 1% of the dirty
 * memory, because a FUSE server may be an unprivileged process nobody
 * trusts to write back. A cowfs mount is served by the root daemon that
 * also serves the pool's disk, so it gets what a disk gets: the global
 * vm.dirty_* limits, which are the operator's configuration. Under the
 * strict limit, buffered writes wait for writeback after a few megabytes
 * and the writeback cache buys little.
 *
 * Caveat: /sys is read-only in some containers; then the mount keeps the
 * kernel's limits and works, slower (the caller logs why).
 */
import fs from 'node:fs';

const BDI = '/sys/class/bdi';

/** Lifts the FUSE-only limits of the mount whose device is `devNo` ("major:minor"); null, or why it could not. */
export function relaxDirtyLimits(devNo: string): string | null {
  const dir = `${BDI}/${devNo}`;
  try {
    fs.writeFileSync(`${dir}/max_ratio`, '100');
    fs.writeFileSync(`${dir}/strict_limit`, '0');
    return null;
  } catch (err) {
    return `${dir}: ${(err as Error).message}`;
  }
}

/** The limits as the kernel holds them now: [max_ratio, strict_limit]. */
export function dirtyLimits(devNo: string): [number, number] {
  const read = (name: string): number => Number(fs.readFileSync(`${BDI}/${devNo}/${name}`, 'utf8').trim());
  return [read('max_ratio'), read('strict_limit')];
}
