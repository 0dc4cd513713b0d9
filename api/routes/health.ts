/**
 * Liveness and readiness: `/healthz` answers while the process runs; `/readyz` answers 200 only when PostgreSQL
 * (with its schema), Redis (on a cluster: `cluster_state:ok`) and RabbitMQ all answer and the process is not
 * shutting down, else 503 naming what is missing and why.
 */
import { Router } from 'express';
import { schemaProblem } from '../../core/db/schema-check.ts';
import { redisProblem } from '../../core/redis/client.ts';
import type { ApiDeps } from '../deps.ts';

const CHECK_TIMEOUT_MS = 1000;
/** A schema found complete stays complete: it is checked again only until it was once. */
let schemaOk = false;

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error('timeout')), ms).unref())]);
}

/** @param draining - true once shutdown began: readiness turns 503 first, so a load balancer stops sending. */
export function healthRoutes(d: ApiDeps, draining: () => boolean = () => false): Router {
  const r = Router();
  r.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  r.get('/readyz', async (_req, res) => {
    const probes: Record<string, () => Promise<string | undefined>> = {
      postgres: async () => {
        if (schemaOk) return void (await d.db.$queryRaw`SELECT 1`);
        const problem = await schemaProblem(d.db);
        schemaOk = problem === undefined;
        return problem;
      },
      redis: () => redisProblem(d.redis),
      rabbitmq: async () => (d.broker.ready ? undefined : 'not connected'),
    };
    const results = await Promise.all(
      Object.entries(probes).map(async ([name, check]) => {
        try {
          const problem = await within(check(), CHECK_TIMEOUT_MS);
          return [name, problem] as const;
        } catch (err) {
          return [name, (err as Error).message || 'no answer'] as const;
        }
      }),
    );
    const checks = Object.fromEntries(results.map(([n, p]) => [n, p === undefined ? 'up' : 'down']));
    const down = results.filter(([, p]) => p !== undefined).map(([n, p]) => `${n} (${p})`);
    if (draining()) down.unshift('this node is shutting down');
    if (down.length) {
      res.status(503).set('Retry-After', '1').type('application/problem+json').json({
        type: '/problems/service-unavailable',
        title: 'Service temporarily unavailable',
        status: 503,
        detail: `Unavailable: ${down.join(', ')}.`,
        checks,
      });
      return;
    }
    res.json({ status: 'ready', checks });
  });
  return r;
}
