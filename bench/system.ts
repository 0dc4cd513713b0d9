/**
 * The system under test for one benchmark run. The API, the bare ceiling and the worker run as child processes so
 * that they do not share an event loop with the load generator; all use a Redis key prefix and RabbitMQ names of
 * their own, so nothing else on the shared services is touched. `stop()` removes what the run created (children,
 * queues and exchanges, Redis keys, the run's rows in PostgreSQL), is safe after any failure, and runs once.
 */
import amqp, { type ChannelModel } from 'amqplib';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { topologyFor } from '../core/amqp/topology.ts';
import type { Config } from '../core/config.ts';
import type { PurchaseState } from '../core/purchase-state.ts';
import { purchaseKey, saleKeys } from '../core/redis/keys.ts';
import { freePort } from '../scripts/local/child.ts';

/**
 * The checkout whose API and worker are measured: this one, or BENCH_SYSTEM_ROOT (another checkout with its own
 * node_modules, e.g. an older commit in a git worktree), so the same harness measures a before and an after.
 */
const ROOT = process.env.BENCH_SYSTEM_ROOT || fileURLToPath(new URL('..', import.meta.url));
const HARNESS_ROOT = fileURLToPath(new URL('..', import.meta.url));
/**
 * Run the compiled JavaScript (`npm run build`, as the image does) unless BENCH_TSX=1 asks for the TypeScript
 * sources under tsx (what `npm run api` runs).
 */
const COMPILED = process.env.BENCH_TSX !== '1';

let built = false;
/**
 * Builds this checkout's dist/ (`npm run build`), once per benchmark process, before the first system starts: every
 * benchmark measures what the source says, never an older build. Not under BENCH_TSX=1, nor for BENCH_SYSTEM_ROOT
 * (another checkout, built by whoever made it).
 */
function buildOnce(): void {
  if (built || !COMPILED || process.env.BENCH_SYSTEM_ROOT) return;
  console.log('npm run build...');
  execFileSync('npm', ['run', '-s', 'build'], { cwd: HARNESS_ROOT, stdio: 'inherit' });
  built = true;
}

/** The command line of a process of the system: its compiled file under dist/, or its source under tsx. */
function entry(source: string, root: string): string[] {
  return COMPILED ? [`${root}/dist/${source.replace(/\.ts$/, '.js')}`] : ['--import', 'tsx', source];
}
/** Time a child gets to exit after SIGTERM before SIGKILL, ms (the API's own grace is 10 s). */
const STOP_GRACE_MS = 20_000;
const READY_TIMEOUT_MS = 60_000;

/** The admin stats of a sale (GET /api/admin/sales/:saleId/stats). */
export interface SaleStats {
  stock: number;
  remaining: number;
  pendingUnits: number;
  inflightRequests: number;
  ordersInDatabase: number;
  unitsInDatabase: number;
  decisions: Partial<Record<'succeeded' | 'sold_out' | 'rejected' | 'failed', number>>;
}

/** A node child (compiled or under tsx) with its output in a log file. */
class Child {
  private readonly proc: ChildProcess;
  private readonly exited: Promise<void>;
  private stopping = false;
  exit: string | undefined;

  constructor(
    readonly name: string,
    args: string[],
    env: NodeJS.ProcessEnv,
    readonly logPath: string,
    cwd = ROOT,
  ) {
    const log = openSync(logPath, 'a');
    // BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", profiles the children (NODE_OPTIONS refuses it).
    const nodeArgs = process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
    this.proc = spawn(process.execPath, [...nodeArgs, ...args], { cwd, env, stdio: ['ignore', log, log] });
    closeSync(log);
    this.exited = new Promise((resolve) =>
      this.proc.once('exit', (code, signal) => {
        this.exit = signal ?? `exit code ${code}`;
        resolve();
      }),
    );
  }

  get pid(): number | undefined {
    return this.exit ? undefined : this.proc.pid;
  }

  /** Set when the child ended without being asked to. */
  get crashed(): string | undefined {
    return this.exit && !this.stopping ? `${this.name} ended (${this.exit}); see ${this.logPath}:\n${tail(this.logPath)}` : undefined;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.exit) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), STOP_GRACE_MS);
    await this.exited;
    clearTimeout(timer);
  }
}

function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '';
  }
}


async function waitReady(child: Child, url: string, ready: (status: number) => boolean): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.crashed) throw new Error(child.crashed);
    const status = await fetch(url).then((r) => r.status, () => 0);
    if (ready(status)) return;
    if (Date.now() > deadline) throw new Error(`${child.name} not ready at ${url} after ${READY_TIMEOUT_MS} ms; see ${child.logPath}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export class BenchSystem {
  readonly redis: Redis;
  private readonly db: pg.Pool;
  private amqpConn: ChannelModel | undefined;
  private worker: Child | undefined;
  private readonly saleIds: string[] = [];
  private readonly extraApis: Child[] = [];
  private stopped: Promise<void> | undefined;

  private constructor(
    readonly config: Config,
    private readonly env: NodeJS.ProcessEnv,
    private readonly logPrefix: string,
    private readonly api: Child,
    private readonly bare: Child,
    readonly apiUrl: string,
    readonly bareUrl: string,
  ) {
    this.redis = new Redis(config.REDIS_URL, { enableAutoPipelining: true, maxRetriesPerRequest: 3 });
    this.db = new pg.Pool({ connectionString: config.DATABASE_URL, max: 2 });
  }

  /**
   * Starts the API and the bare ceiling (built first, see buildOnce). `env` is the children's whole environment;
   * `config` is the same, parsed.
   * Child output goes to `<logPrefix>-<name>.log`. On failure the children are stopped before the error is thrown.
   */
  static async start(config: Config, env: NodeJS.ProcessEnv, logPrefix: string): Promise<BenchSystem> {
    buildOnce();
    const [apiPort, barePort] = [await freePort(), await freePort()];
    const api = new Child('api', entry('api/main.ts', ROOT), { ...env, PORT: String(apiPort) }, `${logPrefix}-api.log`);
    // The ceiling is Express's own JavaScript either way: tsx only transpiles the few lines of its file at start.
    const bare = new Child('bare', ['--import', 'tsx', 'bench/bare-server.ts'], { ...env, PORT: String(barePort) }, `${logPrefix}-bare.log`, HARNESS_ROOT);
    const sys = new BenchSystem(config, env, logPrefix, api, bare, `http://127.0.0.1:${apiPort}`, `http://127.0.0.1:${barePort}`);
    try {
      await sys.vacuum();
      await Promise.all([
        waitReady(api, `${sys.apiUrl}/readyz`, (s) => s === 200),
        waitReady(bare, `${sys.bareUrl}/`, (s) => s > 0),
      ]);
    } catch (err) {
      await sys.stop();
      throw err;
    }
    return sys;
  }

  /**
   * Starts another API process on the same names with `env` on top (e.g. METRICS=false), for a side-by-side run;
   * `root` runs another checkout's API (with its own node_modules and build), e.g. a before beside an after.
   * @returns its base URL. It is stopped with the system.
   */
  async startApi(name: string, env: NodeJS.ProcessEnv, root = ROOT): Promise<string> {
    const port = await freePort();
    const child = new Child(name, entry('api/main.ts', root), { ...this.env, ...env, PORT: String(port) }, `${this.logPrefix}-${name}.log`, root);
    this.extraApis.push(child);
    const url = `http://127.0.0.1:${port}`;
    await waitReady(child, `${url}/readyz`, (s) => s === 200);
    return url;
  }

  /** Starts one worker process; it starts consuming the backlog as soon as it has connected. */
  startWorker(): void {
    if (this.worker && !this.worker.exit) throw new Error('a worker is running already');
    this.worker = new Child('worker', entry('worker/main.ts', ROOT), this.env, `${this.logPrefix}-worker.log`);
  }

  /** Stops the worker (gracefully: it settles what it holds). */
  async stopWorker(): Promise<void> {
    await this.worker?.stop();
  }

  /** The pid of the extra API process named `name` (see startApi), while it runs. */
  extraApiPids(name: string): () => number[] {
    return () => this.extraApis.filter((c) => c.name === name && c.pid).map((c) => c.pid!);
  }

  /** Pids for CPU measurements: the API, the ceiling and the worker (while each runs). */
  get pids(): { api: () => number[]; bare: () => number[]; worker: () => number[] } {
    const of = (c: Child | undefined) => () => (c?.pid ? [c.pid] : []);
    return { api: of(this.api), bare: of(this.bare), worker: () => of(this.worker)() };
  }

  /** A message for each child that ended without being asked to. */
  crashes(): string[] {
    return [this.api, this.bare, this.worker, ...this.extraApis].flatMap((c) => (c?.crashed ? [c.crashed] : []));
  }

  async createSale(body: { name: string; stock: number; perUserLimit?: number }): Promise<string> {
    const res = await this.admin('/api/admin/sales', { method: 'POST', body: JSON.stringify(body) });
    const json = (await res.json()) as { id?: string };
    if (res.status !== 201 || !json.id) throw new Error(`create sale: ${res.status} ${JSON.stringify(json)}`);
    this.saleIds.push(json.id);
    return json.id;
  }

  /** Ends a sale now (POST /api/admin/sales/:saleId/end): a step closes its sale once it is measured. */
  async endSale(saleId: string): Promise<void> {
    const res = await this.admin(`/api/admin/sales/${saleId}/end`, { method: 'POST' });
    if (res.status !== 200) throw new Error(`end sale: ${res.status} ${await res.text()}`);
  }

  async stats(saleId: string): Promise<SaleStats> {
    const res = await this.admin(`/api/admin/sales/${saleId}/stats`);
    if (res.status !== 200) throw new Error(`stats: ${res.status} ${await res.text()}`);
    return (await res.json()) as SaleStats;
  }

  /** Admitted requests of a sale not yet decided (read from Redis: cheaper than the stats while polling). */
  inflight(saleId: string): Promise<number> {
    return this.redis.zcard(saleKeys(this.config.REDIS_KEY_PREFIX, saleId).inflight);
  }

  /** Requests of a sale decided in Redis: once nothing is in flight, every request the sale ever admitted. */
  decided(saleId: string): Promise<number> {
    return this.redis.hlen(saleKeys(this.config.REDIS_KEY_PREFIX, saleId).decided);
  }

  /** Purchase states by requestId; undefined where Redis has none. */
  async states(saleId: string, requestIds: string[]): Promise<(PurchaseState | undefined)[]> {
    const out: (PurchaseState | undefined)[] = [];
    for (let i = 0; i < requestIds.length; i += 5000) {
      const bodies = await Promise.all(requestIds.slice(i, i + 5000).map((id) => this.redis.hget(purchaseKey(this.config.REDIS_KEY_PREFIX, saleId, id), 'body')));
      out.push(...bodies.map((b) => (b ? (JSON.parse(b) as PurchaseState) : undefined)));
    }
    return out;
  }

  /** Messages ready in the purchase queue. */
  async queueDepth(): Promise<number> {
    this.amqpConn ??= await amqp.connect(this.config.AMQP_URL);
    const ch = await this.amqpConn.createChannel();
    try {
      return (await ch.checkQueue(topologyFor(this.config).purchaseQueue)).messageCount;
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  stop(): Promise<void> {
    this.stopped ??= this.teardown();
    return this.stopped;
  }

  private async teardown(): Promise<void> {
    const problems: string[] = [];
    const attempt = (what: string, p: Promise<unknown>) => p.catch((err: Error) => problems.push(`${what}: ${err.message}`));
    // Close the run's sales while the API still answers, so nothing is admitted during the cleanup.
    if (this.api && !this.api.crashed) for (const id of this.saleIds) await attempt(`end sale ${id}`, this.endSale(id));
    // Consumers and publishers first, or they would declare the topology again.
    await Promise.all([this.worker, this.api, this.bare, ...this.extraApis].map((c) => c && attempt(`stop ${c.name}`, c.stop())));
    await attempt('delete RabbitMQ queues', this.deleteTopology());
    await attempt('delete Redis keys', this.deleteRedisKeys());
    await attempt('delete PostgreSQL rows', this.deleteRows());
    await attempt('vacuum', this.vacuum());
    await this.amqpConn?.close().catch(() => undefined);
    this.redis.disconnect();
    await this.db.end().catch(() => undefined);
    if (problems.length) console.error(`Cleanup was incomplete:\n  ${problems.join('\n  ')}`);
  }

  private async deleteTopology(): Promise<void> {
    this.amqpConn ??= await amqp.connect(this.config.AMQP_URL);
    const t = topologyFor(this.config);
    const queues = [t.purchaseQueue, t.purchaseDeadQueue, t.reservationDelayQueue, t.reservationExpiryQueue, t.reservationDeadQueue, ...t.retryQueues.map((r) => r.name), ...t.reservationRetryQueues.map((r) => r.name)];
    const ops = [
      ...queues.map((q) => [q, (ch: amqp.Channel) => ch.deleteQueue(q)] as const),
      ...[t.purchaseExchange, t.reservationExchange, t.deadExchange].map((x) => [x, (ch: amqp.Channel) => ch.deleteExchange(x)] as const),
    ];
    const failed: string[] = [];
    // A failed operation closes its channel, so each gets its own.
    for (const [name, op] of ops) {
      const ch = await this.amqpConn.createChannel();
      ch.on('error', () => undefined);
      await op(ch).catch((err: Error) => failed.push(`${name} (${err.message})`));
      await ch.close().catch(() => undefined);
    }
    if (failed.length) throw new Error(failed.join(', '));
  }

  private async deleteRedisKeys(): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${this.config.REDIS_KEY_PREFIX}:*`, 'COUNT', 5000);
      cursor = next;
      if (keys.length) await this.redis.unlink(...keys);
    } while (cursor !== '0');
  }

  /**
   * Ends and deletes every sale made so far, with their rows, and vacuums: between two runs of the sequence, so each
   * measures against the same tables (a run writes about 110,000 purchases and orders; three runs of them outgrew
   * PostgreSQL's buffers here and halved the next drain). Their Redis keys go with the system's.
   */
  async clearSales(): Promise<void> {
    for (const id of this.saleIds) await this.endSale(id).catch(() => undefined);
    await this.deleteRows();
    this.saleIds.length = 0;
    await this.vacuum();
  }

  /**
   * Vacuums the tables the runs write: the dead rows of earlier runs (each run deletes what it wrote) would make
   * every insert of this one walk bloated indexes, and a PostgreSQL with autovacuum off (as on the machine these
   * figures come from) never removes them. So every run starts from the same state.
   */
  private async vacuum(): Promise<void> {
    await this.db.query('VACUUM (ANALYZE) purchases, orders, sales, waiting_rooms');
  }

  private async deleteRows(): Promise<void> {
    if (!this.saleIds.length) return;
    for (const table of ['purchases', 'orders', 'waiting_rooms']) await this.db.query(`DELETE FROM ${table} WHERE sale_id = ANY($1::uuid[])`, [this.saleIds]);
    await this.db.query('DELETE FROM sales WHERE id = ANY($1::uuid[])', [this.saleIds]);
  }

  private admin(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.apiUrl}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${this.config.ADMIN_TOKEN}`, 'content-type': 'application/json' },
    });
  }
}
