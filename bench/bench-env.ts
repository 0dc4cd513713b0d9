/**
 * The environment of a benchmark's own processes (API nodes, workers): production mode (secrets required, no demo
 * login) with fresh secrets, a Redis key prefix and RabbitMQ names of the run's own, and the rate limits off, for
 * the whole load comes from this one address (the load generators keep to the per-shopper limits themselves where
 * that matters).
 */
import { randomBytes } from 'node:crypto';

/** @param tag - names the run's prefix (`fs:bench-<tag>-<id>`). @param extra - variables on top. */
export function benchEnv(tag: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const id = randomBytes(4).toString('hex');
  return {
    ...process.env,
    NODE_ENV: 'production',
    JWT_SECRET: randomBytes(32).toString('hex'),
    ADMIN_TOKEN: randomBytes(16).toString('hex'),
    REDIS_KEY_PREFIX: `fs:bench-${tag}-${id}`,
    AMQP_PREFIX: `fs.bench-${tag}-${id}`,
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    WORKER_METRICS_PORT: '0',
    RATE_LIMITS: 'off',
    ...extra,
  };
}

/** A file-name-safe timestamp of now, e.g. 2026-12-03T18-42-10-123Z. */
export const stampOf = (d = new Date()) => d.toISOString().replace(/[:.]/g, '-');
