/**
 * Every error cowvol reports on purpose, with a stable code, and the one
 * table that turns a code into what each frontend speaks: an errno for FUSE,
 * a gRPC status for CSI, a line for the CLI (its message, exit status 1).
 *
 * Codes are named after the errno a FUSE frontend returns for them. Errors
 * from the OS (Node's fs, child processes, the native addon, which all carry
 * the errno's name in `code`) come in through `fromSystemError`, so no
 * frontend needs a table of its own. Messages say what to fix, in one line.
 */

export const ErrorCodes = {
  /** A name, size, offset or option is malformed. */
  EINVAL: 'EINVAL',
  /** No volume, snapshot, group or pool by that name. */
  ENOENT: 'ENOENT',
  /** The name is taken. */
  EEXIST: 'EEXIST',
  /** The pool (or its disk) has no room for the chunk or page needed. */
  ENOSPC: 'ENOSPC',
  /** Write to a read-only snapshot. */
  EROFS: 'EROFS',
  /** Pool locked by another process, or volume busy (a loop device holds it). */
  EBUSY: 'EBUSY',
  /** A write or read past the end of a volume. */
  EFBIG: 'EFBIG',
  /** Not allowed in this state (shrink, a group member deleted alone, a missing capability). */
  EPERM: 'EPERM',
  /** The pool's metadata fails a checksum or an invariant. */
  ECORRUPT: 'ECORRUPT',
  /** The directory is not a cowvol pool. */
  ENOTPOOL: 'ENOTPOOL',
  /** An underlying I/O error, or a node tool (losetup, mkfs, mount) that failed. */
  EIO: 'EIO',
  /** A directory where a file was expected (FUSE). */
  EISDIR: 'EISDIR',
  /** A file where a directory was expected (FUSE). */
  ENOTDIR: 'ENOTDIR',
  /** No data (or hole) past the offset asked for (FUSE lseek). */
  ENXIO: 'ENXIO',
  /** The operation or mode is not supported (FUSE fallocate modes). */
  EOPNOTSUPP: 'EOPNOTSUPP',
  /** The CLI and the daemon speak different versions of the admin protocol. */
  EPROTO: 'EPROTO',
  // What a filesystem volume (src/cowfs) answers, as ext4 would.
  /** Permission denied by mode bits. */
  EACCES: 'EACCES',
  /** A directory that still has entries. */
  ENOTEMPTY: 'ENOTEMPTY',
  /** A name over 255 bytes. */
  ENAMETOOLONG: 'ENAMETOOLONG',
  /** A rename or link across volumes. */
  EXDEV: 'EXDEV',
  /** Too many hard links to one inode. */
  EMLINK: 'EMLINK',
  /** No such extended attribute. */
  ENODATA: 'ENODATA',
  /** A buffer too small for an extended attribute's value or list. */
  ERANGE: 'ERANGE',
  /** An extended attribute value over what the kernel allows. */
  E2BIG: 'E2BIG',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class CowvolError extends Error {
  readonly code: ErrorCode;
  /** For a node tool that failed (src/host/run.ts): its exit status, which some callers read (blkid's 2: nothing found). */
  readonly toolExit: number | null;

  constructor(code: ErrorCode, message: string, toolExit: number | null = null) {
    super(message);
    this.name = 'CowvolError';
    this.code = code;
    this.toolExit = toolExit;
  }
}

export function fail(code: ErrorCode, message: string): never {
  throw new CowvolError(code, message);
}

/** gRPC status numbers (stable across every gRPC implementation), so this file imports no gRPC. */
export const Grpc = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
} as const;

interface Meaning {
  /** Linux errno number for the FUSE frontends. */
  errno: number;
  /** gRPC status code for CSI. */
  grpc: number;
}

/** The one mapping: a code means one errno and one gRPC status everywhere. */
export const MEANING: Record<ErrorCode, Meaning> = {
  EINVAL: { errno: 22, grpc: Grpc.INVALID_ARGUMENT },
  ENOENT: { errno: 2, grpc: Grpc.NOT_FOUND },
  EEXIST: { errno: 17, grpc: Grpc.ALREADY_EXISTS },
  ENOSPC: { errno: 28, grpc: Grpc.RESOURCE_EXHAUSTED },
  EROFS: { errno: 30, grpc: Grpc.FAILED_PRECONDITION },
  EBUSY: { errno: 16, grpc: Grpc.FAILED_PRECONDITION },
  EFBIG: { errno: 27, grpc: Grpc.OUT_OF_RANGE },
  EPERM: { errno: 1, grpc: Grpc.FAILED_PRECONDITION },
  // EUCLEAN, as ext4 and btrfs report metadata corruption.
  ECORRUPT: { errno: 117, grpc: Grpc.INTERNAL },
  // ENODEV.
  ENOTPOOL: { errno: 19, grpc: Grpc.INTERNAL },
  EIO: { errno: 5, grpc: Grpc.INTERNAL },
  EISDIR: { errno: 21, grpc: Grpc.INVALID_ARGUMENT },
  ENOTDIR: { errno: 20, grpc: Grpc.INVALID_ARGUMENT },
  ENXIO: { errno: 6, grpc: Grpc.OUT_OF_RANGE },
  EOPNOTSUPP: { errno: 95, grpc: Grpc.UNIMPLEMENTED },
  EPROTO: { errno: 71, grpc: Grpc.FAILED_PRECONDITION },
  EACCES: { errno: 13, grpc: Grpc.FAILED_PRECONDITION },
  ENOTEMPTY: { errno: 39, grpc: Grpc.FAILED_PRECONDITION },
  ENAMETOOLONG: { errno: 36, grpc: Grpc.INVALID_ARGUMENT },
  EXDEV: { errno: 18, grpc: Grpc.INVALID_ARGUMENT },
  EMLINK: { errno: 31, grpc: Grpc.FAILED_PRECONDITION },
  ENODATA: { errno: 61, grpc: Grpc.NOT_FOUND },
  ERANGE: { errno: 34, grpc: Grpc.OUT_OF_RANGE },
  E2BIG: { errno: 7, grpc: Grpc.INVALID_ARGUMENT },
};

/** Errno numbers by code, for the FUSE frontends. */
export const errno = Object.fromEntries(Object.entries(MEANING).map(([k, m]) => [k, m.errno])) as Record<ErrorCode, number>;

/** OS error names that keep their meaning as they are; anything else becomes EIO. */
const SYSTEM: Record<string, ErrorCode> = {
  ENOENT: 'ENOENT',
  EEXIST: 'EEXIST',
  ENOSPC: 'ENOSPC',
  EDQUOT: 'ENOSPC',
  EFBIG: 'EFBIG',
  EROFS: 'EROFS',
  EBUSY: 'EBUSY',
  EPERM: 'EPERM',
  EACCES: 'EPERM',
  EINVAL: 'EINVAL',
  EISDIR: 'EISDIR',
  ENOTDIR: 'ENOTDIR',
  EOPNOTSUPP: 'EOPNOTSUPP',
  EUCLEAN: 'ECORRUPT',
};

function isCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && value in MEANING;
}

/**
 * Any thrown value as a CowvolError: ours pass through; an OS error (Node's
 * fs, the native addon: `code` is the errno's name) keeps its meaning where
 * it has one in the vocabulary; anything else is EIO with its message.
 */
export function fromSystemError(err: unknown): CowvolError {
  if (err instanceof CowvolError) return err;
  const e = err as { code?: unknown; message?: unknown; path?: unknown } | null;
  const name = typeof e?.code === 'string' ? e.code : '';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const where = typeof e?.path === 'string' ? `${e.path}: ` : '';
  const code = SYSTEM[name] ?? (isCode(name) ? name : 'EIO');
  return new CowvolError(code, `${where}${message.replace(/^[A-Z]+: /, '')}`);
}

/** Whether a thrown value is an OS error (it has an errno name), as opposed to a bug. */
export function isSystemError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code);
}

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
