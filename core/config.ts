/**
 * Process configuration: one zod schema over the environment, parsed once, frozen.
 * Nothing else in the codebase reads `process.env`.
 *
 * Local defaults point at 127.0.0.1 so that `npm start` needs no configuration on a development machine; in
 * production (`NODE_ENV=production`) the secrets have no default and the demo login is off unless asked for.
 */
import { z } from 'zod';

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const int = (min: number) => z.coerce.number().int().min(min);

/** A rate limit: one or more windows `points/seconds`, comma separated (e.g. `5/1,30/60`). */
const limit = (fallback: string) =>
  z
    .string()
    .regex(/^\d+\/\d+(,\d+\/\d+)*$/, 'a limit is points/seconds[,points/seconds…], e.g. 5/1,30/60')
    .default(fallback)
    .transform((s) => s.split(',').map((w) => {
      const [points, seconds] = w.split('/').map(Number) as [number, number];
      return { points, seconds };
    }))
    .refine((ws) => ws.every((w) => w.points >= 1 && w.seconds >= 1), 'points and seconds must be at least 1');

/**
 * Express `trust proxy`: a hop count, or a comma-separated list of addresses, CIDR ranges or Express names
 * (loopback, linklocal, uniquelocal). Never `true`: that would take any client's X-Forwarded-For as its address.
 */
const trustProxy = z
  .string()
  .default('loopback')
  .refine((s) => !/^(true|false)$/i.test(s), 'TRUST_PROXY is a hop count or an address list, not true/false')
  .refine((s) => /^\d+$/.test(s) || s.split(',').every((a) => /^[0-9a-fA-F.:/]+$|^(loopback|linklocal|uniquelocal)$/.test(a.trim())), 'TRUST_PROXY: a hop count or addresses/CIDRs/loopback|linklocal|uniquelocal')
  .transform((s) => (/^\d+$/.test(s) ? Number(s) : s.split(',').map((a) => a.trim())));

const schema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    PORT: int(0).max(65535).default(3000),
    DATABASE_URL: z.url().default('postgresql://postgres@127.0.0.1:5432/flash_sale'),
    REDIS_URL: z.url().default('redis://127.0.0.1:6379'),
    /** Seed nodes of a Redis Cluster, `host:port` comma separated; unset: the single Redis at REDIS_URL. */
    REDIS_CLUSTER_NODES: z
      .string()
      .regex(/^[^,:\s]+:\d+(,[^,:\s]+:\d+)*$/, 'REDIS_CLUSTER_NODES must be host:port pairs, comma separated, e.g. 10.0.0.1:7000,10.0.0.2:7000')
      .transform((s) => s.split(','))
      .optional(),
    AMQP_URL: z.url().default('amqp://guest:guest@127.0.0.1:5672'),
    /** The nodes of a RabbitMQ cluster, amqp URLs comma separated; unset: AMQP_URL alone. */
    AMQP_URLS: z
      .string()
      .transform((s) => s.split(',').map((u) => u.trim()).filter(Boolean))
      .pipe(z.array(z.url()).min(1))
      .optional(),
    JWT_SECRET: z.string().min(32, 'JWT_SECRET must be at least 32 characters').optional(),
    ADMIN_TOKEN: z.string().min(16, 'ADMIN_TOKEN must be at least 16 characters').optional(),
    DEMO_LOGIN: bool.optional(),
    /** Prefix of every Redis key; the version lets two incompatible builds share one Redis. */
    REDIS_KEY_PREFIX: z.string().regex(/^[a-z0-9:_-]+$/).default('fs:v2'),
    /**
     * Replicas of each quorum queue, count (x-quorum-initial-group-size; 3 on a three-node cluster). Unset: the
     * broker's default (every node of the cluster). Fixed when a queue is first declared: changing it needs new
     * queue names (another AMQP_PREFIX).
     */
    AMQP_QUORUM_SIZE: int(1).max(255).optional(),
    /** Prefix of every exchange and queue name. */
    AMQP_PREFIX: z.string().regex(/^[a-z0-9._-]+$/).default('fs.v1'),
    /** Time a shopper has to pay for a reservation, s. */
    PAYMENT_WINDOW_SECONDS: int(1).default(600),
    /** Delays of the retry tiers, ms, comma separated: one delayed queue per tier. */
    RETRY_DELAYS_MS: z
      .string()
      .regex(/^\d+(,\d+)*$/, 'RETRY_DELAYS_MS must be comma-separated integers, e.g. 1000,5000,30000')
      .default('1000,5000,30000')
      .transform((s) => s.split(',').map(Number)),
    /** Quorum queue x-delivery-limit: deliveries before a crash-looping message is dead-lettered, count. */
    DELIVERY_LIMIT: int(1).default(10),
    /** Unacknowledged deliveries a worker holds, count. */
    WORKER_PREFETCH: int(1).max(65535).default(2000),
    /** Most purchases a worker decides in one batch (one script call per sale, one PostgreSQL statement), count. */
    WORKER_BATCH_SIZE: int(1).default(500),
    /** An admitted request neither decided nor released after this long is re-published by the sweeper, ms. */
    STALE_ADMISSION_MS: int(1000).default(120_000),
    /** How long the API waits for a publisher confirm before answering 503, ms. */
    PUBLISH_TIMEOUT_MS: int(100).default(5000),
    /** Lifetime of a shopper token minted by the demo login, s. */
    SESSION_TTL_SECONDS: int(60).default(12 * 3600),
    /** Lifetime of an idempotency key, s (RFC draft-ietf-httpapi-idempotency-key-header suggests 24 h). */
    IDEMPOTENCY_TTL_SECONDS: int(60).default(24 * 3600),
    /** Interval of the SSE heartbeat comment, ms. */
    SSE_HEARTBEAT_MS: int(100).default(15_000),
    /** Prometheus metrics: `GET /metrics` on the API and on the worker's metrics listener (`false` turns them off). */
    METRICS: bool.default(true),
    /** Port of the worker's metrics listener (0 picks a free port). */
    WORKER_METRICS_PORT: int(0).max(65535).default(9400),
    /** Queue depths and live-sale gauges are read from RabbitMQ and Redis at most this often per process, ms. */
    METRICS_POLL_MS: int(250).default(5000),
    /** Most live sales given series of their own (remaining, held), count: bounds label cardinality. */
    METRICS_SALES_MAX: int(0).max(1000).default(20),
    /** Share of routine answers on the purchase routes that get a request-log line, 0..1 (see api/request-log.ts). */
    REQUEST_LOG_SAMPLE: z.coerce.number().min(0).max(1).default(0.01),
    /** A waiting ticket with no poll or open stream for this long drops out when it reaches the head, s. */
    QUEUE_ABANDON_SECONDS: int(1).default(30),
    /**
     * How often a node advances the serving counter of each sale it streams queue events for, ms; twice this is the
     * admission rate's burst tolerance (see queue-advance-11.lua).
     */
    QUEUE_TICK_MS: int(50).max(10_000).default(250),
    /** Rate limits on (`on`) or off (`off`: load tests from one address). */
    RATE_LIMITS: z.enum(['on', 'off']).default('on'),
    /** Requests per client IP on every route. */
    RATE_LIMIT_IP: limit('50/1,1500/60'),
    /** Purchase attempts per shopper and sale. */
    RATE_LIMIT_PURCHASE: limit('2/1,10/60'),
    /** Status reads and stream opens per shopper. */
    RATE_LIMIT_POLL: limit('10/1,300/60'),
    /** Demo logins per client IP. */
    RATE_LIMIT_LOGIN: limit('3/1,20/60'),
    /** Failed admin-token attempts per client IP before its admin requests are refused. */
    RATE_LIMIT_ADMIN_FAILURES: limit('10/60'),
    /** Which peers may set X-Forwarded-For (see trustProxy). */
    TRUST_PROXY: trustProxy,
    /** Open event streams per shopper per API process, count; the next one gets 429. */
    SSE_STREAMS_PER_SHOPPER: int(1).default(4),
    /** Longest an event stream stays open before the server closes it (the client reconnects), ms. */
    SSE_MAX_LIFETIME_MS: int(1000).default(300_000),
    /** The reconnection delay sent to EventSource in every stream's `retry:` field, ms. */
    SSE_RETRY_MS: int(100).default(2000),
    /** At shutdown, time between /readyz answering 503 and the listener closing, ms (a load balancer's poll interval). */
    SHUTDOWN_DRAIN_MS: int(0).max(60_000).default(0),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .transform((env, ctx) => {
    const production = env.NODE_ENV === 'production';
    if (production && !env.JWT_SECRET) ctx.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: 'required in production' });
    if (production && !env.ADMIN_TOKEN) ctx.addIssue({ code: 'custom', path: ['ADMIN_TOKEN'], message: 'required in production' });
    return {
      ...env,
      JWT_SECRET: env.JWT_SECRET ?? 'development-only-secret-do-not-use-in-production',
      ADMIN_TOKEN: env.ADMIN_TOKEN ?? 'development-admin-token',
      DEMO_LOGIN: env.DEMO_LOGIN ?? !production,
      /** Where Redis is (see core/redis/client.ts). */
      redis: { url: env.REDIS_URL, clusterNodes: env.REDIS_CLUSTER_NODES ?? [] },
      /** Every RabbitMQ node to connect to, in the order given. */
      amqpUrls: env.AMQP_URLS ?? [env.AMQP_URL],
    };
  });

export type Config = Readonly<z.output<typeof schema>>;

/**
 * Parses and validates configuration from an environment map.
 * @param env - variables to read, `process.env` by default; empty strings count as unset.
 * @returns a frozen config object.
 * @throws Error listing every invalid variable, so a misconfigured process fails at start with a clear message.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new Error(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return Object.freeze(parsed.data);
}
