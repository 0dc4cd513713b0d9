/**
 * Liveness and readiness: `/healthz` answers while the process runs; `/readyz` answers 200 only when PostgreSQL,
 * Redis and RabbitMQ all answer, else 503 naming the ones that do not.
 */
import { Router } from 'express';
import type { ApiDeps } from '../deps.ts';

const CHECK_TIMEOUT_MS = 1000;

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error('timeout')), ms).unref())]);
}

export function healthRoutes(d: ApiDeps): Router {
  const r = Router();
  r.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  r.get('/readyz', async (_req, res) => {
    const checks = {
      postgres: () => d.db.$queryRaw`SELECT 1`,
      redis: () => d.redis.ping(),
      rabbitmq: async () => {
        if (!d.broker.ready) throw new Error('not connected');
      },
    };
    const results = await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        try {
          await within(check(), CHECK_TIMEOUT_MS);
          return [name, 'up'] as const;
        } catch {
          return [name, 'down'] as const;
        }
      }),
    );
    const down = results.filter(([, s]) => s === 'down').map(([n]) => n);
    if (down.length) {
      res.status(503).set('Retry-After', '1').type('application/problem+json').json({
        type: '/problems/service-unavailable',
        title: 'Service temporarily unavailable',
        status: 503,
        detail: `Unavailable: ${down.join(', ')}.`,
        checks: Object.fromEntries(results),
      });
      return;
    }
    res.json({ status: 'ready', checks: Object.fromEntries(results) });
  });
  return r;
}
