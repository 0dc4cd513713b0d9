/**
 * The connections and settings every process (API, worker) is built from; passed in, so tests build processes on
 * their own prefixes and connections.
 */
import type { RedisClient } from './redis/client.ts';
import type { Logger } from 'pino';
import type { Broker } from './amqp/broker.ts';
import type { Topology } from './amqp/topology.ts';
import type { Config } from './config.ts';
import type { Db } from './db/client.ts';

export interface CoreDeps {
  config: Config;
  logger: Logger;
  db: Db;
  redis: RedisClient;
  broker: Broker;
  topology: Topology;
}
