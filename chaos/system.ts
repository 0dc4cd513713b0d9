/**
 * The system a chaos run attacks, all of it private to the run: a Redis node and a RabbitMQ node on free ports with
 * folders under the run's directory, a PostgreSQL database of its own (`flash_sale_chaos_<runId>`, migrated with
 * prisma/migrate.ts), two API nodes and one worker as supervised children with their own key prefix and queue
 * names. `kill(target)` is kill -9 of exactly that target's pids followed by a restart on the same port and data;
 * `stop()` ends every pid the run started, once, also after a failure.
 */
import { join } from 'node:path';
import pg from 'pg';
import { migrate } from '../prisma/migrate.ts';
import { freePort } from '../scripts/local/child.ts';
import { startRabbitNode, type RabbitNode } from '../scripts/local/rabbitmq-node.ts';
import { startRedisNode, type RedisNode } from '../scripts/local/redis-node.ts';
import type { Target } from './schedule.ts';
import { logHas, Supervised, type ProcessEvent } from './supervisor.ts';

export const ADMIN_TOKEN = 'chaos-admin-token-0123456789';
export const JWT_SECRET = 'chaos-jwt-secret-0123456789-0123456789';

export interface ChaosSystem {
  runId: string;
  dir: string;
  redis: RedisNode;
  broker: RabbitNode;
  apis: Supervised[];
  worker: Supervised;
  apiUrls: string[];
  databaseUrl: string;
  redisPrefix: string;
  events: ProcessEvent[];
  /** kill -9 of the target, a restart after `restartDelayMs`; resolves with the time it is back (ms since epoch). */
  kill(target: Target, restartDelayMs: number): Promise<number>;
  /** Every log file of the run, by process name. */
  logs(): Record<string, string>;
  /** Ends every process the run started (by pid); safe to call twice. */
  stop(): Promise<void>;
  /** Synchronous SIGKILL of whatever is still running, for a harness that is exiting right now. */
  killAllNow(): void;
  /** Drops the run's database (after a passing run). */
  dropDatabase(): Promise<void>;
}


/**
 * Starts the whole system and waits until both API nodes answer /readyz and the worker consumes.
 * @param onStarted - receives the system as soon as its first process exists, so a Ctrl-C during start-up can end it.
 */
export async function startSystem(runId: string, dir: string, onStarted: (s: Partial<ChaosSystem> & { stopParts: () => Promise<void>; killParts: () => void }) => void): Promise<ChaosSystem> {
  const parts: { redis?: RedisNode; broker?: RabbitNode; apps: Supervised[] } = { apps: [] };
  const stopParts = async () => {
    await Promise.all(parts.apps.map((a) => a.stop()));
    await Promise.all([parts.redis?.stop(), parts.broker?.stop()]);
  };
  const killParts = () => {
    for (const a of parts.apps) a.killNow();
    for (const pid of [parts.redis?.child?.pid, parts.broker?.child?.pid]) {
      if (pid)
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          /* gone */
        }
    }
  };
  onStarted({ stopParts, killParts });

  const databaseUrl = process.env.CHAOS_DATABASE_URL ?? `postgresql://postgres@127.0.0.1:5432/flash_sale_chaos_${runId}`;
  const [redisPort, amqpPort, distPort, api1Port, api2Port, workerMetricsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
  const migrated = migrate(databaseUrl);
  parts.redis = await startRedisNode({ port: redisPort, dir: join(dir, 'redis'), readyTimeoutMs: 30_000 });
  parts.broker = await startRabbitNode({ name: `rchaos${runId}`, port: amqpPort, distPort, dir: join(dir, 'rabbitmq') });
  await migrated;

  const redisPrefix = `chaos:${runId}`;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'development',
    DATABASE_URL: databaseUrl,
    REDIS_URL: parts.redis.url,
    AMQP_URL: parts.broker.url,
    REDIS_KEY_PREFIX: redisPrefix,
    AMQP_PREFIX: `chaos.${runId}`,
    ADMIN_TOKEN,
    JWT_SECRET,
    LOG_LEVEL: 'info',
    WORKER_METRICS_PORT: String(workerMetricsPort),
    // Every simulated shopper comes from one address: per-IP limits would refuse the crowd, not test the faults.
    RATE_LIMITS: 'off',
  };
  const events: ProcessEvent[] = [];
  const apiUrls = [`http://127.0.0.1:${api1Port}`, `http://127.0.0.1:${api2Port}`];
  const apis = [api1Port, api2Port].map(
    (port, i) =>
      new Supervised(`api${i + 1}`, 'api/main.ts', { ...env, PORT: String(port) }, join(dir, `api${i + 1}.log`), events, async () =>
        fetch(`${apiUrls[i]}/readyz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.status === 200, () => false),
      ),
  );
  const workerLog = join(dir, 'worker.log');
  const worker = new Supervised('worker', 'worker/main.ts', env, workerLog, events, (offset) => logHas(workerLog, offset, 'worker consuming'));
  parts.apps.push(...apis, worker);
  for (const app of parts.apps) app.start();
  await Promise.all(parts.apps.map((a) => a.waitReady(90_000)));

  const redis = parts.redis;
  const broker = parts.broker;
  let stopped: Promise<void> | undefined;
  const recovering = new Map<Target, Promise<number>>();
  const killOnce = async (target: Target, restartDelayMs: number): Promise<number> => {
    switch (target) {
      case 'api1':
      case 'api2':
        return apis[target === 'api1' ? 0 : 1]!.killAndRestart(restartDelayMs);
      case 'worker':
        return worker.killAndRestart(restartDelayMs);
      case 'redis':
        return restartNode('redis', redis, restartDelayMs, events);
      case 'broker':
        return restartNode('broker', broker, restartDelayMs, events);
    }
  };
  return {
    runId,
    dir,
    redis,
    broker,
    apis,
    worker,
    apiUrls,
    databaseUrl,
    redisPrefix,
    events,
    kill(target, restartDelayMs) {
      // One fault at a time per target: a kill scheduled while the target is still coming back waits for it.
      const previous = recovering.get(target) ?? Promise.resolve(0);
      const next = previous.then(() => killOnce(target, restartDelayMs));
      recovering.set(target, next.catch(() => 0));
      return next;
    },
    logs: () => ({ api1: apis[0]!.logPath, api2: apis[1]!.logPath, worker: workerLog, redis: redis.logPath, broker: broker.logPath }),
    stop: () => (stopped ??= stopParts()),
    killAllNow: killParts,
    async dropDatabase() {
      if (process.env.CHAOS_DATABASE_URL) return;
      const admin = new URL(databaseUrl);
      const name = admin.pathname.slice(1);
      admin.pathname = '/postgres';
      const client = new pg.Client({ connectionString: admin.toString() });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).finally(() => client.end());
    },
  };
}

async function restartNode(name: string, node: RedisNode | RabbitNode, delayMs: number, events: ProcessEvent[]): Promise<number> {
  const pids = 'pids' in node ? await node.pids() : [];
  await node.kill();
  events.push({ at: Date.now(), name, what: 'kill', detail: `pids ${[pids].flat().join(',')}` });
  await new Promise((r) => setTimeout(r, delayMs));
  events.push({ at: Date.now(), name, what: 'start' });
  await node.restart().catch(async (err: Error) => {
    events.push({ at: Date.now(), name, what: 'exit', detail: `restart failed, trying again: ${err.message}` });
    await node.restart();
  });
  const at = Date.now();
  events.push({ at, name, what: 'ready' });
  return at;
}
