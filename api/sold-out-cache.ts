/**
 * Remembers, per API process, which sales answered "sold out", so that the thousands of shoppers who keep asking
 * after a sell-out are answered from memory instead of Redis. Two things end an entry: returned stock (a
 * reservation expired or a purchase failed), announced by the release script on a Redis pub/sub channel, and a
 * short lifetime, which bounds how stale an entry can be if an announcement is missed while reconnecting.
 */
import { EventEmitter } from 'node:events';
import type { RedisClient } from '../core/redis/client.ts';
import { stockChannel } from '../core/redis/keys.ts';

/** Longest a sold-out answer is served from memory, ms. */
export const SOLD_OUT_MEMORY_MS = 1000;

/** Emits `returned` (saleId) when an announcement of returned stock arrives. */
export class SoldOutCache extends EventEmitter {
  private readonly until = new Map<string, number>();
  private readonly channel: string;

  /** Listens on `sub`, the process's subscriber connection. Call `start()` before use. */
  constructor(
    private readonly sub: RedisClient,
    prefix: string,
  ) {
    super();
    this.channel = stockChannel(prefix);
    sub.on('message', (channel: string, saleId: string) => {
      if (channel !== this.channel) return;
      this.until.delete(saleId);
      this.emit('returned', saleId);
    });
    // While disconnected, announcements are lost: forget everything once the connection is back.
    sub.on('ready', () => this.until.clear());
  }

  /** Subscribes to the returned-stock channel; resolves once Redis confirmed. */
  async start(): Promise<void> {
    await this.sub.subscribe(this.channel);
  }

  /** True when the sale answered sold out less than SOLD_OUT_MEMORY_MS ago and no stock came back since. */
  has(saleId: string, now = Date.now()): boolean {
    const until = this.until.get(saleId);
    if (until === undefined) return false;
    if (until > now) return true;
    this.until.delete(saleId);
    return false;
  }

  mark(saleId: string, now = Date.now()): void {
    this.until.set(saleId, now + SOLD_OUT_MEMORY_MS);
  }
}
