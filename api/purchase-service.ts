/**
 * The purchase use case: admit a request in Redis (one Lua script: idempotency key, sale window, per-user limit,
 * known sold-out, and the request's queued state), publish it with a publisher confirm, and only then accept it.
 * A sold-out answer is remembered by this process for a moment (see sold-out-cache.ts and the purchase route).
 *
 * A 202 is only ever given for a request that is in the queue: a first admission is answered once its publish is
 * confirmed; a replay (same Idempotency-Key) of one not yet decided publishes it again (same messageId: the worker
 * is idempotent per requestId) and waits for that confirm too, because the API that admitted it may have died
 * before publishing. A publish that is not confirmed withdraws the admission (see withdraw-admission.ts).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { PurchaseMessage } from '../core/messages.ts';
import { QUEUED_VERSION, STATE_TTL_S, readState, type PurchaseState } from '../core/purchase-state.ts';
import { idempotencyKey, saleKeys } from '../core/redis/keys.ts';
import { AdmitCode, admit, type AdmitResult } from '../core/redis/scripts.ts';
import { mayHaveRun } from '../core/redis/client.ts';
import { loadSale } from '../core/sales.ts';
import type { ApiDeps } from './deps.ts';
import { AppError, problems, soldOutProblem } from './problem.ts';
import { settleUnconfirmed } from './withdraw-admission.ts';

export interface PurchaseInput {
  saleId: string;
  userId: string;
  quantity: number;
  idempotencyKey?: string;
}

export interface Accepted {
  requestId: string;
  /** True when an earlier request with the same Idempotency-Key is answered again. */
  replayed: boolean;
}

/** Sale ids PostgreSQL does not know, remembered briefly so a flood of them costs no database query, ms. */
const UNKNOWN_SALE_TTL_MS = 5000;
const unknownSales = new Map<string, number>();

/** What an Idempotency-Key is bound to: the request's sale and quantity (a key reused with others is refused). */
export function idempotencyBodyHash(saleId: string, quantity: number): string {
  return createHash('sha256').update(`${saleId}|${quantity}`).digest('base64url');
}

/**
 * Admits and enqueues a purchase.
 * @throws AppError 404 sale-not-found, 409 sale-not-active | duplicate-purchase | sold-out, 400 validation-error,
 *   422 idempotency-key-reused, 503 service-unavailable (Redis or RabbitMQ down; the admission is withdrawn).
 */
export async function requestPurchase(d: ApiDeps, input: PurchaseInput): Promise<Accepted> {
  const { config, redis } = d;
  const prefix = config.REDIS_KEY_PREFIX;
  const { saleId, userId, quantity } = input;
  if ((unknownSales.get(saleId) ?? 0) > Date.now()) throw problems.saleNotFound(saleId);

  const keys = saleKeys(prefix, saleId);
  const idemKey = idempotencyKey(prefix, saleId, userId, input.idempotencyKey ?? '');
  const bodyHash = input.idempotencyKey ? idempotencyBodyHash(saleId, quantity) : '';
  const requestId = randomUUID();

  for (let attempt = 0; ; attempt++) {
    const now = Date.now();
    const acceptedAt = new Date(now).toISOString();
    const queued: PurchaseState = { requestId, saleId, userId, status: 'queued', acceptedAt, updatedAt: acceptedAt, version: QUEUED_VERSION };
    let r: AdmitResult;
    try {
      r = await admit(redis, keys, idemKey, {
        requestId,
        userId,
        quantity,
        nowMs: now,
        bodyHash,
        idemTtlS: config.IDEMPOTENCY_TTL_SECONDS,
        state: { body: JSON.stringify(queued), version: QUEUED_VERSION, ttlS: STATE_TTL_S },
      });
    } catch (err) {
      if (!mayHaveRun(err)) throw err; // never ran: a 503 with nothing to undo
      // It may have run, or may run late (a re-send after a reconnect): settled like a publish without a confirm,
      // so it never holds units nor becomes an order once its shopper is told 503.
      await settleUnconfirmed(d, { v: 1, requestId, saleId, userId, quantity, epoch: '0', admittedAt: now }, idemKey, err as Error);
      return { requestId, replayed: false }; // it was decided after all (queued by the sweeper): it was accepted
    }
    switch (r.code) {
      case AdmitCode.Admitted:
        await enqueue(d, { v: 1, requestId, saleId, userId, quantity, epoch: r.value, admittedAt: now }, idemKey);
        return { requestId, replayed: false };
      case AdmitCode.Replayed:
        if (r.decision === undefined) {
          const { quantity: units, epoch, admittedAt } = r.original;
          await enqueue(d, { v: 1, requestId: r.value, saleId, userId, quantity: units, epoch, admittedAt }, idemKey);
        }
        return { requestId: r.value, replayed: true };
      case AdmitCode.IdempotencyKeyReused:
        throw new AppError('idempotency-key-reused', 422, 'This Idempotency-Key was used with another request body.');
      case AdmitCode.SaleNotLoaded: {
        // Gone again right after loading it: Redis is being flushed or restarted under us.
        if (attempt > 0) throw problems.unavailable('The sale is being reloaded; retry shortly.');
        if ((await loadSale(d.db, redis, prefix, saleId)) === 'missing') {
          if (unknownSales.size > 10_000) unknownSales.clear();
          unknownSales.set(saleId, Date.now() + UNKNOWN_SALE_TTL_MS);
          throw problems.saleNotFound(saleId);
        }
        continue;
      }
      case AdmitCode.SaleNotActive:
        throw new AppError('sale-not-active', 409, r.value === 'upcoming' ? 'The sale has not started yet.' : 'The sale has ended.', { state: r.value });
      case AdmitCode.OverLimit:
        throw problems.validation(`quantity must not exceed the sale's per-user limit of ${r.value}.`, [
          { field: 'quantity', message: `at most ${r.value}` },
        ]);
      case AdmitCode.Duplicate:
        throw new AppError('duplicate-purchase', 409, 'You already hold the most this sale allows per shopper.', {
          requestId: r.value || (await latestActiveRequest(d, saleId, userId)),
        });
      case AdmitCode.SoldOut:
        d.soldOut.mark(saleId);
        throw soldOutProblem();
      case AdmitCode.Decided:
        // A fresh requestId with a decision: only a withdrawal racing this very call can do that.
        throw problems.unavailable('The purchase could not be queued; nothing was reserved. Retry shortly.');
      default:
        throw new Error(`Unknown admit code ${String((r as { code: unknown }).code)}`);
    }
  }
}

/**
 * Publishes a purchase (in this turn's batch message, see purchase-publisher.ts) and waits for its confirm; one not
 * confirmed is settled by withdraw-admission.ts.
 */
async function enqueue(d: ApiDeps, m: PurchaseMessage, idemKey: string): Promise<void> {
  try {
    await d.purchases.publish(m);
  } catch (err) {
    await settleUnconfirmed(d, m, idemKey, err as Error);
  }
}

/**
 * The request holding a shopper's place when Redis does not name one (its `last` entry was withdrawn): the latest
 * active order PostgreSQL holds. @returns "" when there is none or PostgreSQL cannot say.
 */
async function latestActiveRequest(d: ApiDeps, saleId: string, userId: string): Promise<string> {
  const order = await d.db.order
    .findFirst({ where: { saleId, userId, status: { not: 'expired' } }, orderBy: { createdAt: 'desc' }, select: { requestId: true } })
    .catch(() => null);
  return order?.requestId ?? '';
}

/**
 * Reads a purchase's state for its owner: Redis first, then the decision PostgreSQL keeps, which also answers while
 * Redis is unavailable.
 * @throws AppError 404 when there is no such request in this sale or it belongs to someone else (existence is not
 *   leaked); 503 when Redis is unavailable and PostgreSQL has no decision for it (it may be queued).
 */
export async function getPurchase(d: ApiDeps, saleId: string, requestId: string, userId: string): Promise<PurchaseState> {
  let state: PurchaseState | undefined;
  let redisDown: Error | undefined;
  try {
    state = await readState(d.redis, d.config.REDIS_KEY_PREFIX, saleId, requestId);
  } catch (err) {
    redisDown = err as Error;
  }
  state ??= await decidedPurchase(d, requestId);
  if (state && state.saleId !== saleId) state = undefined;
  if (!state && redisDown) throw problems.unavailable('The purchase cannot be read right now; retry shortly.');
  if (!state || state.userId !== userId) throw problems.notFound(`No purchase request ${requestId}.`);
  return state;
}

/**
 * The sale a decided purchase belongs to, for links without the sale id (`/api/purchases/:requestId`, handed out
 * before purchase states moved into their sale's slot). @returns undefined when PostgreSQL holds no decision.
 */
export async function saleOfDecidedPurchase(d: ApiDeps, requestId: string): Promise<string | undefined> {
  return (await decidedPurchase(d, requestId))?.saleId;
}

/** The decision PostgreSQL holds, as a purchase state; withdrawn requests were never accepted and do not exist. */
async function decidedPurchase(d: ApiDeps, requestId: string): Promise<PurchaseState | undefined> {
  const p = await d.db.purchase.findUnique({ where: { requestId } });
  if (!p || p.status === 'withdrawn') return undefined;
  return {
    requestId: p.requestId,
    saleId: p.saleId,
    userId: p.userId,
    status: p.status,
    ...(p.orderId ? { orderId: p.orderId } : {}),
    ...(p.reason ? { reason: p.reason } : {}),
    updatedAt: p.decidedAt.toISOString(),
    version: 2,
  };
}
