/**
 * A whole system for one test file: the real API (listening on a free port) and, unless asked otherwise, a real
 * worker, on their own Redis key prefix and RabbitMQ queue names, against the shared test database. Files run in
 * parallel without seeing each other's keys or messages; `stop()` removes what the file created in Redis and
 * RabbitMQ.
 *
 * `TEST_API_NODES=n` runs n API nodes in the process behind a round-robin TCP proxy (each connection to `url` goes
 * to the next node; supertest opens one per request, so consecutive requests reach different nodes), and
 * `TEST_WORKERS=n` runs n workers; `npm run test:cluster` sets both to 2. The default is one of each.
 */
import { randomBytes } from 'node:crypto';
import type { RedisClient } from '../../core/redis/client.ts';
import request from 'supertest';
import { loadConfig, type Config } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { isFinal, readState, type PurchaseState } from '../../core/purchase-state.ts';
import { mintToken } from '../../api/auth.ts';
import { startApi, type ApiServer } from '../../api/main.ts';
import { startWorker, type RunningWorker } from '../../worker/main.ts';
import { deleteKeys, deleteTopology } from '../../scripts/local/namespace.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/flash_sale_test';
export const ADMIN_TOKEN = 'test-admin-token-0123456789';

/** How many API nodes and workers each system runs (the harness's own settings, not the product's). */
const nodeCount = (name: string): number => {
  const n = Number(process.env[name] ?? '1');
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, not ${process.env[name]}`);
  return n;
};
export const API_NODES = nodeCount('TEST_API_NODES');
export const WORKERS = nodeCount('TEST_WORKERS');

export interface TestSystem {
  config: Config;
  /** The first API node (the only one by default): its deps are what the tests reach into. */
  api: ApiServer;
  /** Every API node, `api` first. */
  apis: ApiServer[];
  /**
   * The running workers as one (the only one by default): `stop()` stops every one; `deps`, `worker` and `metrics`
   * are the first's. Undefined while none runs.
   */
  worker: RunningWorker | undefined;
  /** Every running worker. */
  workers: RunningWorker[];
  /** Base URL of the API (the round-robin proxy when several nodes run), e.g. http://127.0.0.1:41234. */
  url: string;
  http: ReturnType<typeof request>;
  /** Requests to one node only, bypassing the proxy. */
  httpOf(api: ApiServer): ReturnType<typeof request>;
  /** The first API node's Redis client. */
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
  /**
   * Starts the workers (TEST_WORKERS of them) in place of any before; `env` overrides their configuration (e.g. a
   * DATABASE_URL through a TCP proxy). @returns them as one, as `worker`.
   */
  startWorker(env?: Record<string, string>): Promise<RunningWorker>;
  /** Resolves when a worker emits `event` with arguments for which `match` holds (listens from this call on). */
  workerEvent(event: string, match?: (...args: any[]) => boolean): Promise<unknown[]>;
  /** Records every `event` of the workers from now on; `find` resolves with the first recorded or later match. */
  recordWorkerEvents(event: string): { find(match: (...args: any[]) => boolean): Promise<unknown[]> };
  /** Deletes every Redis key of this system (every master of a cluster, key by key): Redis "forgets everything". */
  wipeRedis(): Promise<void>;
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
  const apis = await Promise.all(Array.from({ length: API_NODES }, () => startApi(config, logger)));
  const api = apis[0]!;
  const proxy: TcpProxy | undefined = apis.length > 1 ? await startTcpProxy(apis.map((a) => a.port)) : undefined;
  const workerConfig = (extra: Record<string, string> = {}) => loadConfig({ ...settings, ...o.workerEnv, ...extra });
  let workers: RunningWorker[] = [];
  const startWorkers = async (extra?: Record<string, string>) => {
    workers = await Promise.all(Array.from({ length: WORKERS }, () => startWorker(workerConfig(extra), logger)));
    return asOne(workers);
  };
  if (o.worker !== false) await startWorkers();
  const url = `http://127.0.0.1:${proxy?.port ?? api.port}`;
  const http = request(url);
  const redis = api.deps.redis;
  /** Listens to `event` on every running worker; @returns a function that stops listening. */
  const onWorkers = (event: string, listener: (...args: any[]) => void) => {
    const ws = workers.map((w) => w.worker);
    if (!ws.length) throw new Error('no worker running');
    for (const w of ws) w.on(event, listener);
    return () => ws.forEach((w) => w.off(event, listener));
  };

  const created: string[] = [];
  const sys: TestSystem = {
    config,
    api,
    apis,
    get worker() {
      return workers.length ? asOne(workers) : undefined;
    },
    get workers() {
      return workers;
    },
    url,
    http,
    httpOf: (a) => request(`http://127.0.0.1:${a.port}`),
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
    startWorker: startWorkers,
    recordWorkerEvents(event) {
      const seen: unknown[][] = [];
      const waiting: { match: (...args: any[]) => boolean; resolve: (args: unknown[]) => void }[] = [];
      onWorkers(event, (...args: unknown[]) => {
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
      return new Promise((resolve) => {
        const off = onWorkers(event, (...args: unknown[]) => {
          if (!match(...args)) return;
          off();
          resolve(args);
        });
      });
    },
    async wipeRedis() {
      await deleteKeys(redis, config.REDIS_KEY_PREFIX);
    },
    async stop() {
      await Promise.all(workers.map((w) => w.stop()));
      const ch = await api.deps.broker.createChannel();
      await deleteTopology(ch, api.deps.topology);
      await ch.close();
      await sys.wipeRedis();
      await Promise.all(apis.map((a) => a.stop()));
      await proxy?.close();
    },
  };
  return sys;
}

/** Several running workers as one: stopping it stops each; the rest is the first's. */
function asOne(workers: RunningWorker[]): RunningWorker {
  if (workers.length === 1) return workers[0]!;
  return { ...workers[0]!, stop: () => Promise.all(workers.map((w) => w.stop())).then(() => undefined) };
}
