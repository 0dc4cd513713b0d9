/**
 * The API node's metrics, served at `GET /metrics` (Prometheus text format) by the middleware that also times every
 * request (`http_request_duration_seconds{method, path, status_code}`, `path` being the route template, never the
 * URL; the names and labels express-prom-bundle uses). Admission outcomes and payments are read from the finished
 * responses (status, problem slug), so the purchase route itself carries no metrics code. Label values are fixed
 * sets: no user, request or sale ids.
 *
 * The timing is done here rather than with express-prom-bundle: measured in `npm run bench`, its per-request work
 * (on-finished's listeners, a label object hashed on every observation) cost the sold-out path about a quarter of
 * its throughput; here a response costs one `finish` listener and a lookup of the label set's pre-bound child.
 *
 * Series of its own: `flashsale_admissions_total{outcome}`, `flashsale_sold_out_memory_hits_total`,
 * `flashsale_payments_total{outcome}`, `flashsale_sse_streams_open`, plus those of core/metrics (publisher
 * confirms, queues, live sales, rebuilds) and Node's defaults.
 */
import type { Request, RequestHandler, Response } from 'express';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Broker } from '../core/amqp/broker.ts';
import type { Topology } from '../core/amqp/topology.ts';
import type { Config } from '../core/config.ts';
import { Backlog } from '../core/metrics/backlog.ts';
import { observeBroker } from '../core/metrics/broker.ts';
import { observeSaleRebuilds } from '../core/metrics/rebuilds.ts';
import { FAST_BUCKETS, METRIC_PREFIX, createRegistry } from '../core/metrics/registry.ts';
import type { RedisClient } from '../core/redis/client.ts';

export type AdmissionOutcome =
  | 'accepted'
  | 'replayed'
  | 'sold_out'
  | 'duplicate'
  | 'not_active'
  | 'not_found'
  | 'invalid'
  | 'unauthorized'
  | 'rate_limited'
  | 'unavailable'
  | 'error';

const PURCHASE_ROUTE = '/api/sales/:saleId/purchases';
const PAY_ROUTE = '/api/orders/:orderId/pay';

const OUTCOME_OF_SLUG: Record<string, AdmissionOutcome> = {
  'sold-out': 'sold_out',
  'duplicate-purchase': 'duplicate',
  'sale-not-active': 'not_active',
  'sale-not-found': 'not_found',
  unauthorized: 'unauthorized',
  'service-unavailable': 'unavailable',
};

/** The admission outcome of a finished purchase request, from its status and problem slug. */
export function admissionOutcome(res: Response): AdmissionOutcome {
  const status = res.statusCode;
  if (status === 202) return res.getHeader('Idempotent-Replayed') === 'true' ? 'replayed' : 'accepted';
  if (status === 429) return 'rate_limited';
  const slug = res.locals.problem as string | undefined;
  if (slug && OUTCOME_OF_SLUG[slug]) return OUTCOME_OF_SLUG[slug];
  if (status === 503) return 'unavailable';
  if (status >= 400 && status < 500) return 'invalid';
  return 'error';
}

export interface ApiMetrics {
  registry: Registry;
  /** Mount first: serves `/metrics`, times every request, counts admissions, payments and open SSE streams. */
  middleware: RequestHandler;
  /** Queue depths and live sales, read at most once per METRICS_POLL_MS (shared with the dashboard). */
  backlog: Backlog;
  /**
   * Counts a sold-out answer given in front of Express (api/sold-out-shortcut.ts) as the purchase route would have
   * counted it: an admission `sold_out` from memory, and its duration. @param seconds - the answer's duration, s.
   */
  soldOutShortcut(seconds: number): void;
  stop(): void;
}

/** Builds this API node's registry and middleware and starts listening to the broker's and the sales' events. */
export function createApiMetrics(d: { config: Config; broker: Broker; redis: RedisClient; topology: Topology }): ApiMetrics {
  const registry = createRegistry();
  const admissions = new Counter({
    name: `${METRIC_PREFIX}admissions_total`,
    help: 'Purchase requests by admission outcome',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  for (const outcome of ['accepted', 'sold_out', 'duplicate', 'unavailable'] as const) admissions.inc({ outcome }, 0);
  const memoryHits = new Counter({
    name: `${METRIC_PREFIX}sold_out_memory_hits_total`,
    help: 'Sold-out answers given from this process\'s memory, before authentication (part of admissions{outcome="sold_out"})',
    registers: [registry],
  });
  const payments = new Counter({
    name: `${METRIC_PREFIX}payments_total`,
    help: 'Payment attempts by outcome: paid (also a repeated payment), expired (the reservation expired first), other',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const sseOpen = new Gauge({
    name: `${METRIC_PREFIX}sse_streams_open`,
    help: 'Event-stream requests in progress on this node (open streams, and the few ms before one opens)',
    registers: [registry],
  });

  const onFinish = (req: Request, res: Response, route: string | undefined) => {
    if (route === PURCHASE_ROUTE && req.method === 'POST') {
      const outcome = admissionOutcome(res);
      admissions.inc({ outcome });
      // The sold-out memory answers before authentication: no shopper on the request means it came from memory.
      if (outcome === 'sold_out' && req.userId === undefined) memoryHits.inc();
    } else if (route === PAY_ROUTE) {
      payments.inc({ outcome: res.statusCode === 200 ? 'paid' : res.locals.problem === 'order-expired' ? 'expired' : 'other' });
    }
  };

  const http = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Duration of HTTP answers, s, by method, route template (static, or none when no route matched) and status',
    labelNames: ['method', 'path', 'status_code'] as const,
    buckets: FAST_BUCKETS,
    registers: [registry],
  });
  const children = new Map<string, Histogram.Internal<'method' | 'path' | 'status_code'>>();

  const middleware: RequestHandler = (req, res, next) => {
    if (req.url === '/metrics' && req.method === 'GET') {
      registry.metrics().then((text) => res.type(registry.contentType).send(text), next);
      return;
    }
    const start = performance.now();
    const sse = req.method === 'GET' && req.path.endsWith('/events');
    if (sse) {
      sseOpen.inc();
      res.once('close', () => sseOpen.dec());
    }
    res.once('finish', () => {
      const route = routeOf(req);
      const path = route ?? (res.statusCode < 400 ? 'static' : 'none');
      const key = `${req.method} ${res.statusCode} ${path}`;
      let child = children.get(key);
      if (!child) {
        // Bounded: methods x statuses x route templates (+ static, none).
        child = http.labels({ method: req.method, path, status_code: String(res.statusCode) });
        children.set(key, child);
      }
      child.observe((performance.now() - start) / 1000);
      onFinish(req, res, route);
    });
    next();
  };

  const backlog = new Backlog(
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
  const shortcut = { answer: http.labels({ method: 'POST', path: PURCHASE_ROUTE, status_code: '409' }), admission: admissions.labels({ outcome: 'sold_out' }) };
  const soldOutShortcut = (seconds: number) => {
    shortcut.answer.observe(seconds);
    shortcut.admission.inc();
    memoryHits.inc();
  };
  return { registry, middleware, backlog, soldOutShortcut, stop: () => stops.forEach((s) => s()) };
}

/** The route template that answered, e.g. `/api/sales/:saleId/purchases`; undefined when no route matched. */
function routeOf(req: Request): string | undefined {
  const path = req.route?.path as unknown;
  return typeof path === 'string' ? path : undefined;
}
