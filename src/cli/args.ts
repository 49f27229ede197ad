/**
 * A small argv parser: positionals plus `--flag value` / `--flag=value` /
 * boolean `--flag`. Each command declares its flags; anything else is an
 * error that names the flag, so typos never pass silently.
 */
import { fail } from '../errors.js';

export interface Parsed {
  positional: string[];
  flags: Map<string, string | true>;
}

export function parseArgs(argv: string[], valueFlags: ReadonlySet<string>, boolFlags: ReadonlySet<string>): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--') || arg === '--') {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    if (boolFlags.has(name)) {
      if (eq >= 0) fail('EINVAL', `--${name} takes no value`);
      flags.set(name, true);
    } else if (valueFlags.has(name)) {
      const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined || value === '') fail('EINVAL', `--${name} needs a value`);
      flags.set(name, value);
    } else {
      fail('EINVAL', `unknown option --${name}: see 'cowvol help'`);
    }
  }
  return { positional, flags };
}
