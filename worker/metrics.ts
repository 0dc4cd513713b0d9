/**
 * The worker's metrics, from the events PurchaseWorker already emits (`decided`, `retried`, `dead-lettered`,
 * `expired`, `batch`, `stale`) and the broker's publisher confirms, served by a small HTTP listener at
 * `GET /metrics` on WORKER_METRICS_PORT. Label values are fixed sets (outcomes, tiers, reason kinds): no ids.
 *
 * Series: `flashsale_decisions_total{outcome}`, `flashsale_accepted_to_final_seconds` (from the request's
 * `acceptedAt`), `flashsale_batch_size`, `flashsale_batch_duration_seconds`, `flashsale_retries_total{tier}`,
 * `flashsale_dead_letters_total{reason}`, `flashsale_stale_decisions_total`, `flashsale_expiries_total{result}`,
 * plus core/metrics (publisher confirms, queues, live sales, rebuilds) and Node's defaults.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { ExpireResult } from '../core/orders.ts';
import type { Logger } from '../core/logger.ts';
import { Backlog } from '../core/metrics/backlog.ts';
import { observeBroker } from '../core/metrics/broker.ts';
import { observeSaleRebuilds } from '../core/metrics/rebuilds.ts';
import { END_TO_END_BUCKETS, FAST_BUCKETS, METRIC_PREFIX, createRegistry } from '../core/metrics/registry.ts';
import type { PurchaseState } from '../core/purchase-state.ts';
import { latencyDigestKey } from '../core/redis/keys.ts';
import type { PurchaseWorker, WorkerDeps } from './purchase-worker.ts';

/** The kind of a dead-letter reason (the reason itself carries ids and error text). */
export function deadLetterKind(reason: string): 'poison' | 'unknown_sale' | 'gave_up' | 'other' {
  if (reason.startsWith('poison message')) return 'poison';
  if (reason.startsWith('unknown sale')) return 'unknown_sale';
  if (reason.startsWith('gave up')) return 'gave_up';
  return 'other';
}

export interface WorkerMetrics {
  registry: Registry;
  /** The port the listener is bound to; undefined when it could not bind (the worker runs on without it). */
  port: number | undefined;
  stop(): Promise<void>;
}

/**
 * Registers the worker's metrics, listens to its events, and starts the metrics listener.
 * A port already in use (several workers on one host with one setting) is logged and the worker runs on without a
 * listener: metrics must never stop purchases from being decided.
 */
export async function startWorkerMetrics(d: WorkerDeps, worker: PurchaseWorker): Promise<WorkerMetrics> {
  const registry = createRegistry();
  const decisions = new Counter({
    name: `${METRIC_PREFIX}decisions_total`,
    help: 'Purchases decided, by outcome (succeeded, sold_out, rejected, failed)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  for (const outcome of ['succeeded', 'sold_out', 'rejected', 'failed']) decisions.inc({ outcome }, 0);
  const endToEnd = new Histogram({
    name: `${METRIC_PREFIX}accepted_to_final_seconds`,
    help: 'Time from admission (acceptedAt) to the final state being written, s',
    buckets: END_TO_END_BUCKETS,
    registers: [registry],
  });
  const batchSize = new Histogram({
    name: `${METRIC_PREFIX}batch_size`,
    help: 'Purchases per batch, count',
    buckets: [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000],
    registers: [registry],
  });
  const batchDuration = new Histogram({
    name: `${METRIC_PREFIX}batch_duration_seconds`,
    help: 'Time to decide, persist and settle one batch, s',
    buckets: FAST_BUCKETS,
    registers: [registry],
  });
  const retries = new Counter({
    name: `${METRIC_PREFIX}retries_total`,
    help: 'Purchases moved to a retry tier after a transient failure, by tier (its delay)',
    labelNames: ['tier'] as const,
    registers: [registry],
  });
  const deadLetters = new Counter({
    name: `${METRIC_PREFIX}dead_letters_total`,
    help: 'Messages this worker dead-lettered, by reason kind (poison, unknown_sale, gave_up, other)',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  for (const reason of ['poison', 'unknown_sale', 'gave_up']) deadLetters.inc({ reason }, 0);
  const stale = new Counter({
    name: `${METRIC_PREFIX}stale_decisions_total`,
    help: 'Decisions refused by the epoch fence (taken in a Redis rebuilt since) and decided again, count',
    registers: [registry],
  });
  const expiries = new Counter({
    name: `${METRIC_PREFIX}expiries_total`,
    help: 'Reservation expiries by result: expired, paid (the payment came first), already_expired, missing',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const tiers = d.topology.retryQueues;
  const digest = new LatencyDigest(d);
  const listeners: [string, (...args: any[]) => void][] = [
    ['decided', (s: PurchaseState) => {
      decisions.inc({ outcome: s.status });
      if (!s.acceptedAt) return;
      const ms = Math.max(0, Date.parse(s.updatedAt) - Date.parse(s.acceptedAt));
      endToEnd.observe(ms / 1000);
      digest.add(ms);
    }],
    ['batch', (b: { size: number; ms: number }) => {
      batchSize.observe(b.size);
      batchDuration.observe(b.ms / 1000);
    }],
    ['retried', (_id: string, attempt: number) => retries.inc({ tier: `${tiers[attempt - 1]?.delayMs ?? 'unknown'}ms` })],
    ['dead-lettered', (_id: string | null, reason: string) => deadLetters.inc({ reason: deadLetterKind(reason) })],
    ['stale', (count: number) => stale.inc(count)],
    ['expired', (_orderId: string, result: ExpireResult) => expiries.inc({ result })],
  ];
  for (const [event, fn] of listeners) worker.on(event, fn);
  new Backlog(
    {
      broker: d.broker,
      redis: d.redis,
      topology: d.topology,
      prefix: d.config.REDIS_KEY_PREFIX,
      amqpPrefix: d.config.AMQP_PREFIX,
      pollMs: d.config.METRICS_POLL_MS,
      salesMax: d.config.METRICS_SALES_MAX,
    },
    registry,
  );
  const stops = [observeBroker(d.broker, registry), observeSaleRebuilds(registry, d.config.REDIS_KEY_PREFIX)];
  const server = await listen(registry, d.config.WORKER_METRICS_PORT, d.logger);
  const address = server?.address();
  return {
    registry,
    port: typeof address === 'object' && address ? address.port : undefined,
    async stop() {
      for (const [event, fn] of listeners) worker.off(event, fn);
      stops.forEach((s) => s());
      digest.stop();
      if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** `GET /metrics` answers the registry; anything else is a 404. @returns undefined when the port is taken. */
function listen(registry: Registry, port: number, logger: Logger): Promise<Server | undefined> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not found: the worker serves GET /metrics only.\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
    );
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      logger.warn({ err: err.message, port }, 'worker metrics listener not started (port in use?); running without it');
      resolve(undefined);
    });
    server.listen(port, () => resolve(server));
  });
}

/** How often a worker writes its latency digest, ms; the dashboard ignores digests older than three of these. */
export const DIGEST_INTERVAL_MS = 1000;

/**
 * Each second, the accepted→final latencies of the decisions this worker wrote in that second, as count, p50 and p99
 * (ms), in one field of a Redis hash the operator dashboard reads (a histogram cannot give a dashboard a percentile
 * of the last second without Prometheus). Written only in seconds with decisions; the hash expires when no worker
 * writes.
 */
class LatencyDigest {
  private window: number[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly id = `${hostname()}:${process.pid}:${randomBytes(2).toString('hex')}`;

  constructor(private readonly d: WorkerDeps) {
    this.timer = setInterval(() => this.flush(), DIGEST_INTERVAL_MS);
    this.timer.unref();
  }

  add(ms: number): void {
    if (this.window.length < 100_000) this.window.push(ms);
  }

  private flush(): void {
    if (this.window.length === 0) return;
    const sorted = this.window.sort((a, b) => a - b);
    this.window = [];
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
    const key = latencyDigestKey(this.d.config.REDIS_KEY_PREFIX);
    const value = JSON.stringify({ at: Date.now(), count: sorted.length, p50: at(0.5), p99: at(0.99) });
    this.d.redis
      .multi()
      .hset(key, this.id, value)
      .pexpire(key, 10 * DIGEST_INTERVAL_MS)
      .exec()
      .catch(() => undefined);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
