/**
 * A CSI client over a unix socket, built from the same csi.proto: what
 * kubelet and the sidecars send, as plain objects. Used by the tests and
 * the CSI benchmark.
 */
import * as grpc from '@grpc/grpc-js';

import { loadCsi } from './proto.js';

export type Service = 'Identity' | 'Controller' | 'GroupController' | 'Node';
type Unary = (req: object, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

export class CsiClient {
  private readonly clients: Record<Service, grpc.Client>;

  constructor(socket: string) {
    const services = loadCsi();
    const address = `unix:${socket}`;
    const credentials = grpc.credentials.createInsecure();
    this.clients = {
      Identity: new services.Identity(address, credentials),
      Controller: new services.Controller(address, credentials),
      GroupController: new services.GroupController(address, credentials),
      Node: new services.Node(address, credentials),
    };
  }

  // The response shape is the test's to state; the wire gives plain objects.
  call<T = Record<string, unknown>>(service: Service, method: string, req: object = {}): Promise<T> {
    const client = this.clients[service] as unknown as Record<string, Unary>;
    const fn = client[method];
    if (fn === undefined) throw new Error(`no method ${service}.${method}`);
    return new Promise<T>((resolve, reject) => {
      fn.call(client, req, (err, res) => (err ? reject(err) : resolve(res as T)));
    });
  }

  /** The gRPC status code the call ends with (0 for OK), and its message. */
  async code(service: Service, method: string, req: object = {}): Promise<{ code: number; message: string }> {
    try {
      await this.call(service, method, req);
      return { code: grpc.status.OK, message: '' };
    } catch (err) {
      const e = err as grpc.ServiceError;
      return { code: e.code, message: e.details };
    }
  }

  close(): void {
    for (const c of Object.values(this.clients)) c.close();
  }
}

export { grpc };
