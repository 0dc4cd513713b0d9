/**
 * Sales: created in PostgreSQL, then loaded into Redis, where admission and decisions run. When Redis has lost a
 * sale (it keeps nothing on disk), any process rebuilds it from PostgreSQL under a new epoch (see `load-6.lua` and
 * `snapshotSale`).
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { RedisClient } from './redis/client.ts';
import type { Db } from './db/client.ts';
import { loadedSalesKey, saleKeys } from './redis/keys.ts';
import { Decision, endAt, load, type SaleSnapshot } from './redis/scripts.ts';
import { rememberWaitingRoom, waitingRoomCreate, type WaitingRoom, type WaitingRoomInput } from './waiting-room/settings.ts';

export type SaleState = 'upcoming' | 'live' | 'sold_out' | 'ended';

export interface SaleRecord {
  id: string;
  name: string;
  stock: number;
  perUserLimit: number;
  startsAt: Date;
  endsAt: Date | null;
}

/** The public view of a sale. Times are ISO 8601. */
export interface SaleView {
  id: string;
  name: string;
  stock: number;
  remaining: number;
  startsAt: string;
  endsAt: string | null;
  perUserLimit: number;
  state: SaleState;
}

const saleSelect = { id: true, name: true, stock: true, perUserLimit: true, startsAt: true, endsAt: true } as const;

/** Creates a sale in PostgreSQL and loads it into Redis. */
export async function createSale(
  db: Db,
  redis: RedisClient,
  prefix: string,
  input: { name: string; stock: number; perUserLimit: number; startsAt: Date; endsAt: Date | null; waitingRoom?: WaitingRoomInput },
): Promise<SaleRecord & { waitingRoom: WaitingRoom | null }> {
  const { waitingRoom, ...fields } = input;
  const data = { id: randomUUID(), ...fields, ...(waitingRoom ? { waitingRoom: waitingRoomCreate(waitingRoom, fields.startsAt) } : {}) };
  const created = await db.sale.create({ data, select: { ...saleSelect, waitingRoom: true } });
  const { waitingRoom: room, ...sale } = created;
  rememberWaitingRoom(sale.id, room as WaitingRoom | null);
  directory.ids.add(sale.id);
  listed = undefined; // this process lists the new sale at once; others within LIST_TTL_MS
  await loadSale(db, redis, prefix, sale.id);
  return { ...sale, waitingRoom: room as WaitingRoom | null };
}

/**
 * A process keeps the sales it read for a second (stock is counted in Redis and orders; only `endsAt` can change,
 * when an admin ends a sale early), so demo-page visitors do not each cost a database query. Only sales PostgreSQL
 * holds enter, so the map is bounded by the sales admins create, not by what clients send.
 */
const knownSales = new Map<string, { at: number; sale: SaleRecord }>();
const KNOWN_SALES_MAX = 10_000;
/** How long the sale list and a sale record are served from memory, ms: every visitor of the demo page reads them. */
const LIST_TTL_MS = 1000;
let listed: { at: number; limit: number; sales: Promise<SaleRecord[]> } | undefined;

/**
 * The ids of every sale, read incrementally (sales created since the last read, with an overlap for transactions
 * that committed late), at most once per DIRECTORY_REFRESH_MS however many unknown ids arrive: a flood of random
 * sale ids costs PostgreSQL a few reads a second in all, not one per id, and never a write.
 */
const DIRECTORY_REFRESH_MS = 250;
const DIRECTORY_OVERLAP_MS = 10_000;
const directory = { ids: new Set<string>(), since: new Date(0), at: 0, pending: undefined as Promise<void> | undefined };

async function refreshDirectory(db: Db): Promise<void> {
  const wait = directory.at + DIRECTORY_REFRESH_MS - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  directory.at = Date.now();
  const rows = await db.sale.findMany({ where: { createdAt: { gte: directory.since } }, select: { id: true, createdAt: true } });
  for (const r of rows) {
    directory.ids.add(r.id);
    const overlap = new Date(r.createdAt.getTime() - DIRECTORY_OVERLAP_MS);
    if (overlap > directory.since) directory.since = overlap;
  }
}

/**
 * True when PostgreSQL may hold sale `id` (canonical form). A miss waits for the next directory refresh, shared by
 * every caller of the moment, so a sale created a moment ago on another node is found.
 */
export async function saleExists(db: Db, id: string): Promise<boolean> {
  if (knownSales.has(id) || directory.ids.has(id)) return true;
  directory.pending ??= refreshDirectory(db).finally(() => (directory.pending = undefined));
  await directory.pending;
  return directory.ids.has(id);
}

/** Reads a sale, from this process's memory when read less than LIST_TTL_MS ago. @returns null when there is no such sale. */
export async function findSale(db: Db, id: string): Promise<SaleRecord | null> {
  const known = knownSales.get(id);
  if (known && Date.now() - known.at < LIST_TTL_MS) return known.sale;
  if (!known && !(await saleExists(db, id))) return null;
  const sale = await db.sale.findUnique({ where: { id }, select: saleSelect });
  if (sale) {
    if (knownSales.size >= KNOWN_SALES_MAX) knownSales.clear();
    knownSales.set(id, { at: Date.now(), sale });
  }
  return sale;
}

/** Every sale, newest first, at most `limit`; read from PostgreSQL at most once a second per process. */
export function listSales(db: Db, limit = 100): Promise<SaleRecord[]> {
  const now = Date.now();
  if (!listed || listed.limit !== limit || now - listed.at >= LIST_TTL_MS) {
    const sales = db.sale.findMany({ select: saleSelect, orderBy: { createdAt: 'desc' }, take: limit });
    listed = { at: now, limit, sales };
    sales.catch(() => (listed = undefined));
  }
  return listed.sales;
}

/**
 * Reads the remaining units of sales: from Redis, or, for a sale Redis does not hold, from PostgreSQL (stock minus
 * the units of active orders). Reading never rebuilds a sale: that is the purchase path's and the worker's job,
 * and a listing of a hundred sales must not start a hundred rebuilds.
 * @returns saleId -> remaining units.
 */
export async function remainingOf(db: Db, redis: RedisClient, prefix: string, ids: string[]): Promise<Map<string, number>> {
  const hot = await Promise.all(ids.map((id) => redis.hget(saleKeys(prefix, id).sale, 'remaining')));
  const remaining = new Map(ids.flatMap((id, i) => (hot[i] === null ? [] : [[id, Number(hot[i])] as [string, number]])));
  const cold = ids.filter((id) => !remaining.has(id));
  if (cold.length) {
    const rows = await db.$queryRaw<{ id: string; remaining: number }[]>`
      SELECT s.id, s.stock - coalesce(sum(o.quantity) FILTER (WHERE o.status <> 'expired'), 0)::int AS remaining
      FROM sales s LEFT JOIN orders o ON o.sale_id = s.id
      WHERE s.id = ANY(${cold}::uuid[]) GROUP BY s.id`;
    for (const r of rows) remaining.set(r.id, r.remaining);
  }
  return remaining;
}

/** How long `endSale` keeps re-applying the end while a rebuild of the sale is in flight, ms. */
const END_SETTLE_MS = 5000;

/**
 * Ends a sale now (or keeps an earlier end): `ends_at` in PostgreSQL first, so a rebuild loads it, then the sale's
 * Redis hash (`end-1.lua`), where every API node's admission reads it: admission stops at once on every node. A
 * rebuild that read the old `ends_at` before this update may load it into Redis after the script ran; while
 * PostgreSQL's epoch is ahead of Redis's (a rebuild in flight), the end is applied again, for up to END_SETTLE_MS.
 * @returns the sale as it is now, or null when there is no such sale.
 */
export async function endSale(db: Db, redis: RedisClient, prefix: string, saleId: string, now = new Date()): Promise<SaleRecord | null> {
  const rows = await db.$queryRaw<{ ends_at: Date; epoch: bigint }[]>`
    UPDATE sales SET ends_at = CASE WHEN ends_at IS NULL OR ends_at > ${now} THEN ${now} ELSE ends_at END
    WHERE id = ${saleId}::uuid RETURNING ends_at, epoch`;
  const row = rows[0];
  if (!row) return null;
  knownSales.delete(saleId);
  listed = undefined;
  const keys = saleKeys(prefix, saleId);
  const endsAtMs = row.ends_at.getTime();
  for (const until = Date.now() + END_SETTLE_MS; ; ) {
    // The epoch is read before the end is set: when it is current then, no load of an older snapshot can follow.
    const redisEpoch = await redis.hget(keys.sale, 'epoch');
    await endAt(redis, keys, endsAtMs);
    if (redisEpoch === null || BigInt(redisEpoch) >= row.epoch || Date.now() > until) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return findSale(db, saleId);
}

/** The public view of a sale at `now`. */
export function saleView(sale: SaleRecord, remaining: number, now = Date.now()): SaleView {
  let state: SaleState = 'live';
  if (now < sale.startsAt.getTime()) state = 'upcoming';
  else if (sale.endsAt && now >= sale.endsAt.getTime()) state = 'ended';
  else if (remaining <= 0) state = 'sold_out';
  return {
    id: sale.id,
    name: sale.name,
    stock: sale.stock,
    remaining,
    startsAt: sale.startsAt.toISOString(),
    endsAt: sale.endsAt?.toISOString() ?? null,
    perUserLimit: sale.perUserLimit,
    state,
  };
}

const decisionCode = {
  succeeded: Decision.Succeeded,
  sold_out: Decision.SoldOut,
  rejected: Decision.OverLimit,
  failed: Decision.Failed,
  withdrawn: Decision.Withdrawn,
} as const;

/**
 * Starts a new epoch for a sale and reads the snapshot Redis is rebuilt from: remaining units, the units each buyer
 * holds in active orders with the latest of those orders (what a 409 duplicate-purchase names), and every decision
 * taken, withdrawals included (so a rebuilt Redis answers redeliveries as before and drops withdrawn requests).
 *
 * The epoch bump takes the sale row's exclusive lock, so it waits for every batch still committing under the old
 * epoch (they hold the row in share mode, see worker/persist.ts) and for expiries; from then on, until this
 * transaction commits, nothing can change the sale's orders. The reads run after the lock (READ COMMITTED: each
 * statement sees what committed before it), so they see every order of the old epoch.
 * @returns undefined when the sale does not exist.
 */
export async function snapshotSale(db: Db, saleId: string): Promise<SaleSnapshot | undefined> {
  return db.$transaction(async (tx) => {
    const [sale] = await tx.$queryRaw<
      { stock: number; per_user_limit: number; starts_at: Date; ends_at: Date | null; epoch: bigint }[]
    >`UPDATE sales SET epoch = epoch + 1 WHERE id = ${saleId}::uuid RETURNING stock, per_user_limit, starts_at, ends_at, epoch`;
    if (!sale) return undefined;
    const buyers = await tx.$queryRaw<{ user_id: string; units: number; last: string }[]>`
      SELECT user_id, sum(quantity)::int AS units, (array_agg(request_id::text ORDER BY created_at DESC))[1] AS last
      FROM orders WHERE sale_id = ${saleId}::uuid AND status <> 'expired' GROUP BY user_id`;
    const purchases = await tx.purchase.findMany({ where: { saleId }, select: { requestId: true, status: true } });
    const expired = new Set(
      (await tx.order.findMany({ where: { saleId, status: 'expired' }, select: { requestId: true } })).map((o) => o.requestId),
    );
    const held = buyers.reduce((n, b) => n + b.units, 0);
    return {
      stock: sale.stock,
      remaining: sale.stock - held,
      perUserLimit: sale.per_user_limit,
      startsAtMs: sale.starts_at.getTime(),
      endsAtMs: sale.ends_at?.getTime() ?? 0,
      epoch: String(sale.epoch),
      buyers: buyers.map((b) => [b.user_id, b.units, b.last] as [string, number, string]),
      decisions: purchases.map(
        (p) => [p.requestId, expired.has(p.requestId) ? Decision.Expired : decisionCode[p.status]] as [string, Decision],
      ),
    };
  });
}

/**
 * Emits `loaded` ({ prefix, saleId, epoch }) each time this process loads a sale into Redis; an epoch above 1 is a
 * rebuild (the first load, at creation, is epoch 1). Metrics listen to it.
 */
export const saleLoads = new EventEmitter();

const inFlightLoads = new Map<string, Promise<'loaded' | 'present' | 'missing'>>();

/**
 * Loads a sale into Redis from PostgreSQL, with a new epoch, unless Redis has it (or, with `force`, even then: when
 * PostgreSQL refused decisions of an older epoch). Concurrent calls in one process share one load; across
 * processes the load script keeps the newest epoch.
 * @returns 'loaded' (this call loaded it), 'present' (already there), or 'missing' (no such sale).
 */
export function loadSale(
  db: Db,
  redis: RedisClient,
  prefix: string,
  saleId: string,
  o: { force?: boolean } = {},
): Promise<'loaded' | 'present' | 'missing'> {
  const key = `${prefix}|${saleId}|${o.force ? 'force' : ''}`;
  let pending = inFlightLoads.get(key);
  if (!pending) {
    pending = (async () => {
      const keys = saleKeys(prefix, saleId);
      if (!o.force && (await redis.exists(keys.sale))) return 'present' as const;
      // An unknown id must cost no write: the snapshot bumps the epoch in an UPDATE.
      if (!(await saleExists(db, saleId))) return 'missing' as const;
      const snapshot = await snapshotSale(db, saleId);
      if (!snapshot) return 'missing' as const;
      const loaded = await load(redis, keys, snapshot);
      await redis.sadd(loadedSalesKey(prefix), saleId);
      if (loaded) saleLoads.emit('loaded', { prefix, saleId, epoch: Number(snapshot.epoch) });
      return loaded ? ('loaded' as const) : ('present' as const);
    })().finally(() => inFlightLoads.delete(key));
    inFlightLoads.set(key, pending);
  }
  return pending;
}
