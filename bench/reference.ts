/**
 * The C FUSE references of bench/reference/, built with the machine's
 * libfuse3 and mounted for one bench run. They are the FUSE ceiling each
 * bench holds cowvol to: what any userspace daemon behind /dev/fuse pays
 * before it does anything of its own.
 *
 *   passthrough     one file, /data, over a plain file (block files' peer)
 *   passthrough-fs  a whole directory tree over a host directory (cowfs's peer)
 *
 * Caveat: the caller unmounts the mount point before it kills the process
 * (a killed FUSE server leaves a dead mount behind until then).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import path from 'node:path';

import { isMountPoint } from '../src/host/mounts.js';
import { repo } from './args.js';

export type Reference = 'passthrough' | 'passthrough-fs';

function run(cmd: string, argv: string[]): string {
  const r = spawnSync(cmd, argv, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Builds `kind` into `workDir`, mounts it at `at` over `under` and resolves once the mount is there. */
export async function startReference(kind: Reference, workDir: string, at: string, under: string): Promise<ChildProcess> {
  const exe = path.join(workDir, kind);
  const flags = run('pkg-config', ['--cflags', '--libs', 'fuse3']).trim().split(/\s+/);
  run('gcc', ['-O2', '-o', exe, path.join(repo, 'bench', 'reference', `${kind}.c`), ...flags]);
  const child = spawn(exe, [at, under], { stdio: 'ignore' });
  // A bench may poll: it measures, it asserts nothing. Bounded at 10 s.
  for (let i = 0; i < 1000 && !isMountPoint(at); i++) {
    if (child.exitCode !== null) throw new Error(`${kind} exited with ${child.exitCode} before mounting ${at}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  if (!isMountPoint(at)) throw new Error(`${kind} never mounted ${at}`);
  return child;
}
