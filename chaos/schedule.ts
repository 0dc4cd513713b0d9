/**
 * The seeded fault schedule: which process is killed with -9 when, and how long the orchestrator waits before it
 * starts it again. A `combined` fault is two kills a few seconds apart (first an API node, then Redis, the pair that
 * can strand an admission; other pairs by seed), so the second lands while the first is still being recovered.
 */
import type { FaultKind } from './options.ts';
import type { Random } from './random.ts';

export type Target = 'api1' | 'api2' | 'worker' | 'broker' | 'redis';

export interface Kill {
  /** When, ms after the load started. */
  atMs: number;
  target: Target;
  /** Wait between the kill and the restart, ms. */
  restartDelayMs: number;
  /** The schedule entry it belongs to (a combined fault has two kills). */
  fault: FaultKind;
  /** Index of that entry: the kills of one combined fault share it. */
  group: number;
}

/**
 * Spreads one fault of each kind over 10 %-70 % of the run (kills of one fault kind at least `gapMs` apart from the
 * next fault), in a seeded order.
 * @param loadMs - length of the load, ms.
 */
export function buildSchedule(rnd: Random, kinds: readonly FaultKind[], loadMs: number): Kill[] {
  const order = [...kinds];
  for (let i = order.length - 1; i > 0; i--) {
    const j = rnd.int(0, i);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const from = loadMs * 0.1;
  const span = loadMs * 0.6;
  const slot = span / order.length;
  const kills: Kill[] = [];
  const delay = (target: Target) => (target === 'broker' ? rnd.int(500, 2000) : rnd.int(500, 3000));
  const api = (): Target => rnd.pick(['api1', 'api2'] as const);
  order.forEach((fault, i) => {
    const at = Math.round(from + i * slot + rnd.next() * slot * 0.4);
    if (fault === 'combined') {
      const pair: [Target, Target] = i === 0 || rnd.next() < 0.6 ? [api(), 'redis'] : rnd.pick([[api(), 'broker'], ['broker', 'redis'], ['worker', 'redis']] as [Target, Target][]);
      kills.push({ atMs: at, target: pair[0], restartDelayMs: delay(pair[0]), fault, group: i });
      kills.push({ atMs: at + rnd.int(200, 3000), target: pair[1], restartDelayMs: delay(pair[1]), fault, group: i });
    } else {
      const target: Target = fault === 'api' ? api() : fault;
      kills.push({ atMs: at, target, restartDelayMs: delay(target), fault, group: i });
    }
  });
  return kills.sort((a, b) => a.atMs - b.atMs);
}

/** `api1@12.3s+1.2s,redis@14.0s+0.8s`: the schedule as printed in the figure line. */
export function describeSchedule(kills: readonly Kill[]): string {
  return kills.map((k) => `${k.target}@${(k.atMs / 1000).toFixed(1)}s+${(k.restartDelayMs / 1000).toFixed(1)}s`).join(',');
}
