/**
 * Counts the sales this process rebuilt in Redis from PostgreSQL (an epoch bump after Redis lost a sale, or after
 * the epoch fence refused stale decisions), from the `loaded` events of core/sales.ts.
 */
import { Counter, type Registry } from 'prom-client';
import { saleLoads } from '../sales.ts';
import { METRIC_PREFIX } from './registry.ts';

/** Series: `flashsale_sale_rebuilds_total`. @returns a function that stops listening. */
export function observeSaleRebuilds(registry: Registry, prefix: string): () => void {
  const rebuilds = new Counter({
    name: `${METRIC_PREFIX}sale_rebuilds_total`,
    help: 'Sales this process rebuilt in Redis from PostgreSQL under a new epoch, count',
    registers: [registry],
  });
  const onLoaded = (e: { prefix: string; epoch: number }) => {
    if (e.prefix === prefix && e.epoch > 1) rebuilds.inc();
  };
  saleLoads.on('loaded', onLoaded);
  return () => saleLoads.off('loaded', onLoaded);
}
