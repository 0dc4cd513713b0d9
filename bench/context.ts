/**
 * What every step of `npm run bench` shares: the system under test, its configuration, the shoppers, the checks,
 * and the process groups whose CPU each step measures.
 */
import type { Config } from '../core/config.ts';
import type { Checks } from './checks.ts';
import { listenerTree, type ProcessGroup } from './cpu.ts';
import type { Shoppers } from './load.ts';
import type { Settings } from './settings.ts';
import type { BenchSystem } from './system.ts';

export interface Bench {
  sys: BenchSystem;
  config: Config;
  settings: Settings;
  shoppers: Shoppers;
  checks: Checks;
  /** The API, the ceiling, the worker and the services they use; the load generator is added by each run. */
  groups: ProcessGroup[];
}

const portOf = (url: string, fallback: number) => Number(new URL(url).port) || fallback;

/** The process groups of a system: its own children by pid, the shared services by the port they listen on. */
export function processGroups(sys: BenchSystem, config: Config): ProcessGroup[] {
  const p = sys.pids;
  return [
    { name: 'api', pids: p.api },
    { name: 'bare', pids: p.bare },
    { name: 'worker', pids: p.worker },
    listenerTree('redis', portOf(config.REDIS_URL, 6379)),
    listenerTree('rabbitmq', portOf(config.AMQP_URL, 5672)),
    listenerTree('postgres', portOf(config.DATABASE_URL, 5432)),
  ];
}

/** The CPU shares of a step without the groups that did nothing in it (a stopped worker, an idle ceiling). */
export function busy(cpu: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(cpu).filter(([, share]) => share >= 0.005));
}
