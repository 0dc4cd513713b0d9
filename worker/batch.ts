/**
 * One batch of purchases: one decide script call per sale, one PostgreSQL statement (fenced by the sale's epoch,
 * see persist.ts), one expiry message, the result writes, then the acks. A message is acknowledged only after its
 * decision is in PostgreSQL and its result is in Redis, so a crash at any point means a redelivery, which every step
 * absorbs (the script and the writes are idempotent per request id). Delivery is at-least-once; the effect is
 * exactly-once.
 */
import { quietFor } from '../core/quiet-log.ts';
import { FINAL_STATUS_HEADER, type Reservation } from '../core/messages.ts';
import { FINAL_VERSION, STATE_TTL_S, type PurchaseState } from '../core/purchase-state.ts';
import { purchaseKey, saleKeys } from '../core/redis/keys.ts';
import { Decision, putStates, release, type DecideResult } from '../core/redis/scripts.ts';
import { loadSale } from '../core/sales.ts';
import type { Item, WorkerContext } from './context.ts';
import { decideAll } from './decide.ts';
import { scheduleExpiry } from './expiry.ts';
import { persistDecisions, type DecidedPurchase, type FinalStatus, type PersistedDecision } from './persist.ts';
import { recordFailure, retryOrFail } from './retry-policy.ts';
import { settleItem } from './settle.ts';

const REASONS: Partial<Record<FinalStatus, string>> = {
  sold_out: 'Every unit is sold.',
  rejected: 'You already hold the most this sale allows per shopper.',
};

/** The decision Redis records when it gives back units PostgreSQL says are not the shopper's. */
const RELEASED_AS: Record<Exclude<PersistedDecision['status'], 'succeeded'>, Decision> = {
  sold_out: Decision.SoldOut,
  rejected: Decision.OverLimit,
  failed: Decision.Failed,
  withdrawn: Decision.Withdrawn,
};

const STATUS_OF: Record<number, FinalStatus> = {
  [Decision.Succeeded]: 'succeeded',
  [Decision.SoldOut]: 'sold_out',
  [Decision.OverLimit]: 'rejected',
  [Decision.Expired]: 'succeeded',
  [Decision.Failed]: 'failed',
};

/**
 * Processes one batch of purchases (see the file header). Never throws: a transient failure sends the batch's
 * purchases through the retry policy.
 */
export async function processBatch(w: WorkerContext, items: Item[]): Promise<void> {
  const failedBefore = items.filter((it) => it.msg.properties.headers?.[FINAL_STATUS_HEADER] === 'failed');
  const toDecide = failedBefore.length ? items.filter((it) => !failedBefore.includes(it)) : items;
  try {
    for (const it of failedBefore) await recordFailure(w, it);
    if (toDecide.length) await decideAndPersist(w, toDecide);
  } catch (err) {
    quietFor(w.d.logger).warn({ err: (err as Error).message, size: items.length }, 'transient failure; retrying the batch later');
    await Promise.all(items.map((it) => retryOrFail(w, it, (err as Error).message)));
  }
}

async function decideAndPersist(w: WorkerContext, items: Item[]): Promise<void> {
  let pending = items;
  for (let round = 0; pending.length > 0; round++) {
    if (round === 3) throw new Error(`${pending.length} decisions went stale three times: the sale keeps being rebuilt`);
    const stale = await decideRound(w, pending);
    if (stale.length) w.emit('stale', stale.length);
    // Decided under an epoch PostgreSQL has moved past: Redis is behind (another process rebuilt the sale and
    // has not loaded it yet, or died before it did). Load the newest state, then decide those again.
    for (const saleId of new Set(stale.map((it) => it.m.saleId))) {
      w.d.logger.warn({ saleId, count: stale.length }, 'decisions of an older epoch refused by PostgreSQL; reloading the sale');
      await loadSale(w.d.db, w.d.redis, w.d.config.REDIS_KEY_PREFIX, saleId, { force: true });
    }
    pending = stale;
  }
}

/** Decides, persists, schedules expiries, writes results and acks; @returns the items PostgreSQL found stale. */
async function decideRound(w: WorkerContext, items: Item[]): Promise<Item[]> {
  const { redis, db, config } = w.d;
  const prefix = config.REDIS_KEY_PREFIX;
  const decided = await decideAll(w, items);

  const toPersist: { it: Item; r: DecideResult; p: DecidedPurchase }[] = [];
  for (const [it, r] of decided) {
    if (r.decision === Decision.Withdrawn) {
      settleItem(it, 'ack');
      w.emit('withdrawn', it.m.requestId);
      continue;
    }
    const status = STATUS_OF[r.decision];
    if (!status) throw new Error(`Unexpected decision ${r.decision} for ${it.m.requestId}`);
    const { requestId, saleId, userId, quantity } = it.m;
    const reason = REASONS[status];
    toPersist.push({ it, r, p: { requestId, saleId, userId, quantity, status, epoch: r.epoch, ...(reason ? { reason } : {}) } });
  }
  if (toPersist.length === 0) return [];
  // The same request twice in one batch (a redelivery, or the sweeper's re-publish): write it once, settle both.
  const twins = new Map<string, Item[]>();
  const seen = new Set<string>();
  const unique = toPersist.filter(({ it, p }) => {
    if (!seen.has(p.requestId)) {
      seen.add(p.requestId);
      return true;
    }
    twins.set(p.requestId, [...(twins.get(p.requestId) ?? []), it]);
    return false;
  });

  const { decisions, stale } = await persistDecisions(w.d.sql, unique.map((x) => x.p), config.PAYMENT_WINDOW_SECONDS * 1000);
  const staleIds = new Set(stale);

  // The batch's reservations get their expiry message before the results are visible; re-sent on redelivery (the
  // expiry is idempotent), so a crash between the two never leaves a reservation that cannot expire.
  const now = new Date().toISOString();
  const done: { it: Item; state: PurchaseState }[] = [];
  const withdrawn: Item[] = [];
  const reservations: Reservation[] = [];
  for (const { it, r } of unique) {
    const pg = decisions.get(it.m.requestId);
    if (!pg) continue; // stale
    if (!pg.fresh && !r.replayed && r.decision === Decision.Succeeded && pg.status !== 'succeeded') {
      // Redis took units for a request PostgreSQL had already decided otherwise, or that the API withdrew (its
      // shopper was told 503) before Redis lost that: give them back.
      await release(redis, saleKeys(prefix, it.m.saleId), { ...it.m, as: RELEASED_AS[pg.status] });
      if (pg.status !== 'withdrawn') w.d.logger.error({ requestId: it.m.requestId, pg: pg.status }, 'Redis decided a request PostgreSQL had decided');
    }
    if (pg.status === 'withdrawn') {
      withdrawn.push(it);
      continue;
    }
    done.push({
      it,
      state: {
        requestId: it.m.requestId,
        saleId: it.m.saleId,
        userId: it.m.userId,
        status: pg.status,
        ...(pg.orderId ? { orderId: pg.orderId } : {}),
        ...(pg.expiresAt ? { expiresAt: pg.expiresAt.toISOString() } : {}),
        ...(pg.reason ? { reason: pg.reason } : {}),
        acceptedAt: new Date(it.m.admittedAt).toISOString(),
        updatedAt: now,
        version: FINAL_VERSION,
      },
    });
    if (pg.status === 'succeeded' && pg.orderId) {
      const { requestId, saleId, userId, quantity } = it.m;
      reservations.push({ orderId: pg.orderId, requestId, saleId, userId, quantity });
    }
  }
  if (reservations.length) await scheduleExpiry(w, reservations);

  // One call per sale stores and announces its results (its states share the sale's slot, so its shard on a Redis
  // Cluster); the sales of a batch are written together.
  const bySale = new Map<string, { key: string; version: number; body: string }[]>();
  for (const { state } of done) {
    const states = bySale.get(state.saleId) ?? [];
    if (states.length === 0) bySale.set(state.saleId, states);
    states.push({ key: purchaseKey(prefix, state.saleId, state.requestId), version: state.version, body: JSON.stringify(state) });
  }
  await Promise.all([...bySale.values()].map((states) => putStates(redis, states, STATE_TTL_S)));

  for (const it of withdrawn) {
    settleItem(it, 'ack');
    for (const twin of twins.get(it.m.requestId) ?? []) settleItem(twin, 'ack');
    w.emit('withdrawn', it.m.requestId);
  }
  for (const { it, state } of done) {
    settleItem(it, 'ack');
    for (const twin of twins.get(it.m.requestId) ?? []) settleItem(twin, 'ack');
    w.emit('decided', state);
  }
  return unique.filter((x) => staleIds.has(x.it.m.requestId)).flatMap((x) => [x.it, ...(twins.get(x.it.m.requestId) ?? [])]);
}
