/**
 * Structured logs: one JSON object per line on stderr (pino), so journald
 * and log shippers can parse them. Levels: fatal error warn info debug trace.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

export function isLogLevel(level: string): boolean {
  return LEVELS.has(level);
}

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'cowvol' } }, pino.destination(2));
}
