/**
 * One Prometheus registry per process (API or worker), with Node's default metrics (event-loop lag, GC, heap, CPU).
 * A registry of its own rather than prom-client's global one: tests run an API and a worker in one process, and
 * each must count only what it did. Names follow https://prometheus.io/docs/practices/naming/ (base units:
 * seconds; counters end in `_total`).
 */
import { Registry, collectDefaultMetrics } from 'prom-client';

/** Every metric of ours starts with this. */
export const METRIC_PREFIX = 'flashsale_';

/**
 * Latency buckets, s, that resolve 1-100 ms (the API's answers and publisher confirms) and still place the tail
 * up to 10 s.
 */
export const FAST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** Buckets of accepted→final latency, s: from a few ms (a quiet system) to minutes (a retry tier or a backlog). */
export const END_TO_END_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** Creates a registry holding Node's default metrics. */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}
