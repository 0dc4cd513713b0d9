/**
 * Closed-loop load (each connection sends its next request as soon as the previous answer arrives: the highest
 * rate a server sustains) from wrk where it is installed (bench/wrk.ts), else from autocannon in this process. Both
 * send every shopper's token once (unless `wrap`), check every answer, and measure the CPU of the given process
 * groups and of the generator itself over the run, so a figure says what bound it.
 */
import autocannon from 'autocannon';
import { cpuWindow, type ProcessGroup } from './cpu.ts';
import { percentiles, type Latency, type LoadStats } from './load.ts';
import { hasWrk, wrkClosedLoop } from './wrk.ts';

/** What every answer must be: a 202 with a requestId, a 409 sold-out, either of them (a crowd), or any 202. */
export type Expect = 'accept' | 'sold-out' | 'crowd' | 'any-202';

export interface ClosedLoopOptions {
  url: string;
  path: string;
  connections: number;
  /** Run length, s; with `quota`, the longest it may take. */
  durationS: number;
  /** The shoppers' tokens: each sent once, unless `wrap`. */
  tokens: string[];
  wrap?: boolean;
  /** Send every token once and end when each has its answer. */
  quota?: boolean;
  expect: Expect;
  cpu?: ProcessGroup[];
}

export interface RunStats extends LoadStats {
  /** requestIds of the 202 answers (expect: accept). */
  ids: string[];
  /** CPU of each group over the run as a share of one core; `generator` is the load generator. */
  cpu: Record<string, number>;
  cpuSeconds: Record<string, number>;
}

/** Assembles a run's statistics from what a generator counted. */
export function runStats(f: { sent: number; answers: number; unexpected: number; sample?: string; errors: number; durationS: number; latency: Latency; startedAt: number; ids: string[]; cpu: { shares: Record<string, number>; seconds: Record<string, number> } }): RunStats {
  return {
    sent: f.sent,
    answers: f.answers,
    unexpected: f.unexpected,
    ...(f.sample ? { unexpectedSample: f.sample } : {}),
    errors: f.errors,
    durationS: f.durationS,
    rps: f.answers / f.durationS,
    latency: f.latency,
    statuses: {},
    startedAt: f.startedAt,
    endedAt: f.startedAt + f.durationS * 1000,
    ids: f.ids,
    cpu: f.cpu.shares,
    cpuSeconds: f.cpu.seconds,
  };
}

/** wrk threads: one keeps the generator to a fraction of a core on a small machine. */
const WRK_THREADS = Number(process.env.BENCH_WRK_THREADS || 1);

let generator: 'wrk' | 'autocannon' | undefined;

/** The load generator in use: wrk when installed (and BENCH_GENERATOR is not `autocannon`). */
export function generatorName(): 'wrk' | 'autocannon' {
  generator ??= process.env.BENCH_GENERATOR !== 'autocannon' && hasWrk() ? 'wrk' : 'autocannon';
  return generator;
}

/** Runs one closed loop. @throws when the generator fails or runs out of tokens in a timed run. */
export function closedLoop(o: ClosedLoopOptions): Promise<RunStats> {
  return generatorName() === 'wrk' ? wrkClosedLoop({ ...o, threads: WRK_THREADS }) : autocannonClosedLoop(o);
}

const REQUEST_ID = /"requestId":"([0-9a-f-]+)"/;

function expected(expect: Expect, status: number, body: string, ids: string[]): boolean {
  const soldOut = status === 409 && body.includes('"type":"/problems/sold-out"');
  if (expect === 'sold-out' || (expect === 'crowd' && soldOut)) return soldOut;
  if (status !== 202) return false;
  if (expect === 'any-202') return true;
  const id = REQUEST_ID.exec(body)?.[1];
  if (id) ids.push(id);
  return id !== undefined;
}

/** autocannon in this process: its latencies are kept per request at full resolution, for every answer. */
function autocannonClosedLoop(o: ClosedLoopOptions): Promise<RunStats> {
  const ids: string[] = [];
  const ms: number[] = [];
  let sent = 0;
  let answers = 0;
  let unexpected = 0;
  let sample: string | undefined;
  let exhausted = false;
  const take = () => {
    if (sent >= o.tokens.length) {
      if (!o.wrap) exhausted = true;
      return o.tokens[sent++ % o.tokens.length]!;
    }
    return o.tokens[sent++]!;
  };
  const end = cpuWindow([...(o.cpu ?? []), { name: 'generator', pids: () => [process.pid] }]);
  const t0 = performance.now();
  const startedAt = Date.now();
  let t1 = t0;
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: o.url,
        connections: Math.max(1, Math.min(o.connections, o.quota ? o.tokens.length : Infinity)),
        pipelining: 1,
        timeout: 30,
        ...(o.quota ? { amount: o.tokens.length } : { duration: o.durationS }),
        requests: [
          {
            method: 'POST',
            path: o.path,
            body: '{}',
            setupRequest: (req) => ({ ...req, headers: { 'content-type': 'application/json', authorization: `Bearer ${take()}` } }),
            onResponse: (status, body) => {
              answers++;
              t1 = performance.now();
              if (!expected(o.expect, status, body, ids)) {
                unexpected++;
                sample ??= `${status} ${body.slice(0, 300)}`;
              }
            },
          },
        ],
      },
      (err, result) => {
        const cpu = end();
        if (err) return reject(err);
        if (exhausted) return reject(new Error(`autocannon ran out of shoppers after ${o.tokens.length} requests: hand it more tokens`));
        const durationS = Math.max(1e-3, (t1 - t0) / 1000);
        resolve(runStats({ sent: Math.min(sent, o.wrap ? sent : o.tokens.length), answers, unexpected, ...(sample ? { sample } : {}), errors: result.errors, durationS, latency: percentiles(ms), startedAt, ids, cpu }));
      },
    );
    instance.on('response', (_client: unknown, _status: number, _bytes: number, latencyMs: number) => ms.push(latencyMs));
  });
}
