/**
 * The purchase use case: admit a request in Redis (one Lua script: idempotency key, sale window, per-user limit,
 * known sold-out), publish it with a publisher confirm, and only then accept it. A sold-out answer is remembered
 * by this process for a moment (see sold-out-cache.ts and the purchase route). A failed publish withdraws the
 * admission, so the shopper's retry is not blocked and nothing is left behind.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { PurchaseMessage } from '../core/messages.ts';
import { QUEUED_VERSION, readState, writeState, type PurchaseState } from '../core/purchase-state.ts';
import { idempotencyKey, purchaseKey, saleKeys } from '../core/redis/keys.ts';
import { AdmitCode, admit, withdraw } from '../core/redis/scripts.ts';
import { loadSale } from '../core/sales.ts';
import type { ApiDeps } from './deps.ts';
import { AppError, problems, soldOutProblem } from './problem.ts';

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
  const bodyHash = input.idempotencyKey ? createHash('sha256').update(`${saleId}|${quantity}`).digest('base64url') : '';
  const requestId = randomUUID();

  for (let attempt = 0; ; attempt++) {
    const now = Date.now();
    const r = await admit(redis, keys, idemKey, { requestId, userId, quantity, nowMs: now, bodyHash, idemTtlS: config.IDEMPOTENCY_TTL_SECONDS });
    switch (r.code) {
      case AdmitCode.Admitted:
        await enqueue(d, { v: 1, requestId, saleId, userId, quantity, epoch: r.value, admittedAt: now }, idemKey);
        return { requestId, replayed: false };
      case AdmitCode.Replayed:
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
        throw new AppError('duplicate-purchase', 409, 'You already hold the most this sale allows per shopper.', { requestId: r.value });
      case AdmitCode.SoldOut:
        d.soldOut.mark(saleId);
        throw soldOutProblem();
      default:
        throw new Error(`Unknown admit code ${String(r.code)}`);
    }
  }
}

async function enqueue(d: ApiDeps, m: PurchaseMessage, idemKey: string): Promise<void> {
  const prefix = d.config.REDIS_KEY_PREFIX;
  const queued: PurchaseState = {
    requestId: m.requestId,
    saleId: m.saleId,
    userId: m.userId,
    status: 'queued',
    acceptedAt: new Date(m.admittedAt).toISOString(),
    updatedAt: new Date(m.admittedAt).toISOString(),
    version: QUEUED_VERSION,
  };
  try {
    await Promise.all([
      d.broker.publish(d.topology.purchaseExchange, d.topology.purchaseRoutingKey, Buffer.from(JSON.stringify(m)), {
        messageId: m.requestId,
        contentType: 'application/json',
        timestamp: Math.floor(m.admittedAt / 1000),
      }),
      writeState(d.redis, prefix, queued),
    ]);
  } catch (err) {
    d.logger.warn({ err: (err as Error).message, requestId: m.requestId }, 'enqueue failed; withdrawing the admission');
    const keys = saleKeys(prefix, m.saleId);
    await withdraw(d.redis, keys, idemKey, m)
      .then(() => d.redis.del(purchaseKey(prefix, m.requestId)))
      .catch((e: Error) => d.logger.warn({ err: e.message, requestId: m.requestId }, 'withdraw failed; the sweeper will finish the request'));
    throw problems.unavailable('The purchase could not be queued; nothing was reserved. Retry shortly.');
  }
}

/**
 * Reads a purchase's state for its owner: Redis first, then the decision PostgreSQL keeps.
 * @throws AppError 404 when there is no such request or it belongs to someone else (existence is not leaked).
 */
export async function getPurchase(d: ApiDeps, requestId: string, userId: string): Promise<PurchaseState> {
  const state = (await readState(d.redis, d.config.REDIS_KEY_PREFIX, requestId)) ?? (await fromDatabase(d, requestId));
  if (!state || state.userId !== userId) throw problems.notFound(`No purchase request ${requestId}.`);
  return state;
}

async function fromDatabase(d: ApiDeps, requestId: string): Promise<PurchaseState | undefined> {
  const p = await d.db.purchase.findUnique({ where: { requestId } });
  if (!p) return undefined;
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

