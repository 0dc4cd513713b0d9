/**
 * The worker process: decides purchases, expires unpaid reservations, and sweeps stale admissions. Several
 * workers may run at once; they share the queues and coordinate only through Redis scripts and PostgreSQL.
 */
import { Broker } from '../core/amqp/broker.ts';
import { topologyFor } from '../core/amqp/topology.ts';
import { loadConfig, type Config } from '../core/config.ts';
import { createDb, createPool } from '../core/db/client.ts';
import { createLogger, type Logger } from '../core/logger.ts';
import { isMain, onShutdown, reportSchema } from '../core/process.ts';
import { createRedis } from '../core/redis/client.ts';
import { startWorkerMetrics, type WorkerMetrics } from './metrics.ts';
import { PurchaseWorker, type WorkerDeps } from './purchase-worker.ts';
import { sweepStaleAdmissions } from './sweeper.ts';

export interface RunningWorker {
  deps: WorkerDeps;
  worker: PurchaseWorker;
  /** Absent when METRICS=false. */
  metrics: WorkerMetrics | undefined;
  stop(): Promise<void>;
}

/** Connects, declares the topology, and starts consuming. */
export async function startWorker(
  config: Config,
  logger: Logger = createLogger('worker', config.LOG_LEVEL),
  o: { background?: boolean } = {},
): Promise<RunningWorker> {
  const db = createDb(config.DATABASE_URL, 10);
  const sql = createPool(config.DATABASE_URL, 4);
  const redis = createRedis(config.redis, logger);
  const topo = topologyFor(config);
  const broker = await Broker.connect({ urls: config.amqpUrls, background: o.background, topology: topo, logger, publishTimeoutMs: config.PUBLISH_TIMEOUT_MS });
  const deps: WorkerDeps = { config, logger, db, sql, redis, broker, topology: topo };
  const worker = new PurchaseWorker(deps);
  const metrics = config.METRICS ? await startWorkerMetrics(deps, worker) : undefined;
  // In the background, consuming starts once RabbitMQ answers (the worker opens its channel on every connect).
  const started = worker.start();
  if (o.background) started.catch((err: Error) => logger.warn({ err: err.message }, 'not consuming yet; waiting for RabbitMQ'));
  else await started;

  let sweeping = false;
  const sweeper = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    sweepStaleAdmissions({ redis, broker, topology: topo, logger, prefix: config.REDIS_KEY_PREFIX }, config.STALE_ADMISSION_MS)
      .catch((err: Error) => logger.warn({ err: err.message }, 'sweep failed'))
      .finally(() => (sweeping = false));
  }, Math.max(250, Math.floor(config.STALE_ADMISSION_MS / 4)));
  sweeper.unref();

  // Stopping twice (a test's own stop, then its system's) must not close the connections twice.
  let stopped: Promise<void> | undefined;
  return {
    deps,
    worker,
    metrics,
    stop: () => (stopped ??= (async () => {
      clearInterval(sweeper);
      await worker.stop();
      await metrics?.stop();
      await broker.close();
      redis.disconnect();
      await db.$disconnect();
      await sql.end();
    })()),
  };
}

if (isMain(import.meta.url)) {
  const config = loadConfig();
  const logger = createLogger('worker', config.LOG_LEVEL);
  const running = await startWorker(config, logger, { background: true });
  onShutdown(logger, 15_000, () => running.stop());
  logger.info({ queue: running.deps.topology.purchaseQueue, metricsPort: running.metrics?.port }, 'worker started; consuming once RabbitMQ answers');
  reportSchema(running.deps.db, logger);
}
