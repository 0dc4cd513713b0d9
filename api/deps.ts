/**
 * What the API needs from the outside world, passed to `createApp` so tests can build an app on their own
 * prefixes and connections.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Broker } from '../core/amqp/broker.ts';
import type { Topology } from '../core/amqp/topology.ts';
import type { Config } from '../core/config.ts';
import type { Db } from '../core/db/client.ts';
import type { PurchaseEvents } from './purchase-events.ts';
import type { SoldOutCache } from './sold-out-cache.ts';

export interface ApiDeps {
  config: Config;
  logger: Logger;
  db: Db;
  redis: Redis;
  broker: Broker;
  topology: Topology;
  events: PurchaseEvents;
  soldOut: SoldOutCache;
}
