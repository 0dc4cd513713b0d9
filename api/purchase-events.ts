/**
 * Delivers purchase state changes to the SSE connections this API node holds. The worker publishes each new
 * version on the request's sharded pub/sub channel (SPUBLISH, in the sale's slot: on a Redis Cluster only the shard
 * that holds the slot carries it), so whichever node holds the shopper's connection receives it.
 *
 * Race-free by order, not by delay: a connection subscribes first (and waits for Redis to confirm, see
 * api/shard-channels.ts), then reads the stored state. A version published before the subscription is in the stored
 * state; one published after reaches the listener; one in between arrives both ways and the listener drops what it
 * already sent (versions grow).
 */
import type { Logger } from 'pino';
import type { PurchaseState } from '../core/purchase-state.ts';
import { purchaseChannel } from '../core/redis/keys.ts';
import type { ShardChannels } from './shard-channels.ts';

type Listener = (state: PurchaseState | 'resync') => void;

export class PurchaseEvents {
  constructor(
    private readonly channels: ShardChannels,
    private readonly prefix: string,
    private readonly logger: Logger,
  ) {}

  /**
   * Subscribes to a request's changes. Resolves once Redis confirmed the subscription, so a state read after it
   * cannot miss a later change; `resync` after a reconnect. @returns a function that unsubscribes this listener.
   */
  subscribe(saleId: string, requestId: string, listener: Listener): Promise<() => void> {
    const channel = purchaseChannel(this.prefix, saleId, requestId);
    return this.channels.subscribe(channel, (message) => {
      if (message === 'resync') return listener('resync');
      let state: PurchaseState;
      try {
        state = JSON.parse(message) as PurchaseState;
      } catch {
        return this.logger.warn({ channel }, 'ignoring a malformed purchase event');
      }
      listener(state);
    });
  }
}
