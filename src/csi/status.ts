/**
 * gRPC status codes for CSI answers. Handlers throw CsiError with the
 * spec's code; pool errors (CowvolError) are translated here in one place so
 * every RPC maps ENOENT, EEXIST, ENOSPC... the same way.
 */
import { status } from '@grpc/grpc-js';

import { CowvolError, type ErrorCode } from '../errors.js';
import { HostError } from './host/run.js';

export { status };

export class CsiError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'CsiError';
  }
}

export function csiFail(code: status, message: string): never {
  throw new CsiError(code, message);
}

const FROM_POOL: Record<ErrorCode, status> = {
  EINVAL: status.INVALID_ARGUMENT,
  ENOENT: status.NOT_FOUND,
  EEXIST: status.ALREADY_EXISTS,
  ENOSPC: status.RESOURCE_EXHAUSTED,
  EFBIG: status.OUT_OF_RANGE,
  EROFS: status.FAILED_PRECONDITION,
  EBUSY: status.FAILED_PRECONDITION,
  EPERM: status.FAILED_PRECONDITION,
  ECORRUPT: status.INTERNAL,
  ENOTPOOL: status.INTERNAL,
  EIO: status.INTERNAL,
};

export function toCsiError(err: unknown): CsiError {
  if (err instanceof CsiError) return err;
  if (err instanceof CowvolError) return new CsiError(FROM_POOL[err.code], err.message);
  if (err instanceof HostError && err.reason === 'EPERM') return new CsiError(status.FAILED_PRECONDITION, err.message);
  return new CsiError(status.INTERNAL, err instanceof Error ? err.message : String(err));
}
