/**
 * Delivers purchase state changes to the SSE connections this API node holds. The worker publishes each new
 * version on the request's sharded pub/sub channel (SPUBLISH, in the sale's slot: on a Redis Cluster only the shard
 * that holds the slot carries it), so whichever node holds the shopper's connection receives it.
 *
 * Race-free by order, not by delay: a connection subscribes first (and waits for Redis to confirm), then reads the
 * stored state. A version published before the subscription is in the stored state; one published after reaches
 * the listener; one in between arrives both ways and the listener drops what it already sent (versions grow).
 */
import type { RedisClient } from '../core/redis/client.ts';
import type { Logger } from 'pino';
import type { PurchaseState } from '../core/purchase-state.ts';
import { purchaseChannel } from '../core/redis/keys.ts';

type Listener = (state: PurchaseState | 'resync') => void;

interface Entry {
  listeners: Set<Listener>;
  subscribed: Promise<unknown>;
}

/** One Redis subscriber connection shared by every SSE connection of this process. */
export class PurchaseEvents {
  private readonly channels = new Map<string, Entry>();

  constructor(
    private readonly sub: RedisClient,
    private readonly prefix: string,
    private readonly logger: Logger,
  ) {
    sub.on('smessage', (channel: string, message: string) => {
      const entry = this.channels.get(channel);
      if (!entry) return;
      let state: PurchaseState;
      try {
        state = JSON.parse(message) as PurchaseState;
      } catch {
        return logger.warn({ channel }, 'ignoring a malformed purchase event');
      }
      for (const l of entry.listeners) l(state);
    });
    // Pub/sub drops what is published while disconnected; ioredis re-subscribes on reconnect, and each listener
    // then re-reads the stored state so nothing is missed.
    sub.on('ready', () => {
      for (const entry of this.channels.values()) for (const l of entry.listeners) l('resync');
    });
  }

  /**
   * Subscribes to a request's changes. Resolves once Redis confirmed the subscription, so a state read after it
   * cannot miss a later change. @returns a function that unsubscribes this listener.
   */
  async subscribe(saleId: string, requestId: string, listener: Listener): Promise<() => void> {
    const channel = purchaseChannel(this.prefix, saleId, requestId);
    let entry = this.channels.get(channel);
    if (!entry) {
      entry = { listeners: new Set(), subscribed: this.sub.ssubscribe(channel) };
      this.channels.set(channel, entry);
    }
    entry.listeners.add(listener);
    const current = entry;
    try {
      await current.subscribed;
    } catch (err) {
      this.remove(channel, current, listener);
      throw err;
    }
    return () => this.remove(channel, current, listener);
  }

  private remove(channel: string, entry: Entry, listener: Listener): void {
    entry.listeners.delete(listener);
    if (entry.listeners.size === 0 && this.channels.get(channel) === entry) {
      this.channels.delete(channel);
      this.sub.sunsubscribe(channel).catch(() => undefined);
    }
  }

  /** Channels with at least one listener, count. */
  get size(): number {
    return this.channels.size;
  }
}
