/**
 * ioredis clients for the API and the worker.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { defineScripts } from './scripts.ts';

export interface RedisClientOptions {
  /** Fail commands at once while disconnected, instead of queueing them: the API answers 503 rather than hang. */
  failFast?: boolean;
  /** Per-command timeout, ms. */
  commandTimeoutMs?: number;
}

/**
 * Creates a client with the scripts defined and auto-pipelining on (commands issued in one event-loop tick share
 * one round trip: https://github.com/redis/ioredis#autopipelining).
 */
export function createRedis(url: string, logger: Logger, o: RedisClientOptions = {}): Redis {
  const redis = new Redis(url, {
    enableAutoPipelining: true,
    enableOfflineQueue: !o.failFast,
    maxRetriesPerRequest: o.failFast ? 1 : 20,
    commandTimeout: o.commandTimeoutMs,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000) * (0.8 + Math.random() * 0.4),
    lazyConnect: false,
  });
  redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis error'));
  defineScripts(redis);
  return redis;
}

/** Creates a dedicated subscriber connection (a client in subscribe mode cannot run other commands). */
export function createSubscriber(url: string, logger: Logger): Redis {
  const sub = new Redis(url, {
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000) * (0.8 + Math.random() * 0.4),
  });
  sub.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis subscriber error'));
  return sub;
}
