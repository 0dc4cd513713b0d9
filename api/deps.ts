/**
 * What the API needs from the outside world, passed to `createApp` so tests can build an app on their own
 * prefixes and connections.
 */
import type { CoreDeps } from '../core/deps.ts';
import type { ApiMetrics } from './metrics.ts';
import type { OpenStreams } from './open-streams.ts';
import type { PurchaseEvents } from './purchase-events.ts';
import type { ShardChannels } from './shard-channels.ts';
import type { PurchasePublisher } from './purchase-publisher.ts';
import type { SoldOutCache } from './sold-out-cache.ts';

export interface ApiDeps extends CoreDeps {
  events: PurchaseEvents;
  /** The node's sharded pub/sub subscriptions: purchase events and waiting-room counter changes. */
  channels: ShardChannels;
  /** Publishes admitted purchases, one message per event-loop turn. */
  purchases: PurchasePublisher;
  soldOut: SoldOutCache;
  /** Absent when METRICS=false. */
  metrics?: ApiMetrics;
  /** SSE streams open on this node, ended cleanly at shutdown. */
  streams: OpenStreams;
  /** True once shutdown began: `/readyz` answers 503 first. */
  draining(): boolean;
}
