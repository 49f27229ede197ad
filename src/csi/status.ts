/**
 * gRPC status codes for CSI answers. Handlers throw CsiError for what only
 * CSI says (a missing field, ABORTED for an overlapping call); everything
 * else is a CowvolError, whose code maps to one status through the table in
 * src/errors.ts, so the CLI and CSI answer a refused request the same way.
 */
import { status } from '@grpc/grpc-js';

import { CowvolError, MEANING, fromSystemError, isSystemError } from '../errors.js';

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

export function toCsiError(err: unknown): CsiError {
  if (err instanceof CsiError) return err;
  if (err instanceof CowvolError || isSystemError(err)) {
    const e = fromSystemError(err);
    return new CsiError(MEANING[e.code].grpc as status, e.message);
  }
  return new CsiError(status.INTERNAL, err instanceof Error ? err.message : String(err));
}
