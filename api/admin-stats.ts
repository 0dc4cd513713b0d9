/**
 * The operator dashboard's live numbers: one snapshot a second, computed once per API node however many viewers
 * follow it (and not at all while nobody does), sent to each over one SSE stream.
 *
 * A snapshot: the sales inside their sale window (stock, remaining and held units, admitted requests not yet
 * decided, orders by status), the queues (depth, consumers), rates per second (accepted, sold out and 429/503/5xx
 * answers of this node, from its metrics registry; decisions of every worker, from the sales' decided hashes in
 * Redis), and the accepted→final p50/p99 of the last second across workers (their digests in Redis).
 */
import type { Counter, Histogram } from 'prom-client';
import type { Db } from '../core/db/client.ts';
import { Backlog, type QueueReading } from '../core/metrics/backlog.ts';
import { latencyDigestKey, saleKeys } from '../core/redis/keys.ts';
import { findSale } from '../core/sales.ts';
import type { ApiDeps } from './deps.ts';

/** Interval of the snapshots, ms. */
export const STATS_INTERVAL_MS = 1000;

export interface SaleSnapshot {
  id: string;
  name: string;
  stock: number;
  remaining: number;
  held: number;
  inflight: number;
  orders: { pending_payment: number; paid: number; expired: number };
}

export interface StatsSnapshot {
  at: number;
  sales: SaleSnapshot[];
  queues: QueueReading[];
  /** Per second over the last interval. */
  rates: { accepted: number; soldOut: number; decisions: number; http429: number; http503: number; http5xx: number };
  /** Accepted→final latency of the last second across workers, ms; null without decisions. */
  latency: { count: number; p50: number; p99: number } | null;
}

type Totals = { accepted: number; soldOut: number; http429: number; http503: number; http5xx: number; decided: Map<string, number> };

/** Computes snapshots while anyone listens. */
export class AdminStats {
  private readonly listeners = new Set<(s: StatsSnapshot) => void>();
  private timer: NodeJS.Timeout | undefined;
  private previous: { at: number; totals: Totals } | undefined;
  private latest: StatsSnapshot | undefined;
  private readonly backlog: Backlog;
  private computing = false;

  constructor(private readonly d: Pick<ApiDeps, 'config' | 'db' | 'redis' | 'broker' | 'topology' | 'metrics' | 'logger'>) {
    const c = d.config;
    this.backlog = new Backlog({
      broker: d.broker,
      redis: d.redis,
      topology: d.topology,
      prefix: c.REDIS_KEY_PREFIX,
      amqpPrefix: c.AMQP_PREFIX,
      pollMs: STATS_INTERVAL_MS - 100,
      salesMax: c.METRICS_SALES_MAX,
    });
  }

  /** Follows the snapshots: the latest at once (when there is one), then each new one. @returns unsubscribe. */
  subscribe(listener: (s: StatsSnapshot) => void): () => void {
    this.listeners.add(listener);
    if (this.latest) listener(this.latest);
    if (!this.timer) {
      this.timer = setInterval(() => void this.tick(), STATS_INTERVAL_MS);
      void this.tick();
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.previous = undefined;
    this.latest = undefined;
  }

  private async tick(): Promise<void> {
    if (this.computing) return;
    this.computing = true;
    try {
      const snapshot = await this.compute();
      this.latest = snapshot;
      for (const l of this.listeners) l(snapshot);
    } catch (err) {
      this.d.logger.warn({ err: (err as Error).message }, 'dashboard stats failed; retrying next second');
    } finally {
      this.computing = false;
    }
  }

  private async compute(): Promise<StatsSnapshot> {
    const { db, redis, config } = this.d;
    const prefix = config.REDIS_KEY_PREFIX;
    const reading = await this.backlog.read();
    const ids = reading.sales.map((s) => s.saleId);
    const [records, orders, decided, digests, node] = await Promise.all([
      Promise.all(ids.map((id) => findSale(db, id))),
      ordersBySale(db, ids),
      Promise.all(ids.map((id) => redis.hlen(saleKeys(prefix, id).decided))),
      redis.hgetall(latencyDigestKey(prefix)),
      this.nodeTotals(),
    ]);
    const now = Date.now();
    const totals: Totals = { ...node, decided: new Map(ids.map((id, i) => [id, decided[i]!])) };
    const prev = this.previous;
    const perS = (a: number, b: number | undefined) => (prev && b !== undefined ? Math.max(0, a - b) / ((now - prev.at) / 1000) : 0);
    let decisions = 0;
    for (const [id, n] of totals.decided) decisions += perS(n, prev?.totals.decided.get(id));
    this.previous = { at: now, totals };
    return {
      at: now,
      sales: reading.sales.map((s, i) => ({
        id: s.saleId,
        name: records[i]?.name ?? s.saleId,
        stock: s.stock,
        remaining: s.remaining,
        held: s.held,
        inflight: s.inflight,
        orders: { pending_payment: 0, paid: 0, expired: 0, ...orders.get(s.saleId) },
      })),
      queues: reading.queues,
      rates: {
        accepted: perS(totals.accepted, prev?.totals.accepted),
        soldOut: perS(totals.soldOut, prev?.totals.soldOut),
        decisions,
        http429: perS(totals.http429, prev?.totals.http429),
        http503: perS(totals.http503, prev?.totals.http503),
        http5xx: perS(totals.http5xx, prev?.totals.http5xx),
      },
      latency: mergeDigests(Object.values(digests), now),
    };
  }

  /** This node's counters, from its metrics registry (zeros when METRICS=false). */
  private async nodeTotals(): Promise<Omit<Totals, 'decided'>> {
    const registry = this.d.metrics?.registry;
    const out = { accepted: 0, soldOut: 0, http429: 0, http503: 0, http5xx: 0 };
    if (!registry) return out;
    const admissions = registry.getSingleMetric('flashsale_admissions_total') as Counter | undefined;
    for (const v of (await admissions?.get())?.values ?? []) {
      if (v.labels.outcome === 'accepted') out.accepted += v.value;
      if (v.labels.outcome === 'sold_out') out.soldOut += v.value;
    }
    const http = registry.getSingleMetric('http_request_duration_seconds') as Histogram | undefined;
    for (const v of (await http?.get())?.values ?? []) {
      if (v.metricName !== 'http_request_duration_seconds_count') continue;
      const status = Number(v.labels.status_code);
      if (status === 429) out.http429 += v.value;
      if (status === 503) out.http503 += v.value;
      if (status >= 500) out.http5xx += v.value;
    }
    return out;
  }
}

async function ordersBySale(db: Db, ids: string[]): Promise<Map<string, Record<string, number>>> {
  const out = new Map<string, Record<string, number>>();
  if (ids.length === 0) return out;
  const rows = await db.order.groupBy({ by: ['saleId', 'status'], where: { saleId: { in: ids } }, _count: { _all: true } });
  for (const r of rows) out.set(r.saleId, { ...out.get(r.saleId), [r.status]: r._count._all });
  return out;
}

/** Workers' digests younger than 3 s merged: counts added, p50 weighted by count, p99 the highest. */
function mergeDigests(values: string[], now: number): StatsSnapshot['latency'] {
  let count = 0;
  let p50 = 0;
  let p99 = 0;
  for (const v of values) {
    let d: { at: number; count: number; p50: number; p99: number };
    try {
      d = JSON.parse(v);
    } catch {
      continue;
    }
    if (now - d.at > 3 * STATS_INTERVAL_MS) continue;
    count += d.count;
    p50 += d.p50 * d.count;
    p99 = Math.max(p99, d.p99);
  }
  return count ? { count, p50: p50 / count, p99 } : null;
}
