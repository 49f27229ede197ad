/**
 * Checks on paths a CSI caller hands us. kubelet's staging and target paths
 * must lie under the kubelet directory: absolute, already normal (no "..",
 * ".", "//"), and with no symlink on the way that leads out of it.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { fail } from '../errors.js';
import { CsiError, status } from './status.js';

export class PathPolicy {
  readonly root: string;
  private readonly realRoot: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    if (!fs.existsSync(this.root)) fail('EINVAL', `kubelet directory ${this.root} does not exist: pass --kubelet-dir`);
    this.realRoot = fs.realpathSync(this.root);
  }

  /**
   * Resolves to the path if acceptable; rejects with INVALID_ARGUMENT saying
   * why not. Asynchronous: the path may be one of the daemon's own mounts
   * (a cowfs stage), which only this process's event loop can answer.
   */
  async check(p: string, field: string): Promise<string> {
    if (p === '') throw new CsiError(status.INVALID_ARGUMENT, `${field} is required`);
    if (p.includes('\0')) throw new CsiError(status.INVALID_ARGUMENT, `${field} contains a NUL byte`);
    if (!path.isAbsolute(p)) throw new CsiError(status.INVALID_ARGUMENT, `${field} '${p}' is not absolute`);
    const trimmed = p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
    if (path.normalize(trimmed) !== trimmed) throw new CsiError(status.INVALID_ARGUMENT, `${field} '${p}' is not a normal path (no '..', '.' or '//')`);
    if (!trimmed.startsWith(`${this.root}/`)) throw new CsiError(status.INVALID_ARGUMENT, `${field} '${p}' is outside the kubelet directory ${this.root}`);
    // Resolve the deepest part that exists; a symlink may not lead out of the root.
    let existing = trimmed;
    for (let depth = 0; depth < 4096 && !(await present(existing)) && existing !== this.root; depth++) existing = path.dirname(existing);
    let real: string;
    try {
      real = await fsp.realpath(existing);
    } catch {
      // A dangling symlink: refuse rather than guess where it points.
      throw new CsiError(status.INVALID_ARGUMENT, `${field} '${p}' passes through a broken symlink`);
    }
    if (real !== this.realRoot && !real.startsWith(`${this.realRoot}/`)) {
      throw new CsiError(status.INVALID_ARGUMENT, `${field} '${p}' leads outside the kubelet directory through a symlink`);
    }
    return trimmed;
  }
}

/** Exists as a name, even as a dangling symlink (which existsSync would call absent). */
async function present(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch {
    return false;
  }
}
