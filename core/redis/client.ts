/**
 * ioredis clients for the API and the worker: a single Redis (`REDIS_URL`, the default) or a Redis Cluster
 * (`REDIS_CLUSTER_NODES`, a comma-separated list of `host:port` seed nodes; the rest of the cluster is discovered
 * from them). A separate variable rather than several hosts in `REDIS_URL`: a redis:// URL names one host, and
 * an explicit list says at a glance which mode a process runs in. Credentials and TLS come from `REDIS_URL`'s
 * userinfo and scheme in both modes.
 */
import { Cluster, Redis, type ClusterOptions, type Command, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { QuietWarnings } from '../quiet-log.ts';
import { defineScripts } from './scripts.ts';

/** A single-node client or a cluster client: both run the same commands and scripts. */
export type RedisClient = Redis | Cluster;

/** Where Redis is: one URL, plus seed nodes when it is a cluster. */
export interface RedisTarget {
  url: string;
  /** `host:port` seed nodes of a Redis Cluster; empty or absent for a single Redis. */
  clusterNodes?: readonly string[];
}

export interface RedisClientOptions {
  /** Fail commands at once while disconnected, instead of queueing them: the API answers 503 rather than hang. */
  failFast?: boolean;
  /** Per-command timeout, ms. */
  commandTimeoutMs?: number;
}

/** Reconnect delay after `attempt` failures, ms: exponential from 50 ms, capped at 1 s, with ±20 % jitter. */
const backoff = (attempt: number) => Math.min(50 * 2 ** attempt, 1000) * (0.8 + Math.random() * 0.4);

function nodeOptions(url: string): RedisOptions {
  const u = new URL(url);
  return {
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    tls: u.protocol === 'rediss:' ? {} : undefined,
  };
}

/** What a command past its deadline is refused with, before it was written (so it never ran). */
const NOT_SENT_TIMEOUT = 'Command timed out before it was sent';

/**
 * True when a command that failed may still have run in Redis, or may run later: it timed out after it was written,
 * or its connection was lost with it in flight (ioredis re-sends such commands after a reconnect, although their
 * callers were told of the failure). False when Redis answered it with an error (it did not run) or it was never
 * written (no connection, and no offline queue; or past its deadline before it was sent).
 * Source: ioredis 6 built/Redis.js (`sendCommand`: "Stream isn't writeable", `commandTimeout`), built/redis/event_handler.js
 * (`autoResendUnfulfilledCommands`).
 */
export function mayHaveRun(err: unknown): boolean {
  if (!(err instanceof Error)) return true;
  if (err.name === 'ReplyError') return false;
  return !(err.message.startsWith("Stream isn't writeable") || err.message === NOT_SENT_TIMEOUT);
}

/** When a command issued through a deadline-bound cluster client stops being worth sending, ms since the epoch. */
const DEADLINE = Symbol('deadline');
type Timed = Command & { [DEADLINE]?: number };

/**
 * Gives every command of a cluster client a deadline, counted from when it is issued: it is answered "Command timed
 * out" then, wherever it waits, and it is never written after it. @param deadlineMs - the longest wait, ms.
 *
 * Why: ioredis's Cluster keeps a command issued while it is not `ready` (every node unreachable, reconnecting, or
 * left in `close` after `disconnect()`: its pool emits `drain` once per node that ends, so `end` can be followed by
 * `close` again) in an offline queue of its own where `commandTimeout` does not run: that starts only once a node
 * connection takes the command. A purchase then waited for the whole outage instead of getting its 503, and ran
 * when Redis came back, after its shopper had given up. And a command that timed out in a queue is still written
 * when a connection comes back (a pipeline even re-arms its timed-out commands, `initPromise`, so `isSettled` cannot
 * tell): an admission answered 503 would then hold its units after all. ioredis 6.0.0 source:
 * built/cluster/index.js (`tryConnection` pushes to `offlineQueue`, `executeOfflineCommands` sends it through
 * `this.sendCommand`), built/Redis.js (`commandTimeout` is armed in `sendCommand`; a node's offline queue is sent
 * through it too), built/Pipeline.js (`fillResult`).
 */
function withDeadlines(cluster: Cluster, deadlineMs: number): Cluster {
  const expire = (command: Timed): unknown => {
    if (!command.isSettled) command.reject(new Error(NOT_SENT_TIMEOUT));
    return command.promise;
  };
  const send = cluster.sendCommand.bind(cluster);
  cluster.sendCommand = (command: Timed, stream, node) => {
    const now = Date.now();
    const deadline = (command[DEADLINE] ??= now + deadlineMs);
    if (now >= deadline) return expire(command);
    command.setTimeout(deadline - now); // armed once per promise: a node's commandTimeout finds it set
    return send(command, stream, node);
  };
  // Each node connection is guarded as it joins the pool: a node's offline queue and the cluster's failover
  // retries write through it.
  cluster.on('+node', (node: Redis) => {
    const write = node.sendCommand.bind(node);
    node.sendCommand = (command: Timed, stream) => ((command[DEADLINE] ?? Infinity) <= Date.now() ? expire(command) : write(command, stream));
  });
  return cluster;
}

function clusterOf(target: RedisTarget, base: RedisOptions, extra: Partial<ClusterOptions> = {}, deadlineMs?: number): Cluster {
  const nodes = target.clusterNodes!.map((hp) => {
    const i = hp.lastIndexOf(':');
    return { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) };
  });
  const cluster = new Cluster(nodes, {
    // A master killed: its connection closes, ioredis refreshes the slot map and re-sends after these delays
    // (ms); the replica is promoted after the cluster's node-timeout, so a command retries for a few seconds.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    retryDelayOnTryAgain: 100,
    retryDelayOnMoved: 0,
    maxRedirections: 32,
    slotsRefreshTimeout: 1000,
    clusterRetryStrategy: backoff,
    enableOfflineQueue: base.enableOfflineQueue,
    enableAutoPipelining: base.enableAutoPipelining,
    scaleReads: 'master',
    redisOptions: { ...nodeOptions(target.url), ...base, enableAutoPipelining: undefined },
    ...extra,
  });
  return deadlineMs === undefined ? cluster : withDeadlines(cluster, deadlineMs);
}

/** True when `target` names a Redis Cluster. */
export const isCluster = (target: RedisTarget): boolean => (target.clusterNodes?.length ?? 0) > 0;

/**
 * Creates a client with the scripts defined and auto-pipelining on (commands issued in one event-loop tick share
 * one round trip: https://github.com/redis/ioredis#autopipelining; on a cluster, one per node).
 */
export function createRedis(target: RedisTarget, logger: Logger, o: RedisClientOptions = {}): RedisClient {
  const base: RedisOptions = {
    enableAutoPipelining: true,
    enableOfflineQueue: !o.failFast,
    maxRetriesPerRequest: o.failFast ? 1 : 20,
    commandTimeout: o.commandTimeoutMs,
    retryStrategy: backoff,
    lazyConnect: false,
  };
  // Under a failover a cluster client must queue while it re-reads the slot map, or every command in those
  // seconds fails; with failFast the per-command timeout bounds the whole wait, queues included (DeadlineCluster).
  const redis = isCluster(target)
    ? clusterOf(target, { ...base, enableOfflineQueue: true }, {}, o.failFast ? o.commandTimeoutMs : undefined)
    : new Redis(target.url, base);
  const quiet = new QuietWarnings(logger);
  redis.on('error', (err: Error) => quiet.warn({ err: err.message }, 'redis error'));
  redis.on('node error', (err: Error, node: string) => quiet.warn({ err: err.message, node }, 'redis cluster node error'));
  defineScripts(redis);
  return redis;
}

/**
 * Creates a dedicated subscriber connection (a client in subscribe mode cannot run other commands). On a cluster,
 * `sharded: true` (ioredis `shardedSubscribers`) makes SSUBSCRIBE go to the shard that holds each channel's slot.
 */
export function createSubscriber(target: RedisTarget, logger: Logger, o: { sharded?: boolean } = {}): RedisClient {
  const base: RedisOptions = { enableOfflineQueue: true, maxRetriesPerRequest: null, retryStrategy: backoff };
  const sub = isCluster(target) ? clusterOf(target, base, { shardedSubscribers: o.sharded === true }) : new Redis(target.url, base);
  const quiet = new QuietWarnings(logger);
  sub.on('error', (err: Error) => quiet.warn({ err: err.message }, 'redis subscriber error'));
  return sub;
}

/**
 * Why Redis cannot serve, or undefined when it can: PING, and on a cluster `CLUSTER INFO`'s `cluster_state`
 * (a cluster with a slot uncovered answers `fail`: https://redis.io/docs/latest/commands/cluster-info/).
 * @throws when Redis does not answer.
 */
export async function redisProblem(redis: RedisClient): Promise<string | undefined> {
  await redis.ping();
  if (!(redis instanceof Cluster)) return undefined;
  const info = await redis.cluster('INFO');
  const state = /cluster_state:(\w+)/.exec(String(info))?.[1];
  return state === 'ok' ? undefined : `cluster_state:${state ?? 'unknown'}`;
}
