/**
 * `npm run chaos`: the fault test of the whole system. Starts a private Redis and RabbitMQ, two API nodes and a
 * worker (see system.ts), creates a sale, sends shoppers who retry with their Idempotency-Key (shoppers.ts), kills
 * processes with -9 on a seeded schedule and restarts them as an orchestrator would (schedule.ts), waits for the
 * accepted purchases to drain and checks every invariant (invariants.ts). Prints one figure line; exits 1 on a
 * violated invariant, leaving a diagnosis folder (diagnosis.ts), 2 when the run itself could not be carried out.
 * Everything it started is ended by pid at the end, also on failure and Ctrl-C.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { writeDiagnosis } from './diagnosis.ts';
import { check, drain, type Sale } from './invariants.ts';
import { chaosOptions } from './options.ts';
import { seeded } from './random.ts';
import { buildSchedule, describeSchedule, type Kill } from './schedule.ts';
import { runShoppers } from './shoppers.ts';
import { ADMIN_TOKEN, JWT_SECRET, startSystem, type ChaosSystem } from './system.ts';

const opts = chaosOptions();
const runId = randomBytes(3).toString('hex');
const dir = join(tmpdir(), `flash-sale-chaos-${runId}`);
mkdirSync(dir, { recursive: true });
const rnd = seeded(opts.seed);
const loadMs = opts.seconds * 1000;
const schedule = buildSchedule(rnd, opts.faults, loadMs);
const log = (msg: string) => console.log(`[chaos ${new Date().toISOString().slice(11, 23)}] ${msg}`);
log(`seed ${opts.seed} (CHAOS_SEED=${opts.seed} repeats this schedule), faults ${opts.faults.join(',')}, ${opts.shoppers} shoppers over ${opts.seconds} s; run folder ${dir}`);
log(`schedule ${describeSchedule(schedule)}`);

let sys: ChaosSystem | undefined;
let early: { stopParts: () => Promise<void>; killParts: () => void } | undefined;
const stopAll = () => (sys ? sys.stop() : (early?.stopParts() ?? Promise.resolve()));
let exiting = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (exiting) return;
    exiting = true;
    log(`${signal}: stopping every process the run started`);
    void stopAll().finally(() => process.exit(130));
  });
}
for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
  process.on(event, (err) => {
    console.error(`chaos run could not be carried out (${event}): ${(err as Error).stack ?? String(err)}`);
    void stopAll().finally(() => process.exit(2));
  });
}
process.on('exit', () => (sys ? sys.killAllNow() : early?.killParts()));
// The whole run is bounded: load, the shoppers' last retries, the drain, and start-up and shutdown.
const watchdog = setTimeout(() => {
  log('the run took too long; stopping');
  void stopAll().finally(() => process.exit(2));
}, loadMs + opts.drainSeconds * 1000 + 240_000);
watchdog.unref();

async function createSale(s: ChaosSystem, stock: number): Promise<Sale> {
  const res = await fetch(`${s.apiUrls[0]}/api/admin/sales`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: `chaos ${runId}`, stock, perUserLimit: 2 }),
  });
  const body = (await res.json()) as { id?: string };
  if (res.status !== 201 || !body.id) throw new Error(`create sale: ${res.status} ${JSON.stringify(body)}`);
  return { id: body.id, stock, perUserLimit: 2 };
}

interface FaultRun {
  kill: Kill;
  killedAt: number;
  backAt: number;
}

async function main(): Promise<number> {
  const started = Date.now();
  sys = await startSystem(runId, dir, (parts) => (early = parts));
  log(`system up in ${((Date.now() - started) / 1000).toFixed(1)} s (RabbitMQ node start ${(sys.broker.lastStartMs / 1000).toFixed(1)} s); api ${sys.apiUrls.join(' ')}`);
  // Stock below the units asked for, so the sale sells out near the end and the limit and stock checks bite.
  const sale = await createSale(sys, Math.floor(opts.shoppers * 0.9));
  const s = sys;

  // The harness's own event-loop delay: on a starved machine it stretches every measured time.
  const lag = monitorEventLoopDelay({ resolution: 20 });
  lag.enable();
  const faults: Promise<FaultRun>[] = [];
  const loadStart = Date.now();
  const timers = schedule.map((kill) =>
    setTimeout(() => {
      const killedAt = Date.now();
      log(`kill -9 ${kill.target} (${kill.fault}); restart in ${kill.restartDelayMs} ms`);
      faults.push(
        s.kill(kill.target, kill.restartDelayMs).then((backAt) => {
          log(`${kill.target} back after ${((backAt - killedAt) / 1000).toFixed(1)} s`);
          return { kill, killedAt, backAt };
        }),
      );
    }, kill.atMs),
  );
  const load = await runShoppers({ apiUrls: s.apiUrls, saleId: sale.id, shoppers: opts.shoppers, loadMs, runId, secret: JWT_SECRET, rnd });
  timers.forEach(clearTimeout);
  lag.disable();
  const faultRuns = await Promise.all(faults);
  log(`load done in ${((load.endedAt - loadStart) / 1000).toFixed(1)} s; draining`);
  const { pending, drainedAt } = await drain(s.apiUrls, sale.id, load, opts.drainSeconds * 1000);
  const verdict = await check({ databaseUrl: s.databaseUrl, apiUrls: s.apiUrls, adminToken: ADMIN_TOKEN, sale, load, pendingReads: pending });

  // Recovery: from the moment the last process of a fault is back to the first 202 after it.
  const byFault = new Map<number, FaultRun[]>();
  for (const f of faultRuns) byFault.set(f.kill.group, [...(byFault.get(f.kill.group) ?? []), f]);
  const recovery = [...byFault.values()]
    .sort((a, b) => a[0]!.killedAt - b[0]!.killedAt)
    .map((group) => {
      const back = Math.max(...group.map((g) => g.backAt));
      const first = load.acceptedAt.find((t) => t >= back);
      const down = ((back - Math.min(...group.map((g) => g.killedAt))) / 1000).toFixed(1);
      return `${group.map((g) => g.kill.target).join('+')}:down ${down}s,first202 ${first === undefined ? 'none' : `+${((first - back) / 1000).toFixed(2)}s`}`;
    });
  const other = Object.entries(verdict.statuses)
    .filter(([k]) => k !== '202' && !k.startsWith('503'))
    .map(([k, n]) => `${k}=${n}`)
    .join(',');
  const restarts = [...s.apis, s.worker].map((a) => `${a.name}:${a.unexpectedExits}`).join(',');
  const ok = verdict.violations.length === 0;
  const figures =
    `CHAOS ${ok ? 'PASS' : 'FAIL'} seed=${opts.seed} faults=${opts.faults.join(',')} schedule=${describeSchedule(schedule)} ` +
    `shoppers=${opts.shoppers} stock=${sale.stock} requests=${verdict.requests} 202=${verdict.accepted} 503=${verdict.unavailable} other={${other}} ` +
    `lost=${verdict.lost.length} orphans=${verdict.orphans.length} overLimit=${verdict.overLimit.length} oversold=${verdict.oversold} ` +
    `remaining+units-stock=${verdict.imbalance} dangling409=${verdict.dangling409.length} bad5xx=${verdict.bad5xx.length} ` +
    `recovery=[${recovery.join('; ')}] selfExits={${restarts}} drain=${((drainedAt - load.endedAt) / 1000).toFixed(1)}s harnessLagMax=${Math.round(lag.max / 1e6)}ms`;
  console.log(figures);
  if (ok) {
    await s.stop();
    await s.dropDatabase().catch((err: Error) => log(`could not drop the run's database: ${err.message}`));
    rmSync(dir, { recursive: true, force: true });
    return 0;
  }
  for (const v of verdict.violations) log(`VIOLATION ${v}`);
  const where = await writeDiagnosis({
    dir: opts.diagnosisDir ?? join(dir, 'diagnosis'),
    saleId: sale.id,
    redisUrl: s.redis.url,
    redisPrefix: s.redisPrefix,
    databaseUrl: s.databaseUrl,
    logs: s.logs(),
    load,
    verdict,
    timeline: [...s.events.map((e) => ({ ...e, at: new Date(e.at).toISOString() })), ...faultRuns.map((f) => ({ fault: f.kill, killedAt: new Date(f.killedAt).toISOString(), backAt: new Date(f.backAt).toISOString() }))],
    figures,
  });
  await s.stop();
  log(`diagnosis in ${where} (process logs in ${dir}; database ${s.databaseUrl} kept)`);
  return 1;
}

main()
  .then((code) => {
    process.exitCode = code;
  })
  .catch(async (err: Error) => {
    console.error(`chaos run could not be carried out: ${err.stack ?? err.message}`);
    await stopAll();
    process.exitCode = 2;
  })
  .finally(() => {
    clearTimeout(watchdog);
    process.exit();
  });
