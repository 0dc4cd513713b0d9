/**
 * The shoppers of a chaos run. Shopper `i` arrives at a seeded moment of the load; most buy once, some try three
 * times one after the other (a per-user limit of 2 then answers 409 `duplicate-purchase`). Each purchase has its own
 * Idempotency-Key and retries 503s, connection errors and timeouts with that same key, on the other API node (as a
 * load balancer would), with exponential backoff and full jitter (AWS Architecture Blog, "Exponential Backoff And
 * Jitter"), at most `MAX_ATTEMPTS` times. Every answer is recorded.
 */
import { randomUUID } from 'node:crypto';
import { mintToken } from '../api/auth.ts';
import type { Random } from './random.ts';

const MAX_ATTEMPTS = 14;
const BACKOFF_BASE_MS = 100;
const BACKOFF_CAP_MS = 4000;
const REQUEST_TIMEOUT_MS = 8000;

export interface Attempt {
  /** Departure, ms since the epoch. */
  at: number;
  /** Answer (or error), ms since the epoch. */
  end: number;
  /** Index of the API node. */
  node: number;
  /** HTTP status; 0 for a connection error or timeout. */
  status: number;
  /** Problem slug (`sold-out`, `duplicate-purchase`, …) or the error's message. */
  detail?: string;
  requestId?: string;
  replayed?: boolean;
}

export interface ShopperPurchase {
  userId: string;
  token: string;
  idempotencyKey: string;
  attempts: Attempt[];
  /** The requestId of the 202 it was given, if any. */
  accepted?: string;
}

export interface LoadResult {
  purchases: ShopperPurchase[];
  /** Every 202's arrival, ms since the epoch, sorted. */
  acceptedAt: number[];
  startedAt: number;
  endedAt: number;
}

/**
 * Runs the shoppers: arrivals spread over `loadMs` (ms), each purchase retried until a non-retryable answer or
 * `MAX_ATTEMPTS`. Resolves when every shopper is done.
 */
export async function runShoppers(opts: { apiUrls: string[]; saleId: string; shoppers: number; loadMs: number; runId: string; secret: string; rnd: Random }): Promise<LoadResult> {
  const startedAt = Date.now();
  const purchases: ShopperPurchase[] = [];
  const acceptedAt: number[] = [];
  const plans = Array.from({ length: opts.shoppers }, (_, i) => ({
    i,
    startMs: Math.floor((i / opts.shoppers) * opts.loadMs + opts.rnd.next() * 500),
    tries: opts.rnd.next() < 0.2 ? 3 : 1,
    jitter: opts.rnd.int(0, 0x7fffffff),
  }));
  const one = async (plan: (typeof plans)[number]): Promise<void> => {
    await sleepUntil(startedAt + plan.startMs);
    const userId = `chaos-${opts.runId}-${plan.i}`;
    const { token } = await mintToken(opts.secret, userId, 3600);
    let jitter = plan.jitter;
    const rand = () => {
      jitter = (Math.imul(jitter, 1103515245) + 12345) & 0x7fffffff;
      return jitter / 0x7fffffff;
    };
    for (let t = 0; t < plan.tries; t++) {
      const p: ShopperPurchase = { userId, token, idempotencyKey: randomUUID(), attempts: [] };
      purchases.push(p);
      for (let a = 0; a < MAX_ATTEMPTS; a++) {
        const node = (plan.i + a) % opts.apiUrls.length;
        const attempt = await buy(opts.apiUrls[node]!, node, opts.saleId, p);
        p.attempts.push(attempt);
        if (attempt.status === 202) {
          p.accepted = attempt.requestId;
          acceptedAt.push(attempt.end);
        }
        if (attempt.status !== 503 && attempt.status !== 0) break;
        await sleep(rand() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** a));
      }
    }
  };
  await Promise.all(plans.map(one));
  acceptedAt.sort((a, b) => a - b);
  return { purchases, acceptedAt, startedAt, endedAt: Date.now() };
}

async function buy(base: string, node: number, saleId: string, p: ShopperPurchase): Promise<Attempt> {
  const at = Date.now();
  try {
    const res = await fetch(`${base}/api/sales/${saleId}/purchases`, {
      method: 'POST',
      headers: { authorization: `Bearer ${p.token}`, 'content-type': 'application/json', 'idempotency-key': p.idempotencyKey },
      body: '{"quantity":1}',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.text();
    let body: { requestId?: string; type?: string } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      /* not JSON: kept as the detail */
    }
    return {
      at,
      end: Date.now(),
      node,
      status: res.status,
      detail: body.type?.replace('/problems/', '') ?? (res.status >= 400 ? text.slice(0, 200) : undefined),
      requestId: body.requestId,
      replayed: res.headers.get('idempotent-replayed') === 'true' || undefined,
    };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    return { at, end: Date.now(), node, status: 0, detail: e.cause?.code ?? e.name };
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sleepUntil = (t: number) => sleep(Math.max(0, t - Date.now()));
