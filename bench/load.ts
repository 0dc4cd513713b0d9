/**
 * The shoppers who send the load, and the open-loop sender (closed loops are in closed-loop.ts).
 *
 * Open loop (`openLoop`, undici): requests leave on a fixed schedule whatever the server does, and latency counts
 * from the scheduled departure, so a server that stalls shows up as latency instead of quietly slowing the sender
 * (coordinated omission). Neither autocannon's `overallRate` nor wrk holds a fixed rate: autocannon gives each
 * connection a quota per second that it spends in a burst at the start of each second (`_doRequest` in
 * autocannon/lib/httpClient.js), and wrk has no rate at all (wrk2 has, but is not packaged).
 *
 * Latencies are kept per request at full resolution and for every answer, so a sold-out 409 is timed like a 202.
 */
import { Pool } from 'undici';
import { mintToken } from '../api/auth.ts';

/** Decides whether an answer is the one expected; may also record it (e.g. a requestId). */
export type OnAnswer = (status: number, body: string) => boolean;

/** Expects a 202 with a requestId, and pushes the requestId onto `ids`. */
export function acceptInto(ids: string[]): OnAnswer {
  return (status, body) => {
    const id = status === 202 ? /"requestId":"([0-9a-f-]+)"/.exec(body)?.[1] : undefined;
    if (id) ids.push(id);
    return id !== undefined;
  };
}

export interface Latency {
  p50: number;
  p99: number;
  p99_9: number;
  max: number;
}

export interface LoadStats {
  sent: number;
  answers: number;
  /** Answers for which `onAnswer` returned false. */
  unexpected: number;
  /** One unexpected answer, for the report. */
  unexpectedSample?: string;
  /** Connection errors and timeouts. */
  errors: number;
  /** First departure to last answer, s. */
  durationS: number;
  /** Answers per second over `durationS`. */
  rps: number;
  /** ms, over every answer. */
  latency: Latency;
  statuses: Record<string, number>;
  /** Wall clock of the first departure and the last answer, ms since the epoch. */
  startedAt: number;
  endedAt: number;
}

/** Distinct shoppers: user ids with tokens minted by the API's own `mintToken`, minted on demand. */
export class Shoppers {
  private readonly tokens: string[] = [];

  constructor(
    private readonly secret: string,
    private readonly runId: string,
  ) {}

  get size(): number {
    return this.tokens.length;
  }

  /** Mints until `n` shoppers exist. */
  async ensure(n: number): Promise<void> {
    while (this.tokens.length < n) {
      const from = this.tokens.length;
      const batch = Array.from({ length: Math.min(100, n - from) }, (_, i) => `bench-${this.runId}-${from + i}`);
      this.tokens.push(...(await Promise.all(batch.map(async (u) => (await mintToken(this.secret, u, 6 * 3600)).token))));
    }
  }

  /** Shopper `i`, wrapping around: where shoppers must be distinct, `ensure` enough of them first. */
  token(i: number): string {
    const t = this.tokens[i % this.tokens.length];
    if (t === undefined) throw new Error('no shoppers minted');
    return t;
  }

  /** Shoppers `from` .. `from + n - 1`, minted first if need be. */
  async slice(from: number, n: number): Promise<string[]> {
    await this.ensure(from + n);
    return this.tokens.slice(from, from + n);
  }
}

/** Hands out shoppers in order, each once (one cursor per sale: a shopper may buy once in each sale). */
export class Cursor {
  used = 0;
  constructor(private readonly shoppers: Shoppers) {}

  take(): string {
    return this.shoppers.token(this.used++);
  }

  /** The next `n` shoppers, minted first if need be. */
  async takeMany(n: number): Promise<string[]> {
    const tokens = await this.shoppers.slice(this.used, n);
    this.used += n;
    return tokens;
  }
}

const JSON_POST = { 'content-type': 'application/json' };

export interface OpenLoopOptions {
  url: string;
  path: string;
  connections: number;
  /** Requests per second. */
  rate: number;
  durationS: number;
  token: () => string;
  onAnswer: OnAnswer;
}

/** Sends `rate` requests per second for `durationS`, on schedule, then waits for every answer. */
export async function openLoop(o: OpenLoopOptions): Promise<LoadStats> {
  const rec = new Recorder(o.onAnswer);
  const pool = new Pool(o.url, { connections: o.connections, pipelining: 1, keepAliveTimeout: 30_000 });
  const total = Math.max(1, Math.round(o.rate * o.durationS));
  const gapMs = 1000 / o.rate;
  let errors = 0;
  const one = async (due: number) => {
    try {
      const res = await pool.request({
        path: o.path,
        method: 'POST',
        headers: { ...JSON_POST, authorization: `Bearer ${o.token()}` },
        body: '{}',
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      const body = await res.body.text();
      rec.latency(performance.now() - due);
      rec.answer(res.statusCode, body);
    } catch {
      errors++;
    }
  };
  const inFlight: Promise<void>[] = [];
  const t0 = performance.now();
  rec.start();
  for (let sent = 0; sent < total; ) {
    const due = Math.min(total, Math.floor((performance.now() - t0) / gapMs) + 1);
    for (; sent < due; sent++) inFlight.push(one(t0 + sent * gapMs));
    if (sent < total) await new Promise((r) => setTimeout(r, Math.max(1, t0 + sent * gapMs - performance.now())));
  }
  await Promise.all(inFlight);
  await pool.close();
  return rec.stats(total, errors);
}

/** Collects answers and latencies of one run. */
class Recorder {
  private readonly ms: number[] = [];
  private readonly statuses: Record<string, number> = {};
  private answers = 0;
  private unexpected = 0;
  private sample: string | undefined;
  private startedAt = 0;
  private endedAt = 0;
  private t0 = 0;
  private t1 = 0;

  constructor(private readonly onAnswer: OnAnswer) {}

  start(): void {
    this.startedAt = Date.now();
    this.t0 = performance.now();
  }

  latency(ms: number): void {
    this.ms.push(ms);
  }

  answer(status: number, body: string): void {
    this.answers++;
    this.statuses[status] = (this.statuses[status] ?? 0) + 1;
    if (!this.onAnswer(status, body)) {
      this.unexpected++;
      this.sample ??= `${status} ${body.slice(0, 300)}`;
    }
    this.endedAt = Date.now();
    this.t1 = performance.now();
  }

  stats(sent: number, errors: number): LoadStats {
    const durationS = Math.max(1e-3, (this.t1 - this.t0) / 1000);
    return {
      sent,
      answers: this.answers,
      unexpected: this.unexpected,
      ...(this.sample ? { unexpectedSample: this.sample } : {}),
      errors,
      durationS,
      rps: this.answers / durationS,
      latency: percentiles(this.ms),
      statuses: this.statuses,
      startedAt: this.startedAt,
      endedAt: this.endedAt,
    };
  }
}

/** Nearest-rank percentiles, ms. */
export function percentiles(values: number[]): Latency {
  const sorted = Float64Array.from(values).sort();
  const at = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : NaN);
  return { p50: at(50), p99: at(99), p99_9: at(99.9), max: at(100) };
}
