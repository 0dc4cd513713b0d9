/**
 * The sharded pub/sub subscriptions of this API node, on one subscriber connection (SSUBSCRIBE; on a Redis Cluster
 * ioredis `shardedSubscribers` sends each to the shard that holds its channel's slot): one Redis subscription per
 * channel however many listeners hold it, dropped with the last. Purchase states (api/purchase-events.ts) and
 * waiting-room counter changes (api/queue-streams.ts) arrive here.
 *
 * Race-free by order, not by delay: `subscribe` resolves once Redis confirmed the subscription, so a state read
 * after it cannot miss a later message. Pub/sub drops what is published while disconnected; ioredis subscribes again
 * on reconnect, and every listener is then told `resync` (read the state again).
 */
import type { RedisClient } from '../core/redis/client.ts';

/** Called with each message of the channel, or `resync` after a reconnect. */
export type ChannelListener = (message: string | 'resync') => void;

interface Entry {
  listeners: Set<ChannelListener>;
  subscribed: Promise<unknown>;
}

export class ShardChannels {
  private readonly channels = new Map<string, Entry>();

  constructor(private readonly sub: RedisClient) {
    sub.on('smessage', (channel: string, message: string) => {
      const entry = this.channels.get(channel);
      if (entry) for (const l of entry.listeners) l(message);
    });
    sub.on('ready', () => {
      for (const entry of this.channels.values()) for (const l of entry.listeners) l('resync');
    });
  }

  /**
   * Adds `listener` to `channel`, subscribing in Redis if it is the first. Resolves once Redis confirmed the
   * subscription. @returns a function that removes this listener. @throws when Redis refuses or is unreachable.
   */
  async subscribe(channel: string, listener: ChannelListener): Promise<() => void> {
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

  private remove(channel: string, entry: Entry, listener: ChannelListener): void {
    entry.listeners.delete(listener);
    if (entry.listeners.size === 0 && this.channels.get(channel) === entry) {
      this.channels.delete(channel);
      this.sub.sunsubscribe(channel).catch(() => undefined);
    }
  }
}
