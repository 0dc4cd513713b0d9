/**
 * Publisher-confirm metrics, from the events the Broker already emits (`published`, `acked`, `nacked`): nothing is
 * added to the publish path itself. Every publish settles (a confirm, a nack, or the publish timeout), so the map of
 * publishes waiting for their confirm never outgrows the publishes in flight.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Broker } from '../amqp/broker.ts';
import { FAST_BUCKETS, METRIC_PREFIX } from './registry.ts';

/**
 * Counts publishes and observes the time from publish to confirm, s.
 * Series: `flashsale_publish_confirm_seconds` (histogram), `flashsale_publishes_total{result="acked|failed"}`.
 * @returns a function that stops listening.
 */
export function observeBroker(broker: Broker, registry: Registry): () => void {
  const confirm = new Histogram({
    name: `${METRIC_PREFIX}publish_confirm_seconds`,
    help: 'Time from publish to the broker\'s positive publisher confirm, s',
    buckets: FAST_BUCKETS,
    registers: [registry],
  });
  const publishes = new Counter({
    name: `${METRIC_PREFIX}publishes_total`,
    help: 'Publishes by result: acked, or failed (nacked, unroutable, timed out, channel lost)',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  publishes.inc({ result: 'acked' }, 0);
  publishes.inc({ result: 'failed' }, 0);
  const started = new Map<string, number>();
  const onPublished = (id: string) => started.set(id, performance.now());
  const onAcked = (id: string) => {
    const t = started.get(id);
    started.delete(id);
    if (t !== undefined) confirm.observe((performance.now() - t) / 1000);
    publishes.inc({ result: 'acked' });
  };
  const onNacked = (id: string) => {
    started.delete(id);
    publishes.inc({ result: 'failed' });
  };
  broker.on('published', onPublished).on('acked', onAcked).on('nacked', onNacked);
  return () => {
    broker.off('published', onPublished).off('acked', onAcked).off('nacked', onNacked);
    started.clear();
  };
}
