/**
 * Runs a seeded check over many seeds, or over the one in $COWVOL_SEED, and
 * reports each failing seed with the command that replays it.
 */
import type { Test } from 'tap';

export interface SeedRun {
  /** First seed and how many (unless $COWVOL_SEED picks one). */
  first: number;
  count: number;
  /** Compiled test file, for the replay line. */
  file: string;
  /** Returns null when the seed passes, else what went wrong. */
  run(seed: number): string | null | Promise<string | null>;
}

const MAX_FAILURES = 5;

function seedsToRun(first: number, count: number): number[] {
  const only = process.env.COWVOL_SEED;
  return only === undefined ? Array.from({ length: count }, (_, i) => first + i) : [Number(only)];
}

export async function runSeeds(t: Test, s: SeedRun): Promise<void> {
  const seeds = seedsToRun(s.first, s.count);
  let failures = 0;
  for (const seed of seeds) {
    const wrong = await s.run(seed);
    if (wrong === null) continue;
    failures++;
    t.fail(`seed ${seed}: ${wrong}\n  replay: COWVOL_SEED=${seed} npx tap ${s.file}`);
    if (failures >= MAX_FAILURES) break;
  }
  t.equal(failures, 0, `${seeds.length} seeds`);
}
