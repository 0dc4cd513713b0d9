/**
 * A whole system for one test file: the real API (listening on a free port) and, unless asked otherwise, a real
 * worker, on their own Redis key prefix and RabbitMQ queue names, against the shared test database. Files run in
 * parallel without seeing each other's keys or messages; `stop()` removes what the file created in Redis and
 * RabbitMQ.
 */
import { randomBytes } from 'node:crypto';
import { Cluster } from 'ioredis';
import type { RedisClient } from '../../core/redis/client.ts';
import request from 'supertest';
import { loadConfig, type Config } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { isFinal, readState, type PurchaseState } from '../../core/purchase-state.ts';
import { mintToken } from '../../api/auth.ts';
import { startApi, type ApiServer } from '../../api/main.ts';
import { startWorker, type RunningWorker } from '../../worker/main.ts';

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/flash_sale_test';
export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export interface TestSystem {
  config: Config;
  api: ApiServer;
  worker: RunningWorker | undefined;
  /** Base URL of the API, e.g. http://127.0.0.1:41234. */
  url: string;
  http: ReturnType<typeof request>;
  redis: RedisClient;
  /** Creates a sale through the admin API. @returns its id. */
  createSale(body?: Record<string, unknown>): Promise<string>;
  /** Mints a shopper token. */
  token(userId: string): Promise<string>;
  /** Resolves with the final state of a request (subscribes first, then reads: never misses the result). */
  waitForFinal(saleId: string, requestId: string): Promise<PurchaseState>;
  stats(saleId: string): Promise<Record<string, any>>;
  /**
   * Asserts the sale invariant, remaining + units in active orders == stock, for every sale created since the
   * last call (run it after each test).
   */
  assertInvariants(): Promise<void>;
  /** Starts a worker; `env` overrides its configuration (e.g. a DATABASE_URL through a TCP proxy). */
  startWorker(env?: Record<string, string>): Promise<RunningWorker>;
  /** Resolves when the worker emits `event` with arguments for which `match` holds (listens from this call on). */
  workerEvent(event: string, match?: (...args: any[]) => boolean): Promise<unknown[]>;
  /** Records every `event` of the worker from now on; `find` resolves with the first recorded or later match. */
  recordWorkerEvents(event: string): { find(match: (...args: any[]) => boolean): Promise<unknown[]> };
  stop(): Promise<void>;
}

/**
 * Starts a system. @param env - extra environment (e.g. PAYMENT_WINDOW_SECONDS); `worker: false` starts no worker.
 */
export async function startSystem(
  env: Record<string, string> = {},
  o: { worker?: boolean; workerEnv?: Record<string, string> } = {},
): Promise<TestSystem> {
  const id = randomBytes(4).toString('hex');
  const settings = {
    ...process.env,
    NODE_ENV: 'test',
    PORT: '0',
    DATABASE_URL: TEST_DATABASE_URL,
    REDIS_KEY_PREFIX: `fs:test-${id}`,
    AMQP_PREFIX: `fs.test-${id}`,
    ADMIN_TOKEN,
    JWT_SECRET: 'test-secret-0123456789-0123456789-abcdef',
    DEMO_LOGIN: 'true',
    // Every test file sends from 127.0.0.1 at full speed; the files that test the limits turn them on.
    RATE_LIMITS: 'off',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    WORKER_METRICS_PORT: '0',
    METRICS_POLL_MS: '250',
    ...env,
  };
  const config = loadConfig(settings);
  const logger = createLogger('test', config.LOG_LEVEL);
  const api = await startApi(config, logger);
  const workerConfig = (extra: Record<string, string> = {}) => loadConfig({ ...settings, ...o.workerEnv, ...extra });
  let worker = o.worker === false ? undefined : await startWorker(workerConfig(), logger);
  const url = `http://127.0.0.1:${api.port}`;
  const http = request(url);
  const redis = api.deps.redis;

  const created: string[] = [];
  const sys: TestSystem = {
    config,
    api,
    get worker() {
      return worker;
    },
    url,
    http,
    redis,
    async createSale(body = {}) {
      const res = await http
        .post('/api/admin/sales')
        .set('Authorization', `Bearer ${ADMIN_TOKEN}`)
        .send({ name: 'Test sale', stock: 10, ...body });
      if (res.status !== 201) throw new Error(`createSale: ${res.status} ${JSON.stringify(res.body)}`);
      created.push(res.body.id);
      return res.body.id as string;
    },
    async assertInvariants() {
      for (const saleId of created.splice(0)) {
        const s = await sys.stats(saleId);
        if (s.remaining + s.unitsInDatabase !== s.stock || s.unitsInDatabase > s.stock) {
          throw new Error(`sale ${saleId} broke its invariant: ${JSON.stringify(s)}`);
        }
      }
    },
    async token(userId) {
      return (await mintToken(config.JWT_SECRET, userId, 3600)).token;
    },
    waitForFinal(saleId, requestId) {
      return new Promise<PurchaseState>((resolve, reject) => {
        let unsubscribe: (() => void) | undefined;
        let done = false;
        const finish = (s: PurchaseState) => {
          if (done || !isFinal(s.status)) return;
          done = true;
          unsubscribe?.();
          resolve(s);
        };
        const check = () => readState(redis, config.REDIS_KEY_PREFIX, saleId, requestId).then((s) => s && finish(s), reject);
        api.deps.events
          .subscribe(saleId, requestId, (s) => (s === 'resync' ? check() : finish(s)))
          .then((u) => {
            unsubscribe = u;
            if (done) u();
            else return check();
          }, reject);
      });
    },
    async stats(saleId) {
      const res = await http.get(`/api/admin/sales/${saleId}/stats`).set('Authorization', `Bearer ${ADMIN_TOKEN}`);
      if (res.status !== 200) throw new Error(`stats: ${res.status}`);
      return res.body;
    },
    async startWorker(extra) {
      worker = await startWorker(workerConfig(extra), logger);
      return worker;
    },
    recordWorkerEvents(event) {
      const w = worker?.worker;
      if (!w) throw new Error('no worker running');
      const seen: unknown[][] = [];
      const waiting: { match: (...args: any[]) => boolean; resolve: (args: unknown[]) => void }[] = [];
      w.on(event, (...args: unknown[]) => {
        seen.push(args);
        for (const x of waiting.filter((x) => x.match(...args))) {
          waiting.splice(waiting.indexOf(x), 1);
          x.resolve(args);
        }
      });
      return {
        find: (match) => {
          const hit = seen.find((args) => match(...args));
          return hit ? Promise.resolve(hit) : new Promise((resolve) => waiting.push({ match, resolve }));
        },
      };
    },
    workerEvent(event, match = () => true) {
      const w = worker?.worker;
      if (!w) return Promise.reject(new Error('no worker running'));
      return new Promise((resolve) => {
        const listener = (...args: unknown[]) => {
          if (!match(...args)) return;
          w.off(event, listener);
          resolve(args);
        };
        w.on(event, listener);
      });
    },
    async stop() {
      await worker?.stop();
      const ch = await api.deps.broker.createChannel();
      const t = api.deps.topology;
      for (const q of [t.purchaseQueue, t.purchaseDeadQueue, t.reservationDelayQueue, t.reservationExpiryQueue, t.reservationDeadQueue, ...t.retryQueues.map((r) => r.name), ...t.reservationRetryQueues.map((r) => r.name)]) {
        await ch.deleteQueue(q);
      }
      for (const x of [t.purchaseExchange, t.reservationExchange, t.deadExchange]) await ch.deleteExchange(x);
      await ch.close();
      // On a Redis Cluster, SCAN every master and delete key by key (one DEL may not span slots).
      const keys: string[] = [];
      for (const node of redis instanceof Cluster ? redis.nodes('master') : [redis]) {
        let cursor = '0';
        do {
          const [next, batch] = await node.scan(cursor, 'MATCH', `${config.REDIS_KEY_PREFIX}:*`, 'COUNT', 1000);
          cursor = next;
          keys.push(...batch);
        } while (cursor !== '0');
      }
      if (redis instanceof Cluster) await Promise.all(keys.map((k) => redis.del(k)));
      else for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
      await api.stop();
    },
  };
  return sys;
}
