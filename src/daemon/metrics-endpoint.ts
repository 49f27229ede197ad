/**
 * The HTTP endpoint Prometheus and probes talk to: GET /metrics (the text
 * exposition format) and GET /healthz (200 "ok", or 503 with the reason).
 * Anything else is 404, any other method 405.
 *
 * It listens on 127.0.0.1:9464 unless told otherwise: the numbers say which
 * volumes a node holds and what they do, so an address other hosts can
 * reach is something the operator writes down (--metrics-address), and
 * `none` turns the endpoint and the per-volume counting off.
 *
 * Caveat: a port already taken is logged and the daemon serves on without
 * metrics: I/O matters more than being watched. `cowvol pool show` then
 * reports no metrics address.
 */
import http from 'node:http';
import net from 'node:net';

import { fail } from '../errors.js';
import type { Logger } from '../log.js';

export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9464';

export interface MetricsAddress {
  host: string;
  port: number;
}

/** "HOST:PORT" with an IPv4 address, "[IPv6]" or "localhost"; "none" is null. */
export function parseMetricsAddress(text: string): MetricsAddress | null {
  if (text === 'none') return null;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+|localhost)):(\d{1,5})$/.exec(text);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || host === undefined || (host !== 'localhost' && net.isIP(host) === 0) || port > 65535) {
    fail('EINVAL', `--metrics-address '${text}' must be IP:PORT (127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464) or none`);
  }
  return { host, port };
}

export interface MetricsSource {
  text(): Promise<string>;
  readonly contentType: string;
}

export interface MetricsEndpoint {
  /** Where it listens, as HOST:PORT (the port the kernel picked, when 0 was asked for). */
  address: string;
  close(): Promise<void>;
}

/** `health` answers null when the daemon is well, or why not. */
export async function startMetricsEndpoint(at: MetricsAddress, metrics: MetricsSource, health: () => Promise<string | null>, log: Logger): Promise<MetricsEndpoint> {
  const server = http.createServer((req, res) => {
    answer(req.method ?? '', (req.url ?? '').split('?')[0] ?? '', metrics, health).then(
      ({ code, type, body }) => res.writeHead(code, { 'Content-Type': type }).end(body),
      (err: unknown) => {
        log.error({ err }, 'metrics request failed');
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end('internal error\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => resolve());
  });
  const bound = server.address() as net.AddressInfo;
  const address = bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  log.info({ metrics: address }, 'metrics endpoint listening');
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function answer(method: string, url: string, metrics: MetricsSource, health: () => Promise<string | null>): Promise<{ code: number; type: string; body: string }> {
  if (url !== '/metrics' && url !== '/healthz') return { code: 404, type: 'text/plain', body: 'not found: try /metrics or /healthz\n' };
  if (method !== 'GET' && method !== 'HEAD') return { code: 405, type: 'text/plain', body: 'only GET\n' };
  if (url === '/metrics') return { code: 200, type: metrics.contentType, body: await metrics.text() };
  const problem = await health();
  return problem === null ? { code: 200, type: 'text/plain', body: 'ok\n' } : { code: 503, type: 'text/plain', body: `${problem}\n` };
}
