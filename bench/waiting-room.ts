/**
 * `npm run bench:queue`: the waiting room at 100,000 tickets (QUEUE_BENCH_TICKETS), every figure from one run.
 *
 * 1. Straight against a private redis-server (scripts/local/redis-node.ts), this process its only client: 100,000
 *    joins at 64 concurrent script calls (joins/s); MEMORY USAGE of the queue's keys per ticket; the chunked shuffle
 *    at the start (calls, the largest single call, all of it); an advance with 100,000 waiting, with nothing due and
 *    after one tick's worth of admissions; one presence touch of 500 shoppers. Each call's cost is Redis's own CPU
 *    time (its main thread's on-CPU time from /proc/<pid>/schedstat), beside the round trip.
 * 2. The real system: two API nodes (child processes; RATE_LIMITS=off, for every stream comes from this one
 *    address) and a waiting-room sale whose pre-queue holds the tickets (taken with the join script, as in part 1,
 *    to spare 100,000 HTTP joins), each followed by a real SSE stream, `GET …/queue/events`, half on each node, held
 *    over raw sockets by crowd processes (bench/sse-crowd.ts, one per node). Once every stream is open the sale
 *    starts (its start in the queue hash is moved to now): the nodes' ticks shuffle the pre-queue and admit at the
 *    sale's rate (QUEUE_BENCH_RATE a minute). Measured over QUEUE_BENCH_MEASURE_S seconds: announcements against
 *    admissions, each node's passes over its streams (from its debug log), CPU and memory, an advance call's round
 *    trip, and the time from each admission (Redis's clock, recorded in the inside set) to its stream receiving it
 *    (this host's clock: Redis runs on the same host).
 *
 * Every process holds a file descriptor per stream. When the open-file limit is below what 100,000 streams over
 * two nodes need, the bench runs itself again under a raised `ulimit -n` if it may; if not, each node holds as many
 * real streams as the limit allows and the rest are simulated, as it prints: their tickets are kept present by this
 * process with the same touch script at the same cadence as a node (so Redis pays for 100,000 streams), and a
 * node's cost at 50,000 streams is the measured cost per stream times 50,000. Everything it wrote is removed.
 */
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { mintToken } from '../api/auth.ts';
import { loadConfig } from '../core/config.ts';
import type { RedisClient } from '../core/redis/client.ts';
import { advanceOptionsOf, advanceQueue, joinQueue, loadQueue, queueKeys, touchTickets, type QueueKeys } from '../core/waiting-room/scripts.ts';
import { migrate } from '../prisma/migrate.ts';
import { freePort } from '../scripts/local/child.ts';
import { startRedisNode } from '../scripts/local/redis-node.ts';
import { cpuSeconds, listenerPid } from './cpu.ts';
import { percentiles } from './load.ts';
import { benchEnv, stampOf } from './bench-env.ts';
import { BenchSystem } from './system.ts';

const tickets = Number(process.env.QUEUE_BENCH_TICKETS ?? 100_000);
const perMinute = Number(process.env.QUEUE_BENCH_RATE ?? 3000);
const measureS = Number(process.env.QUEUE_BENCH_MEASURE_S ?? 20);
const wanted = Number(process.env.QUEUE_BENCH_STREAMS ?? tickets);
const RESULTS_DIR = fileURLToPath(new URL('./results', import.meta.url));
const OPENING = 256;
const SOURCES = 8;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms = (x: number) => `${x.toFixed(x < 10 ? 2 : 0)} ms`;
const int = (x: number) => Math.round(x).toLocaleString('en-US');
const log = (line: string) => console.log(line);

/** The soft open-file limit of this process (via the shell, as Node has no getrlimit). */
function fileLimit(): number {
  return Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim()) || 1024;
}

/** Runs this script again under `ulimit -n need` when possible. @returns the child's exit code, or undefined. */
async function rerunWithLimit(need: number): Promise<number | undefined> {
  if (process.env.QUEUE_BENCH_RERUN || fileLimit() >= need) return undefined;
  if (spawnSync('sh', ['-c', `ulimit -n ${need}`]).status !== 0) return undefined;
  const child = spawn('sh', ['-c', `ulimit -n ${need} && exec "$@"`, 'sh', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, QUEUE_BENCH_RERUN: '1' },
  });
  return new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
}

async function memoryPerTicket(redis: Redis, k: QueueKeys): Promise<number> {
  let bytes = 0;
  for (const key of [k.queue, k.tickets, k.pre, k.order, k.pool, k.seen, k.inside, k.shuffle]) bytes += Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
  return bytes / tickets;
}

/** The on-CPU time of a process's main thread so far, ns (/proc/<pid>/schedstat): Redis's own cost of a call. */
function cpuNs(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
}


/**
 * Part 1: the scripts alone, on a private redis-server with this process as its only client, so that Redis's CPU
 * time per call can be read from the kernel: on a busy machine a call's wall time (round trip, SLOWLOG) also counts
 * the time Redis waited for a core.
 */
async function scriptsAlone(): Promise<void> {
  const dir = mkdtempSync(`${os.tmpdir()}/bench-queue-redis-`);
  const node = await startRedisNode({ port: await freePort(), dir });
  const redis = new Redis(node.url);
  const pid = node.pids()[0]!;
  const k = queueKeys('fs:bench-queue', '00000000-0000-4000-8000-000000000001');
  const o = { abandonMs: 600_000, burstMs: 500 };
  /** Runs `f`; @returns its round trip and Redis's CPU time, ms. */
  const timed = async (f: () => Promise<unknown>) => {
    const [c0, t0] = [cpuNs(pid), performance.now()];
    await f();
    return { wall: performance.now() - t0, cpu: (cpuNs(pid) - c0) / 1e6 };
  };
  try {
    await loadQueue(redis, k, { opensMs: 0, startsMs: Date.now() + 3_600_000, endsMs: 0, admissionsPerMinute: perMinute, cap: 1_000_000, sessionMs: 600_000, order: 'fifo', seed: 12345 });
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < tickets) await joinQueue(redis, k, `shopper-${next++}-${randomBytes(6).toString('hex')}`, randomInt(0, 2 ** 47));
      }),
    );
    const joinS = (performance.now() - t0) / 1000;
    const preBytes = await memoryPerTicket(redis, k);
    await redis.hset(k.queue, 'starts', 0); // the sale has started: the next advance begins the shuffle
    const calls: { wall: number; cpu: number }[] = [];
    const t1 = performance.now();
    for (let more = true; more; ) {
      calls.push(await timed(async () => (more = (await advanceQueue(redis, k, '', o)).more)));
    }
    const shuffleMs = performance.now() - t1;
    const idle: { wall: number; cpu: number }[] = [];
    for (let i = 0; i < 100; i++) idle.push(await timed(() => advanceQueue(redis, k, '', o)));
    await sleep(250);
    const before = Number(await redis.hget(k.queue, 'admitted'));
    const tick = await timed(() => advanceQueue(redis, k, '', o));
    const batch = Number(await redis.hget(k.queue, 'admitted')) - before;
    const users = await redis.zrange(k.order, '0', '499');
    const touch = await timed(() => touchTickets(redis, k, users));
    const after = await memoryPerTicket(redis, k);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const largest = calls.reduce((a, c) => (c.cpu > a.cpu ? c : a));
    log(`1. Scripts alone, ${int(tickets)} tickets, on a private Redis (CPU: Redis's own on-CPU time per call, from /proc; wall: round trip)`);
    log(`   join throughput: ${int(tickets / joinS)} joins/s (64 concurrent script calls, one client)`);
    log(`   Redis memory per ticket: ${int(preBytes)} bytes in the pre-queue, ${int(after)} bytes once shuffled (MEMORY USAGE of the queue's keys)`);
    log(`   shuffle at the start: ${calls.length} calls in ${ms(shuffleMs)}; largest single call ${ms(largest.cpu)} of Redis CPU (${ms(largest.wall)} wall), median ${ms(percentiles(calls.map((c) => c.cpu)).p50)}; all calls ${ms(calls.reduce((a, c) => a + c.cpu, 0))} of Redis CPU`);
    log(`   advance with ${int(tickets)} waiting: ${ms(mean(idle.map((c) => c.cpu)))} CPU (${ms(mean(idle.map((c) => c.wall)))} wall) when nothing is due, mean of 100; ${ms(tick.cpu)} CPU (${ms(tick.wall)} wall) admitting ${batch}, one 250 ms tick's worth at ${int(perMinute)}/min`);
    log(`   presence touch of 500 shoppers (marked and read, as a node does): ${ms(touch.cpu)} CPU (${ms(touch.wall)} wall)`);
  } finally {
    redis.disconnect();
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The pid listening on `port` (bench/cpu.ts). @throws when none is found. */
function pidOn(port: number): number {
  const pid = listenerPid(port);
  if (pid === undefined) throw new Error(`no process found listening on ${port}`);
  return pid;
}
/** CPU seconds of `pid` so far (bench/cpu.ts); 0 once it has gone. */
const cpuOf = (pid: number) => cpuSeconds(pid) ?? 0;
function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

interface Pass {
  streams: number;
  ms: number;
  busyMs: number;
  paced: boolean;
  time: number;
}
function passesIn(logPath: string, from: number, to: number): Pass[] {
  const out: Pass[] = [];
  for (const line of readFileSync(logPath, 'utf8').split('\n')) {
    if (!line.includes('waiting-room views sent')) continue;
    const p = JSON.parse(line) as Pass;
    if (p.time >= from && p.time <= to) out.push(p);
  }
  return out;
}

/** Part 2: two API nodes holding one real stream per ticket, up to the open-file limit. */
async function withStreams(perNode: number): Promise<void> {
  const env = benchEnv('q', { LOG_LEVEL: 'debug' }); // the nodes log each pass over their streams
  const id = env.REDIS_KEY_PREFIX!.split('-').at(-1)!;
  const config = loadConfig(env);
  await migrate(config.DATABASE_URL);
  mkdirSync(`${RESULTS_DIR}/logs`, { recursive: true });
  const logPrefix = `${RESULTS_DIR}/logs/${stampOf()}-queue`;
  const sys = await BenchSystem.start(config, env, logPrefix);
  const crowds: ChildProcess[] = [];
  const interrupt = (signal: NodeJS.Signals) => {
    console.error(`\n${signal}: cleaning up...`);
    for (const c of crowds) c.kill();
    void sys.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt).once('SIGTERM', interrupt);
  const sub = new Redis(config.REDIS_URL);
  try {
    const api2 = await sys.startApi('api2', {});
    const ports = [Number(new URL(sys.apiUrl).port), Number(new URL(api2).port)];
    const pids = ports.map(pidOn);
    const baseRss = pids.map(rssMb);
    const sale = {
      name: 'bench: waiting room',
      stock: 1_000_000,
      perUserLimit: 1,
      startsAt: new Date(Date.now() + 3_600_000).toISOString(),
      waitingRoom: { admissionsPerMinute: perMinute, maxInside: 1_000_000, sessionSeconds: 3600, order: 'fifo' },
    };
    const saleId = await sys.createSale(sale);
    const k = queueKeys(config.REDIS_KEY_PREFIX, saleId);
    const userIds = Array.from({ length: tickets }, (_, i) => `q-${id}-${i}`);
    let next = 0;
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (next < tickets) await joinQueue(sys.redis, k, userIds[next++]!, 0);
    }));
    const real = Math.min(tickets, 2 * perNode);
    const simulated = userIds.slice(real);
    log(`\n2. Two API nodes, ${int(tickets)} tickets in the pre-queue, ${int(real)} real SSE streams (${int(Math.ceil(real / 2))} on each node)${simulated.length ? `, ${int(simulated.length)} simulated (the open-file limit): their presence is touched by this process as a node would` : ''}`);

    // The crowds: one process per node, each holding that node's streams.
    const reports: { events: number; admitted: [string, number][] }[] = [];
    const opened = await Promise.all(ports.map(async (port, n) => {
      const mine = userIds.slice(0, real).filter((_, i) => i % 2 === n);
      const streams = [];
      for (let i = 0; i < mine.length; i += 1000) {
        streams.push(...(await Promise.all(mine.slice(i, i + 1000).map(async (u, j) => ({ userId: u, token: (await mintToken(config.JWT_SECRET, u, 6 * 3600)).token, localAddress: `127.0.0.${2 + ((i + j) % SOURCES)}` })))));
      }
      const child = fork(fileURLToPath(new URL('./sse-crowd.ts', import.meta.url)), [], { execArgv: ['--import', 'tsx'] });
      crowds.push(child);
      child.on('message', (m: { type: string; events: number; admitted: [string, number][] }) => {
        if (m.type === 'report') reports.push(m);
      });
      const done = new Promise<{ count: number; ended: number; seconds: number }>((resolve, reject) => {
        child.on('message', (m: { type: string; count: number; ended: number; seconds: number }) => m.type === 'opened' && resolve(m));
        child.on('exit', (code) => reject(new Error(`a crowd process ended (${code})`)));
      });
      child.send({ type: 'open', port, path: `/api/sales/${saleId}/queue/events`, opening: OPENING / 2, streams });
      return done;
    }));
    const count = opened.reduce((a, o) => a + o.count, 0);
    const openS = Math.max(...opened.map((o) => o.seconds));
    log(`   opened ${int(count)} streams in ${openS.toFixed(1)} s (${int(count / openS)} opens/s, ${OPENING} at a time); ${opened.reduce((a, o) => a + o.ended, 0)} ended meanwhile`);
    await sleep(2000);
    const rss = pids.map(rssMb);
    log(`   API node memory: ${rss.map((r, n) => `${int(r)} MB RSS (${int(baseRss[n]!)} MB before its streams: ${(((r - baseRss[n]!) * 1024) / opened[n]!.count).toFixed(1)} KB a stream)`).join(', ')}`);

    // The simulated streams' presence: each ticket touched about every third of the abandon time, as a node does.
    const every = (config.QUEUE_ABANDON_SECONDS * 1000) / 3;
    const dueAt = simulated.map(() => Date.now() + Math.random() * every);
    let touching = true;
    const touchCalls: number[] = [];
    const presence = (async () => {
      while (touching) {
        const now = Date.now();
        const due = simulated.filter((_, i) => dueAt[i]! <= now);
        for (let i = 0; i < due.length; i += 500) {
          const c = performance.now();
          await touchTickets(sys.redis, k, due.slice(i, i + 500));
          touchCalls.push(performance.now() - c);
        }
        simulated.forEach((_, i) => {
          if (dueAt[i]! <= now) dueAt[i] = now + every * (0.5 + Math.random() / 2);
        });
        await sleep(config.QUEUE_TICK_MS);
      }
    })();

    // Announcements, as a node sees them: this process subscribes to the sale's channel too.
    const changes: { at: number; message: string }[] = [];
    sub.on('smessage', (_channel: string, message: string) => changes.push({ at: Date.now(), message }));
    await sub.ssubscribe(k.channel);
    const slowBefore = await slowlogTop(sys.redis);
    const startAt = Date.now();
    await sys.redis.hset(k.queue, 'starts', startAt);
    let startedAt = 0;
    while (!startedAt && Date.now() - startAt < 120_000) {
      startedAt = changes.find((c) => c.message.split('|')[8] === '1')?.at ?? 0;
      await sleep(20);
    }
    if (!startedAt) throw new Error('the shuffle did not complete within 2 minutes');
    const shuffleSlow = await slowCalls(sys.redis, slowBefore, k.queue);
    log(`   the sale started: the nodes' ticks shuffled ${int(tickets)} tickets in chunks; "started" announced ${startedAt - startAt} ms after the start; ${shuffleSlow.length ? `calls over 10 ms in Redis's SLOWLOG: ${shuffleSlow.length}, largest ${ms(Math.max(...shuffleSlow) / 1000)}` : "no call of the sale over 10 ms in Redis's SLOWLOG"}`);
    await sleep(3000); // the start's own pass (every stream's state changes) settles

    const from = Date.now();
    const cpu0 = pids.map(cpuOf);
    const admitted0 = Number(await sys.redis.hget(k.queue, 'admitted'));
    const changes0 = changes.length;
    const touch0 = touchCalls.length;
    crowds.forEach((c) => c.send({ type: 'report' }));
    while (reports.length < crowds.length) await sleep(20);
    const events0 = reports.splice(0).reduce((a, r) => a + r.events, 0);
    const slow0 = await slowlogTop(sys.redis);
    const calls: number[] = [];
    const measureUntil = from + measureS * 1000;
    while (Date.now() < measureUntil) {
      const c = performance.now();
      await advanceQueue(sys.redis, k, '', advanceOptionsOf(config));
      calls.push(performance.now() - c);
      await sleep(500);
    }
    const to = Date.now();
    const seconds = (to - from) / 1000;
    const cpu = pids.map((p, i) => (cpuOf(p) - cpu0[i]!) / seconds);
    const admitted = Number(await sys.redis.hget(k.queue, 'admitted')) - admitted0;
    const messages = changes.length - changes0;
    const slow = await slowCalls(sys.redis, slow0, k.queue);
    crowds.forEach((c) => c.send({ type: 'report' }));
    while (reports.length < crowds.length) await sleep(20);
    const events = reports.reduce((a, r) => a + r.events, 0) - events0;
    const admittedAt = new Map(reports.flatMap((r) => r.admitted));
    const passes = [`${logPrefix}-api.log`, `${logPrefix}-api2.log`].map((f) => passesIn(f, from, to));

    const flat = await sys.redis.zrange(k.inside, '0', '-1', 'WITHSCORES');
    const latencies: number[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const seen = admittedAt.get(flat[i]!);
      const at = Number(flat[i + 1]) - 3_600_000;
      if (seen !== undefined && at >= from && at <= to) latencies.push(seen - at);
    }
    log(`   over ${seconds.toFixed(1)} s at ${int(perMinute)} admissions/min: ${int(admitted)} admitted (${(admitted / seconds).toFixed(1)}/s), ${int(messages)} announcements (${(messages / seconds).toFixed(1)}/s; each reaches a node as one message)`);
    log(`   an advance call (a third node's tick) with every stream open: median ${ms(percentiles(calls).p50)}, max ${ms(Math.max(...calls))} round trip (${calls.length} calls); calls of the sale over 10 ms in Redis's SLOWLOG: ${slow.length}${slow.length ? ` (${slow.byScript}), largest ${ms(Math.max(...slow) / 1000)}` : ''}`);
    if (simulated.length) {
      const t = touchCalls.slice(touch0);
      log(`   simulated presence: ${(t.length / seconds).toFixed(1)} touch calls/s of up to 500 shoppers, median ${ms(percentiles(t).p50)} round trip`);
    }
    passes.forEach((ps, n) => {
      const paced = ps.filter((p) => p.paced);
      const per = percentiles(paced.map((p) => (p.busyMs * 1000) / Math.max(1, p.streams))).p50;
      log(`   node ${n + 1}: ${paced.length} paced passes over ~${int(paced.at(-1)?.streams ?? 0)} streams, each ${ms(percentiles(paced.map((p) => p.ms)).p50)} wall, ${ms(percentiles(paced.map((p) => p.busyMs)).p50)} of event loop (${per.toFixed(1)} µs a stream: ${ms((per * 50_000) / 1000)} for 50,000); CPU ${(cpu[n]! * 100).toFixed(0)}% of a core`);
    });
    log(`   events received by the streams: ${int(events / seconds)}/s`);
    const l = percentiles(latencies);
    log(`   admission -> the shopper's stream sees it: p50 ${ms(l.p50)}, p99 ${ms(l.p99)}, max ${ms(l.max)} (${latencies.length} admissions)`);
    log(`   load average at the end: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
    touching = false;
    await presence;
  } finally {
    for (const c of crowds) if (c.connected) c.send({ type: 'close' });
    sub.disconnect();
    await sys.stop();
  }
}

/** The id of the newest SLOWLOG entry (-1 when empty): later entries are this run's. */
async function slowlogTop(redis: RedisClient): Promise<number> {
  const top = (await redis.call('SLOWLOG', 'GET', '1')) as [number, ...unknown[]][];
  return top[0]?.[0] ?? -1;
}

/**
 * Durations (µs, as Redis measured them: wall time, so a descheduled Redis counts too) of SLOWLOG entries newer than
 * `after` whose arguments name `key`, with the script by its key count (11 advance, 4 touch, 7 join).
 */
async function slowCalls(redis: RedisClient, after: number, key: string): Promise<number[] & { byScript?: string }> {
  const entries = (await redis.call('SLOWLOG', 'GET', '128')) as [number, number, number, string[]][];
  const mine = entries.filter((e) => e[0] > after && e[3].some((a) => String(a) === key));
  const names: Record<string, string> = { '11': 'advance', '4': 'touch', '7': 'join' };
  const counts: Record<string, number> = {};
  for (const e of mine) counts[names[String(e[3][2])] ?? String(e[3][0])] = (counts[names[String(e[3][2])] ?? String(e[3][0])] ?? 0) + 1;
  return Object.assign(mine.map((e) => e[2]), { byScript: Object.entries(counts).map(([n, c]) => `${c} ${n}`).join(', ') });
}

async function main(): Promise<number> {
  const need = Math.ceil(wanted / 2) + 2000;
  const rerun = await rerunWithLimit(need);
  if (rerun !== undefined) return rerun;
  const limit = fileLimit();
  const perNode = Math.min(Math.ceil(Math.min(wanted, tickets) / 2), limit - 1000);
  if (perNode * 2 < Math.min(wanted, tickets)) log(`The open-file limit is ${limit} and cannot be raised here: each node holds ${int(perNode)} real streams.`);
  log(`Waiting-room benchmark: ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} at the start (the figures move with it)`);
  await scriptsAlone();
  await withStreams(perNode);
  return 0;
}

process.exit(await main());
