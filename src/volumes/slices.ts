/**
 * Long operations (import, export, check) run in slices: after each slice
 * they give the event loop back, so a daemon keeps answering FUSE requests
 * (which need the same JavaScript thread) while a multi-GiB import runs.
 * A slice is a bounded amount of work (SLICE_BYTES of data, or one volume
 * for check), never a span of time.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';

/** Data moved per slice: large enough that yielding costs nothing measurable, small enough to be a few ms. */
export const SLICE_BYTES = 1 << 20;

/** Reports how far a long operation is: called once per slice. */
export type ProgressFn = (done: number, total: number) => void;

/** Lets every I/O callback queued meanwhile run, then goes on. */
export async function yieldSlice(): Promise<void> {
  await nextTurn();
}
