/**
 * Gauges read from the broker and Redis on a scrape, at most once per `METRICS_POLL_MS` per process (a scrape in
 * between is answered from the last reading): queue depth and consumers per queue (AMQP `queue.declare` passive,
 * amqplib's `checkQueue`), and, for the sales inside their sale window (at most `METRICS_SALES_MAX`, newest first),
 * remaining and held units and the age of the oldest admitted request not yet decided.
 *
 * Queue labels are the queue names without the deployment prefix (`purchases`, `purchases.retry.1000ms`,
 * `purchases.dead`, ...): a fixed set. Sale labels are sale ids, capped. The same readings feed the operator
 * dashboard (`read()`).
 */
import type { Channel } from 'amqplib';
import type { RedisClient } from '../redis/client.ts';
import { Gauge, type Registry } from 'prom-client';
import type { Broker } from '../amqp/broker.ts';
import type { Topology } from '../amqp/topology.ts';
import { loadedSalesKey, saleKeys } from '../redis/keys.ts';
import { METRIC_PREFIX } from './registry.ts';

export interface QueueReading {
  /** The queue name without the deployment prefix. */
  queue: string;
  messages: number;
  consumers: number;
}

export interface SaleReading {
  saleId: string;
  stock: number;
  remaining: number;
  /** Units held by admitted requests not yet decided. */
  held: number;
  /** Admitted requests not yet decided, count. */
  inflight: number;
  /** Age of the oldest of them, s (0 when none). */
  oldestInflightS: number;
}

export interface BacklogReading {
  at: number;
  queues: QueueReading[];
  sales: SaleReading[];
}

/** Sale ids read from the set of loaded sales per poll, at most: the poll's cost stays bounded. */
const SCAN_MAX = 1000;
/** A poll that takes longer than this is abandoned for this scrape (the last reading is served), ms. */
const POLL_TIMEOUT_MS = 2000;

export interface BacklogOptions {
  broker: Broker;
  redis: RedisClient;
  topology: Topology;
  prefix: string;
  amqpPrefix: string;
  pollMs: number;
  salesMax: number;
}

/** Reads queue depths and live sales at a bounded rate; registers the gauges on `registry` when given. */
export class Backlog {
  private last: BacklogReading = { at: 0, queues: [], sales: [] };
  private polling: Promise<BacklogReading> | undefined;

  constructor(private readonly o: BacklogOptions, registry?: Registry) {
    if (registry) this.register(registry);
  }

  /**
   * The latest reading, polled anew when older than `pollMs`. Never throws: a failed poll keeps the last reading
   * (a broker or Redis outage shows as stale gauges and as the services' own alerts).
   */
  async read(now = Date.now()): Promise<BacklogReading> {
    if (now - this.last.at < this.o.pollMs) return this.last;
    this.polling ??= this.poll()
      .then((r) => (this.last = r))
      .catch(() => this.last)
      .finally(() => (this.polling = undefined));
    const timeout = new Promise<BacklogReading>((resolve) => setTimeout(() => resolve(this.last), POLL_TIMEOUT_MS).unref());
    return Promise.race([this.polling, timeout]);
  }

  private async poll(): Promise<BacklogReading> {
    const [queues, sales] = await Promise.all([this.pollQueues(), this.pollSales()]);
    return { at: Date.now(), queues, sales };
  }

  private queueNames(): string[] {
    const t = this.o.topology;
    return [
      t.purchaseQueue,
      ...t.retryQueues.map((q) => q.name),
      t.purchaseDeadQueue,
      t.reservationDelayQueue,
      t.reservationExpiryQueue,
      ...t.reservationRetryQueues.map((q) => q.name),
      t.reservationDeadQueue,
    ];
  }

  private async pollQueues(): Promise<QueueReading[]> {
    const out: QueueReading[] = [];
    let ch: Channel | undefined;
    try {
      for (const name of this.queueNames()) {
        // A missing queue closes the channel (404): open another for the next one.
        if (!ch) {
          ch = await this.o.broker.createChannel();
          ch.on('error', () => undefined);
        }
        try {
          const q = await ch.checkQueue(name);
          out.push({ queue: name.slice(this.o.amqpPrefix.length + 1), messages: q.messageCount, consumers: q.consumerCount });
        } catch {
          ch = undefined;
        }
      }
    } finally {
      await ch?.close().catch(() => undefined);
    }
    return out;
  }

  private async pollSales(): Promise<SaleReading[]> {
    const { redis, prefix } = this.o;
    const ids: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.sscan(loadedSalesKey(prefix), cursor, 'COUNT', 200);
      cursor = next;
      ids.push(...batch);
    } while (cursor !== '0' && ids.length < SCAN_MAX);
    const now = Date.now();
    // One command per sale, never a pipeline across sales: each sale's keys live in their own cluster slot.
    const rows = await Promise.all(
      ids.slice(0, SCAN_MAX).map(async (saleId) => {
        const keys = saleKeys(prefix, saleId);
        const [stock, remaining, pending, starts, ends] = await redis.hmget(keys.sale, 'stock', 'remaining', 'pending', 'starts', 'ends');
        return { saleId, stock: Number(stock), remaining: Number(remaining), held: Number(pending ?? 0), starts: Number(starts), ends: Number(ends ?? 0) };
      }),
    );
    const live = rows
      .filter((s) => Number.isFinite(s.starts) && s.starts <= now && (s.ends === 0 || s.ends > now) && Number.isFinite(s.stock))
      .sort((a, b) => b.starts - a.starts)
      .slice(0, this.o.salesMax);
    return Promise.all(
      live.map(async (s) => {
        const keys = saleKeys(prefix, s.saleId);
        const [inflight, oldest] = await Promise.all([redis.zcard(keys.inflight), redis.zrange(keys.inflight, '0', '0', 'WITHSCORES')]);
        const oldestMs = oldest[1] === undefined ? now : Number(oldest[1]);
        return { saleId: s.saleId, stock: s.stock, remaining: s.remaining, held: s.held, inflight, oldestInflightS: Math.max(0, (now - oldestMs) / 1000) };
      }),
    );
  }

  private register(registry: Registry): void {
    const read = () => this.read();
    new Gauge({
      name: `${METRIC_PREFIX}queue_messages`,
      help: 'Messages ready in a queue (polled from the broker at a bounded rate)',
      labelNames: ['queue'] as const,
      registers: [registry],
      async collect() {
        const r = await read();
        this.reset();
        for (const q of r.queues) this.set({ queue: q.queue }, q.messages);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}queue_consumers`,
      help: 'Consumers of a queue (polled from the broker at a bounded rate)',
      labelNames: ['queue'] as const,
      registers: [registry],
      async collect() {
        const r = await read();
        this.reset();
        for (const q of r.queues) this.set({ queue: q.queue }, q.consumers);
      },
    });
    const perSale = (name: string, help: string, pick: (s: SaleReading) => number) =>
      new Gauge({
        name: `${METRIC_PREFIX}${name}`,
        help,
        labelNames: ['sale'] as const,
        registers: [registry],
        async collect() {
          const r = await read();
          this.reset();
          for (const s of r.sales) this.set({ sale: s.saleId }, pick(s));
        },
      });
    perSale('sale_stock_units', 'Stock of a live sale, units', (s) => s.stock);
    perSale('sale_remaining_units', 'Units of a live sale not yet sold (units held by queued requests included), units', (s) => s.remaining);
    perSale('sale_held_units', 'Units of a live sale held by admitted requests not yet decided, units', (s) => s.held);
    perSale('sale_inflight_requests', 'Admitted requests of a live sale not yet decided, count', (s) => s.inflight);
    new Gauge({
      name: `${METRIC_PREFIX}oldest_inflight_seconds`,
      help: 'Age of the oldest admitted request not yet decided, over the live sales, s',
      registers: [registry],
      async collect() {
        const r = await read();
        this.set(r.sales.reduce((m, s) => Math.max(m, s.oldestInflightS), 0));
      },
    });
  }
}
