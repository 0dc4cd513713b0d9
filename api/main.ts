/**
 * The API process: reads config, connects PostgreSQL, Redis and RabbitMQ, listens, and shuts down gracefully
 * (stops accepting, lets in-flight requests finish, then closes connections).
 */
import { createServer, type Server } from 'node:http';
import { Broker } from '../core/amqp/broker.ts';
import { topologyFor } from '../core/amqp/topology.ts';
import { loadConfig, type Config } from '../core/config.ts';
import { createDb } from '../core/db/client.ts';
import { createLogger, type Logger } from '../core/logger.ts';
import { isMain, onShutdown, reportSchema } from '../core/process.ts';
import { createRedis, createSubscriber } from '../core/redis/client.ts';
import { BODY_LIMIT_BYTES, createApp } from './app.ts';
import { withSoldOutShortcut } from './sold-out-shortcut.ts';
import type { ApiDeps } from './deps.ts';
import { createApiMetrics } from './metrics.ts';
import { OpenStreams } from './open-streams.ts';
import { PurchaseEvents } from './purchase-events.ts';
import { ShardChannels } from './shard-channels.ts';
import { PurchasePublisher } from './purchase-publisher.ts';
import { SoldOutCache } from './sold-out-cache.ts';

/** Time a client has to send a request's headers, ms. */
const HEADERS_TIMEOUT_MS = 10_000;
/** Time a client has to send a whole request, ms. */
const REQUEST_TIMEOUT_MS = 30_000;
/** Time in-flight requests get to finish at shutdown, ms. */
const SHUTDOWN_GRACE_MS = 3000;
/** Reconnection delay an SSE client is told when its stream ends at shutdown, ms. */
const SSE_RETRY_MS = 500;

/** The running API: its deps, HTTP server and bound port. */
export interface ApiServer {
  deps: ApiDeps;
  server: Server;
  port: number;
  stop(): Promise<void>;
}

export interface StartOptions {
  /**
   * Listen before RabbitMQ and Redis answer (the process entry point does): `/readyz` names what is missing and
   * turns 200 when each comes back. Off (tests): resolve once connected.
   */
  background?: boolean;
  /** Time between /readyz turning 503 and the listener closing at shutdown, ms (a load balancer's poll interval). */
  drainMs?: number;
}

/** Connects every dependency and starts listening on `config.PORT` (0 picks a free port). */
export async function startApi(
  config: Config,
  logger: Logger = createLogger('api', config.LOG_LEVEL),
  o: StartOptions = {},
): Promise<ApiServer> {
  const db = createDb(config.DATABASE_URL, 20);
  const redis = createRedis(config.redis, logger, { failFast: true, commandTimeoutMs: 2000 });
  const sub = createSubscriber(config.redis, logger);
  // Sharded pub/sub (purchase states) on a connection of its own: Redis answers SUNSUBSCRIBE with the count of shard
  // channels alone, and a client that sees 0 leaves subscriber mode, dropping the plain channels sharing it.
  const shardedSub = createSubscriber(config.redis, logger, { sharded: true });
  const topo = topologyFor(config);
  const broker = await Broker.connect({ urls: config.amqpUrls, background: o.background, topology: topo, logger, publishTimeoutMs: config.PUBLISH_TIMEOUT_MS });
  const soldOut = new SoldOutCache(sub, config.REDIS_KEY_PREFIX);
  const subscribed = soldOut.start();
  if (o.background) subscribed.catch((err: Error) => logger.warn({ err: err.message }, 'sold-out notices not subscribed'));
  else await subscribed;
  const channels = new ShardChannels(shardedSub);
  const events = new PurchaseEvents(channels, config.REDIS_KEY_PREFIX, logger);
  const purchases = new PurchasePublisher(broker, topo);
  const metrics = config.METRICS ? createApiMetrics({ config, broker, redis, topology: topo }) : undefined;
  let draining = false;
  const streams = new OpenStreams();
  const deps: ApiDeps = {
    config, logger, db, redis, broker, topology: topo, events, channels, soldOut, purchases, streams, draining: () => draining,
    ...(metrics ? { metrics } : {}),
  };
  const app = createApp(deps);
  const server = createServer(withSoldOutShortcut(deps, app, BODY_LIMIT_BYTES));
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(config.PORT, () => {
    server.off('error', reject);
    resolve();
  }));
  // Deliberate timeouts: an idle keep-alive connection is closed after 65 s (longer than a proxy's usual 60 s, so the
  // proxy closes first and never reuses a connection we are closing); a client has 10 s to send its headers and
  // 30 s for the whole request (slow-loris). Event streams are responses, not requests: neither limit cuts them.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.PORT;
  let stopping: Promise<void> | undefined;
  return {
    deps,
    server,
    port,
    stop() {
      return (stopping ??= stopApi());
    },
  };
  async function stopApi(): Promise<void> {
    // Readiness first: a load balancer polling /readyz stops sending here while requests still succeed.
    draining = true;
    if (o.drainMs) await new Promise((r) => setTimeout(r, o.drainMs));
    // Stop accepting, let requests in flight finish; SSE streams never do: each gets a retry hint and a clean
    // end, and its client reconnects to another node.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const ended = streams.endAll(SSE_RETRY_MS);
    logger.info({ streams: ended }, 'stopped accepting; streams ended with a retry hint');
    const grace = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
    await closed;
    clearTimeout(grace);
    metrics?.stop();
    await broker.close();
    sub.disconnect();
    shardedSub.disconnect();
    redis.disconnect();
    await db.$disconnect();
  }
}

if (isMain(import.meta.url)) {
  const config = loadConfig();
  const logger = createLogger('api', config.LOG_LEVEL);
  const api = await startApi(config, logger, { background: true, drainMs: config.SHUTDOWN_DRAIN_MS });
  onShutdown(logger, 10_000 + config.SHUTDOWN_DRAIN_MS, () => api.stop());
  logger.info({ port: api.port }, `API listening on http://localhost:${api.port}`);
  reportSchema(api.deps.db, logger);
}
