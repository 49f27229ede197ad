/**
 * Telling a service manager (systemd, `Type=notify`) how the daemon is: the
 * sd_notify datagram protocol on $NOTIFY_SOCKET, sent by the addon (Node's
 * dgram module has no unix datagrams). READY=1 once every mount is served
 * and every socket answers, STATUS= lines, STOPPING=1, and WATCHDOG=1 tied to
 * real health: each ping follows a listing of the mount's `block`
 * directory, which the kernel does not cache, so it only completes if the
 * FUSE threads and the event loop both answer. Without
 * $NOTIFY_SOCKET every call does nothing.
 *
 * Caveat: a ping is skipped (not sent late) while the previous probe is
 * still waiting, so a hung daemon misses pings and systemd restarts it.
 */
import fs from 'node:fs';
import path from 'node:path';

import { native } from '../native.js';

export class Notifier {
  /** $NOTIFY_SOCKET, or null when no manager started us. */
  readonly socket: string | null;
  private timer: NodeJS.Timeout | null = null;
  private probing = false;

  constructor(env: NodeJS.ProcessEnv = process.env) {
    this.socket = env.NOTIFY_SOCKET && env.NOTIFY_SOCKET !== '' ? env.NOTIFY_SOCKET : null;
  }

  get active(): boolean {
    return this.socket !== null;
  }

  private send(message: string): void {
    if (this.socket === null) return;
    try {
      native.sdNotify(this.socket, message, []);
    } catch {
      // The manager went away: nothing to tell.
    }
  }

  ready(status: string): void {
    this.send(`READY=1\nSTATUS=${status}\nMAINPID=${process.pid}`);
  }

  status(status: string): void {
    this.send(`STATUS=${status}`);
  }

  stopping(status: string): void {
    this.stopWatchdog();
    this.send(`STOPPING=1\nSTATUS=${status}`);
  }

  /** Pings at half of $WATCHDOG_USEC when it is set for this process, each after the mount answered. */
  startWatchdog(mount: string, env: NodeJS.ProcessEnv = process.env): void {
    const usec = Number(env.WATCHDOG_USEC ?? 0);
    const forPid = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
    if (this.socket === null || !(usec > 0) || !forPid) return;
    const probe = path.join(mount, 'block');
    this.timer = setInterval(() => {
      if (this.probing) return;
      this.probing = true;
      fs.promises.readdir(probe).then(
        () => {
          this.probing = false;
          if (this.timer !== null) this.send('WATCHDOG=1');
        },
        () => (this.probing = false),
      );
    }, Math.max(1, Math.floor(usec / 2000)));
    this.timer.unref();
  }

  private stopWatchdog(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
