/**
 * Fairness of the waiting room against bots, through the real HTTP API with a worker running (`npm run
 * bench:fairness` alone, or `fairness()` as a step of `npm run bench`, after its worker started).
 *
 * Two runs of the same crowd, 500 units (FAIRNESS_UNITS) each:
 *
 * - With a waiting room: 5,000 people (FAIRNESS_PEOPLE) join the pre-queue at random times over a compressed window
 *   (FAIRNESS_WINDOW_S), follow their ticket over its event stream and, once admitted, buy after a human reaction
 *   time (0.3–1.5 s). 50 bots with 20 identities each (FAIRNESS_BOTS, FAIRNESS_IDENTITIES) join in the last 200 ms
 *   before the start (their departures spread over 200 ms and moved earlier by the slowest answer they measured
 *   a few seconds before, so that they land in the pre-queue as late as they can) and then hammer: each identity
 *   polls its ticket at the per-shopper poll limit (10/s) and tries to buy without an admission token at the
 *   purchase limit (2/s), one request in flight at a time, and buys the moment it reads "admitted".
 * - Without one (the contrast): the people press Buy after a reaction time of 0.2–2 s from the opening; the bots
 *   fire at the opening millisecond and retry as fast as the answers come until they get a 202 or a sold-out.
 *
 * Reported: the bots' share of units against their share of tickets (of shoppers, without a room); the goal is no
 * better than their share. After each run the invariants are checked: no oversell, every 202 final, one order per
 * success. The load comes from one address, so the API runs with RATE_LIMITS=off: the bots keep to the limits by
 * their own pacing, the closed loop (one request in flight per identity) bounds them by the server's answers.
 * People's requests go over a connection pool of their own, so no request of theirs waits behind a bot's in this
 * load generator.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Agent, request } from 'undici';
import { mintToken } from '../api/auth.ts';
import { loadConfig, type Config } from '../core/config.ts';
import { isFinal } from '../core/purchase-state.ts';
import { isMain } from '../core/process.ts';
import { migrate } from '../prisma/migrate.ts';
import { Checks, drainedSale, waitDecided, waitFinal } from './checks.ts';
import { openSse } from './sse-client.ts';
import { benchEnv, stampOf } from './bench-env.ts';
import { BenchSystem } from './system.ts';

export interface FairnessOptions {
  people: number;
  bots: number;
  identitiesPerBot: number;
  units: number;
  /** The compressed pre-queue window over which people join, s. */
  windowS: number;
  /** The room's admission rate, a minute; most shoppers inside at once; their session, s. */
  admissionsPerMinute: number;
  maxInside: number;
  sessionSeconds: number;
}

/** One run's outcome. Shares are 0..1. */
export interface FairnessRun {
  label: string;
  tickets: { people: number; bots: number; botsInPrequeue: number };
  units: { people: number; bots: number };
  botTicketShare: number;
  botUnitShare: number;
  accepted: number;
  requests: number;
  /** Connection errors, each retried. */
  errors: number;
  /** First request to sold out and every 202 final, s. */
  durationS: number;
  statuses: Record<string, number>;
}

export interface FairnessResult {
  options: FairnessOptions;
  room: FairnessRun;
  plain: FairnessRun;
}

const num = (name: string, fallback: number) => {
  const n = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number`);
  return n;
};

/** The defaults of the task, overridable from the environment. */
export function fairnessOptions(): FairnessOptions {
  return {
    people: num('FAIRNESS_PEOPLE', 5000),
    bots: num('FAIRNESS_BOTS', 50),
    identitiesPerBot: num('FAIRNESS_IDENTITIES', 20),
    units: num('FAIRNESS_UNITS', 500),
    windowS: num('FAIRNESS_WINDOW_S', 10),
    admissionsPerMinute: num('FAIRNESS_RATE', 6000),
    maxInside: num('FAIRNESS_MAX_INSIDE', 250),
    sessionSeconds: 60,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const until = (t: number) => sleep(t - Date.now());
const uniform = (lo: number, hi: number) => lo + Math.random() * (hi - lo);
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const POLL_EVERY_MS = 100; // RATE_LIMIT_POLL's default 10/1
const TRY_EVERY_MS = 500; // RATE_LIMIT_PURCHASE's default 2/1
const DEADLINE_MS = 180_000;

interface Shopper {
  userId: string;
  token: string;
  bot: boolean;
}

/** The HTTP side of one run: two connection pools, the answers counted, the 202s kept. */
class Client {
  readonly people = new Agent({ connections: 128 });
  readonly bots = new Agent({ connections: 256 });
  readonly statuses: Record<string, number> = {};
  readonly accepted: string[] = [];
  requests = 0;
  /** Connection errors (the request is sent again, with the same Idempotency-Key for a purchase). */
  errors = 0;

  constructor(
    readonly url: string,
    readonly saleId: string,
  ) {}

  async call(who: Shopper, method: 'GET' | 'POST', path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
    this.requests++;
    let res;
    let text;
    for (let attempt = 1; ; attempt++) {
      try {
        res = await request(`${this.url}${path}`, {
          method,
          dispatcher: who.bot ? this.bots : this.people,
          headers: { authorization: `Bearer ${who.token}`, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}), ...headers },
          ...(method === 'POST' ? { body: '{}' } : {}),
        });
        text = await res.body.text();
        break;
      } catch (err) {
        this.errors++;
        const kind = `error ${(err as { code?: string }).code ?? (err as Error).message}`;
        this.statuses[kind] = (this.statuses[kind] ?? 0) + 1;
        if (attempt >= 5) throw err;
        await sleep(100 * attempt);
      }
    }
    let body: any = {};
    try {
      body = JSON.parse(text);
    } catch {
      // an empty or non-JSON answer: counted by status only
    }
    const key = `${res.statusCode}${body?.type ? ` ${String(body.type).replace('/problems/', '')}` : ''}`;
    this.statuses[key] = (this.statuses[key] ?? 0) + 1;
    if (res.statusCode === 202) this.accepted.push(body.requestId);
    return { status: res.statusCode, body };
  }

  /** A purchase attempt; `attempt` names it in its Idempotency-Key, so a re-sent one is the same request. */
  buy(who: Shopper, attempt: number, admissionToken?: string) {
    return this.call(who, 'POST', `/api/sales/${this.saleId}/purchases`, { 'idempotency-key': `${who.userId}-${attempt}`, ...(admissionToken ? { 'admission-token': admissionToken } : {}) });
  }

  async close(): Promise<void> {
    await Promise.all([this.people.close(), this.bots.close()]);
  }
}

/**
 * Follows a ticket's stream until it is admitted or out. @returns the last answer, or undefined when the stream
 * ended first (its lifetime, or a connection error, counted in `errors`).
 */
function followTicket(port: number, path: string, token: string, errors: { count: number; kinds: Record<string, number> }): Promise<any> {
  return new Promise((resolve) => {
    let last: any;
    let done = false;
    let close = () => undefined as void;
    const finish = (v: any) => {
      if (done) return;
      done = true;
      close();
      resolve(v);
    };
    openSse({
      port,
      path,
      token,
      onEvent: (data) => {
        last = JSON.parse(data);
        if (['admitted', 'sold_out', 'done', 'expired'].includes(last.state)) finish(last);
      },
      onEnd: () => finish(undefined),
    }).then(
      (s) => {
        if (s.status !== 200) return finish({ state: `http-${s.status}` });
        close = s.close;
        if (done) s.close();
      },
      (err: { code?: string }) => {
        errors.count++;
        errors.kinds[err.code ?? 'other'] = (errors.kinds[err.code ?? 'other'] ?? 0) + 1;
        finish(undefined);
      },
    );
  });
}

async function mint(config: Config, ids: { userId: string; bot: boolean }[]): Promise<Shopper[]> {
  const out: Shopper[] = [];
  for (let i = 0; i < ids.length; i += 500) {
    out.push(...(await Promise.all(ids.slice(i, i + 500).map(async (s) => ({ ...s, token: (await mintToken(config.JWT_SECRET, s.userId, 3600)).token })))));
  }
  return out;
}

/**
 * Runs both sales (with and without a waiting room) on a running system whose worker is running.
 * @param checks - the invariants checked after each sale are added here (bench/checks.ts). @returns both runs.
 */
export async function fairness(sys: BenchSystem, config: Config, checks: Checks, o: FairnessOptions = fairnessOptions()): Promise<FairnessResult> {
  const runId = randomBytes(3).toString('hex');
  const people = await mint(config, Array.from({ length: o.people }, (_, i) => ({ userId: `fair-${runId}-p${i}`, bot: false })));
  const bots = await mint(config, Array.from({ length: o.bots * o.identitiesPerBot }, (_, i) => ({ userId: `fair-${runId}-b${Math.floor(i / o.identitiesPerBot)}-${i % o.identitiesPerBot}`, bot: true })));
  const db = new pg.Pool({ connectionString: config.DATABASE_URL, max: 2 });

  /** Waits for every 202 final and nothing in flight, checks the invariants (sold out), counts the units per group. */
  async function settle(label: string, saleId: string, client: Client, startedAt: number): Promise<Pick<FairnessRun, 'units' | 'durationS'>> {
    const deadline = Date.now() + DEADLINE_MS;
    const states = await waitFinal(sys, checks, saleId, client.accepted, deadline);
    const durationS = (Date.now() - startedAt) / 1000;
    const open = states.filter((s) => !s || !isFinal(s.status)).length;
    checks.check(`${label}: every 202 final`, open === 0, `${client.accepted.length} accepted, ${open} not final`);
    await waitDecided(sys, checks, [saleId], deadline);
    await drainedSale(sys, checks, label, saleId, { succeeded: o.units });
    const rows = await db.query<{ user_id: string; units: string }>(
      `SELECT user_id, SUM(quantity) AS units FROM orders WHERE sale_id = $1 AND status IN ('pending_payment', 'paid') GROUP BY user_id`,
      [saleId],
    );
    const units = { people: 0, bots: 0 };
    for (const r of rows.rows) units[/-b\d+-\d+$/.test(r.user_id) ? 'bots' : 'people'] += Number(r.units);
    return { units, durationS };
  }

  const port = Number(new URL(sys.apiUrl).port);
  const botCount = bots.length;
  const shoppers = o.people + botCount;
  const runs: { room?: FairnessRun; plain?: FairnessRun } = {};
  try {
    // With a waiting room.
    {
      const label = 'fairness, waiting room';
      const now = Date.now();
      const startsAt = now + 3000 + o.windowS * 1000;
      const body = {
        name: 'bench: fairness, waiting room',
        stock: o.units,
        perUserLimit: 1,
        startsAt: new Date(startsAt).toISOString(),
        waitingRoom: { opensAt: new Date(now).toISOString(), admissionsPerMinute: o.admissionsPerMinute, maxInside: o.maxInside, sessionSeconds: o.sessionSeconds, order: 'fifo' },
      };
      const saleId = await sys.createSale(body);
      const client = new Client(sys.apiUrl, saleId);
      const queue = `/api/sales/${saleId}/queue`;
      const tickets = { people: 0, bots: 0, botsInPrequeue: 0 };
      const streamErrors = { count: 0, kinds: {} as Record<string, number> };
      console.log(`Fairness with a waiting room: ${o.people} people join over ${o.windowS} s, ${o.bots} bots × ${o.identitiesPerBot} identities in the last 200 ms, ${o.units} units, ${o.admissionsPerMinute}/min, ${o.maxInside} inside`);
      const person = async (p: Shopper) => {
        await until(now + 2000 + Math.random() * o.windowS * 1000);
        const joined = await client.call(p, 'POST', queue);
        if (joined.status !== 201 && joined.status !== 200) return;
        tickets.people++;
        for (let i = 0; i < 20; i++) {
          const last = await followTicket(port, `${queue}/events`, p.token, streamErrors);
          if (last?.state === 'admitted') {
            await sleep(uniform(300, 1500));
            await client.buy(p, 1, last.admissionToken);
            return;
          }
          if (last) return; // sold out, expired or refused
        }
      };
      // Bots keep their connections open before the start, and measure how long an answer takes (a read of a ticket
      // they do not have yet: 404), so their joins leave early enough to land in the pre-queue's last 200 ms.
      let lead = 0;
      const warm = (async () => {
        await until(startsAt - 6000);
        const took = await Promise.all(bots.map(async (b) => {
          const t = Date.now();
          await client.call(b, 'GET', `${queue}/me`);
          return Date.now() - t;
        }));
        lead = 2 * Math.max(...took) + 50; // with a margin: answers slow down as the crowd arrives
      })();
      const bot = async (b: Shopper, i: number) => {
        await warm;
        await until(startsAt - lead - 200 + (199 * i) / botCount);
        const joined = await client.call(b, 'POST', queue);
        if (joined.status !== 201 && joined.status !== 200) return;
        tickets.bots++;
        if (joined.body.state === 'prequeue') tickets.botsInPrequeue++;
        let tried = 0;
        let attempts = 0;
        for (let polled = Date.now(); Date.now() < startsAt + DEADLINE_MS; polled = Date.now()) {
          const me = await client.call(b, 'GET', `${queue}/me`);
          if (me.body.state === 'admitted') {
            await client.buy(b, 0, me.body.admissionToken);
            return;
          }
          if (me.status !== 200 || ['sold_out', 'done', 'expired'].includes(me.body.state)) return;
          if (Date.now() - tried >= TRY_EVERY_MS) {
            tried = Date.now();
            await client.buy(b, ++attempts); // without a token: refused, and it changes nothing
          }
          await until(polled + POLL_EVERY_MS);
        }
      };
      await Promise.all([...people.map(person), ...bots.map(bot)]);
      const { units, durationS } = await settle(label, saleId, client, startsAt);
      runs.room = { label, tickets, units, botTicketShare: tickets.bots / (tickets.bots + tickets.people), botUnitShare: units.bots / Math.max(1, units.bots + units.people), accepted: client.accepted.length, requests: client.requests, errors: client.errors + streamErrors.count, durationS, statuses: { ...client.statuses, ...Object.fromEntries(Object.entries(streamErrors.kinds).map(([k, v]) => [`stream error ${k}`, v])) } };
      await client.close();
    }

    // Without a waiting room: the same crowd at the opening.
    {
      const label = 'fairness, no waiting room';
      const startsAt = Date.now() + 3000;
      const saleId = await sys.createSale({ name: 'bench: fairness, no waiting room', stock: o.units, perUserLimit: 1, startsAt: new Date(startsAt).toISOString() } as { name: string; stock: number; perUserLimit: number });
      const client = new Client(sys.apiUrl, saleId);
      console.log(`   without a waiting room: ${o.people} people press Buy 0.2–2 s after the opening, the ${botCount} bot identities fire at the opening millisecond`);
      const until409 = async (s: Shopper, retryMs: () => number) => {
        for (let attempt = 1; ; attempt++) {
          const r = await client.buy(s, attempt);
          if (r.status === 202 || (r.status === 409 && r.body.type !== '/problems/sale-not-active') || Date.now() > startsAt + DEADLINE_MS) return;
          await sleep(retryMs());
        }
      };
      await Promise.all([
        ...people.map(async (p) => {
          await until(startsAt + uniform(200, 2000));
          await until409(p, () => 1000);
        }),
        ...bots.map(async (b) => {
          await until(startsAt);
          await until409(b, () => 0);
        }),
      ]);
      const { units, durationS } = await settle(label, saleId, client, startsAt);
      runs.plain = { label, tickets: { people: o.people, bots: botCount, botsInPrequeue: 0 }, units, botTicketShare: botCount / shoppers, botUnitShare: units.bots / Math.max(1, units.bots + units.people), accepted: client.accepted.length, requests: client.requests, errors: client.errors, durationS, statuses: client.statuses };
      await client.close();
    }
  } finally {
    await db.end();
  }
  for (const r of [runs.room!, runs.plain!]) {
    console.log(`   ${r.label}: bots had ${pct(r.botTicketShare)} of the ${r.label.includes('no') ? 'shoppers' : 'tickets'} (${r.tickets.bots}${r.label.includes('no') ? '' : `, ${r.tickets.botsInPrequeue} in the pre-queue`}) and got ${pct(r.botUnitShare)} of the units (${r.units.bots} of ${r.units.bots + r.units.people}); ${r.requests} requests (${r.errors} connection errors, retried), ${r.accepted} accepted, ${r.durationS.toFixed(1)} s`);
    console.log(`     answers: ${Object.entries(r.statuses).map(([k, v]) => `${k} × ${v}`).join(', ')}`);
  }
  return { options: o, room: runs.room!, plain: runs.plain! };
}

async function main(): Promise<number> {
  // Every simulated shopper and bot shares this one address: the rate limits are off (benchEnv).
  const env = benchEnv('fair');
  const config = loadConfig(env);
  await migrate(config.DATABASE_URL);
  const dir = fileURLToPath(new URL('./results/logs', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const sys = await BenchSystem.start(config, env, `${dir}/${stampOf()}-fairness`);
  const interrupt = (signal: NodeJS.Signals) => {
    console.error(`\n${signal}: cleaning up...`);
    void sys.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt).once('SIGTERM', interrupt);
  try {
    sys.startWorker();
    const checks = new Checks();
    await fairness(sys, config, checks);
    const crashes = sys.crashes();
    if (crashes.length) throw new Error(crashes.join('\n'));
    return checks.ok ? 0 : 1;
  } finally {
    await sys.stop();
  }
}

if (isMain(import.meta.url)) process.exit(await main());
