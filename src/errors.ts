/**
 * Every error cowvol reports on purpose, with a stable code.
 *
 * Codes are named after the errno a FUSE frontend returns for them, so the
 * frontends and the CSI facade map them mechanically (see `errno` below and,
 * later, the CSI status table). Messages say what to fix, in one line.
 */

export const ErrorCodes = {
  /** A name, size, offset or option is malformed. */
  EINVAL: 'EINVAL',
  /** No volume, snapshot or pool by that name. */
  ENOENT: 'ENOENT',
  /** The name is taken. */
  EEXIST: 'EEXIST',
  /** The pool (or its disk) has no room for the chunk or page needed. */
  ENOSPC: 'ENOSPC',
  /** Write to a read-only snapshot. */
  EROFS: 'EROFS',
  /** Pool locked by another process, or volume busy. */
  EBUSY: 'EBUSY',
  /** A write or read past the end of a volume. */
  EFBIG: 'EFBIG',
  /** The operation is not allowed in this state (shrink, delete with dependants). */
  EPERM: 'EPERM',
  /** The pool's metadata fails a checksum or an invariant. */
  ECORRUPT: 'ECORRUPT',
  /** The directory is not a cowvol pool. */
  ENOTPOOL: 'ENOTPOOL',
  /** An underlying I/O error. */
  EIO: 'EIO',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class CowvolError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'CowvolError';
    this.code = code;
  }
}

export function fail(code: ErrorCode, message: string): never {
  throw new CowvolError(code, message);
}

/** Linux errno numbers for the FUSE frontends. */
export const errno: Record<ErrorCode, number> = {
  EINVAL: 22,
  ENOENT: 2,
  EEXIST: 17,
  ENOSPC: 28,
  EROFS: 30,
  EBUSY: 16,
  EFBIG: 27,
  EPERM: 1,
  ECORRUPT: 117, // EUCLEAN, as ext4 and btrfs report metadata corruption
  ENOTPOOL: 19, // ENODEV
  EIO: 5,
};

/**
 * Invariant assertion. A failure means a bug in cowvol, never bad input:
 * bad input is rejected with `fail` before any state changes.
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`cowvol invariant violated: ${message}`);
}

/** True for errors the OS raises when a disk or filesystem is full. */
export function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG';
}
