/**
 * Persists a batch of decisions in one PostgreSQL transaction: the decision of every request (`purchases`), an
 * order for each new success, the sale's sold units and each buyer's units. Idempotent per request: a decision
 * already in PostgreSQL wins and is returned, so a redelivered message never makes a second order.
 *
 * The CHECK constraints on `sales.sold` and `sale_buyers.units` are the last guard against an oversell or a
 * purchase beyond the per-user limit when Redis lost its state; a batch that trips one is re-run one request at a
 * time so only the offending request is refused.
 */
import { createHash } from 'node:crypto';
import type { Db } from '../core/db/client.ts';
import type { PurchaseStatus } from '../core/purchase-state.ts';

export type FinalStatus = Exclude<PurchaseStatus, 'queued'>;

export interface DecidedPurchase {
  requestId: string;
  saleId: string;
  userId: string;
  quantity: number;
  status: FinalStatus;
  reason?: string;
}

/** The decision PostgreSQL holds for a request after the batch. */
export interface PersistedDecision {
  status: FinalStatus;
  reason?: string;
  orderId?: string;
  /** Set on success: when the reservation expires unless paid. */
  expiresAt?: Date;
  /** True when this batch wrote the decision; false when PostgreSQL had one already. */
  fresh: boolean;
}

/** A request that the PostgreSQL guard refused: Redis thought the units were free, PostgreSQL knew better. */
export interface Refusal {
  requestId: string;
  status: 'sold_out' | 'rejected';
}

/** The order id of a request: derived from the request id (UUID v8 layout), so every retry computes the same one. */
export function orderIdFor(requestId: string): string {
  const h = createHash('sha256').update(`order:${requestId}`).digest('hex');
  const variant = ((parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(18, 20)}-${h.slice(20, 32)}`;
}

const CHECK_VIOLATION = '23514';

function isCheckViolation(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string; originalCode?: string }; meta?: { code?: string } };
  const text = String((err as Error)?.message ?? '');
  return e?.code === CHECK_VIOLATION || e?.cause?.originalCode === CHECK_VIOLATION || e?.meta?.code === CHECK_VIOLATION || /check constraint/i.test(text);
}

/**
 * Writes a batch of decisions.
 * @param paymentWindowMs - reservation lifetime, ms: an order expires this long after its decision.
 * @returns the decision PostgreSQL holds for each request, and the requests the CHECK guard refused.
 * @throws on a database failure (the caller retries the batch later; nothing was written).
 */
export async function persistDecisions(
  db: Db,
  batch: DecidedPurchase[],
  paymentWindowMs: number,
): Promise<{ decisions: Map<string, PersistedDecision>; refused: Refusal[] }> {
  try {
    return { decisions: await writeBatch(db, batch, paymentWindowMs), refused: [] };
  } catch (err) {
    if (!isCheckViolation(err) || batch.length === 0) throw err;
  }
  // Only after Redis lost its state: find the offending requests one at a time.
  const decisions = new Map<string, PersistedDecision>();
  const refused: Refusal[] = [];
  for (const p of batch) {
    try {
      for (const [id, d] of await writeBatch(db, [p], paymentWindowMs)) decisions.set(id, d);
    } catch (err) {
      if (!isCheckViolation(err) || p.status !== 'succeeded') throw err;
      const overLimit = (await buyerUnits(db, p.saleId, p.userId)) + p.quantity > (await perUserLimit(db, p.saleId));
      const status = overLimit ? 'rejected' : 'sold_out';
      const reason = overLimit ? 'You already hold the most this sale allows per shopper.' : 'Every unit is sold.';
      for (const [id, d] of await writeBatch(db, [{ ...p, status, reason }], paymentWindowMs)) decisions.set(id, d);
      refused.push({ requestId: p.requestId, status });
    }
  }
  return { decisions, refused };
}

async function buyerUnits(db: Db, saleId: string, userId: string): Promise<number> {
  const b = await db.saleBuyer.findUnique({ where: { saleId_userId: { saleId, userId } }, select: { units: true } });
  return b?.units ?? 0;
}

async function perUserLimit(db: Db, saleId: string): Promise<number> {
  const s = await db.sale.findUnique({ where: { id: saleId }, select: { perUserLimit: true } });
  return s?.perUserLimit ?? 0;
}

/**
 * One statement, so one round trip and the shortest hold of the sale row's lock: data-modifying CTEs run exactly
 * once each and atomically with the statement (https://www.postgresql.org/docs/current/queries-with.html#QUERIES-WITH-MODIFYING).
 * The final SELECT sees the snapshot from before the statement, which is exactly the decisions PostgreSQL held
 * already; the fresh ones come from `fresh`.
 */
async function writeBatch(db: Db, batch: DecidedPurchase[], paymentWindowMs: number): Promise<Map<string, PersistedDecision>> {
  const expiresAt = new Date(Date.now() + paymentWindowMs);
  const col = <K extends keyof DecidedPurchase>(k: K) => batch.map((p) => p[k] ?? null);
  const orderIds = batch.map((p) => (p.status === 'succeeded' ? orderIdFor(p.requestId) : null));
  const rows = await db.$queryRaw<
    { request_id: string; status: FinalStatus; reason: string | null; order_id: string | null; expires_at: Date | null; fresh: boolean }[]
  >`
    WITH input AS (
      SELECT * FROM unnest(${col('requestId')}::uuid[], ${col('saleId')}::uuid[], ${col('userId')}::text[],
                           ${col('quantity')}::int[], ${col('status')}::text[], ${col('reason')}::text[], ${orderIds}::uuid[])
             AS t(request_id, sale_id, user_id, quantity, status, reason, order_id)
    ), fresh AS (
      INSERT INTO purchases (request_id, sale_id, user_id, quantity, status, reason, order_id)
      SELECT request_id, sale_id, user_id, quantity, status::purchase_status, reason, order_id FROM input
      ON CONFLICT (request_id) DO NOTHING
      RETURNING request_id
    ), wins AS (
      INSERT INTO orders (id, request_id, sale_id, user_id, quantity, status, expires_at)
      SELECT i.order_id, i.request_id, i.sale_id, i.user_id, i.quantity, 'pending_payment', ${expiresAt}
      FROM input i JOIN fresh f USING (request_id)
      WHERE i.status = 'succeeded'
      RETURNING sale_id, user_id, quantity, expires_at
    ), sold AS (
      UPDATE sales SET sold = sales.sold + w.units
      FROM (SELECT sale_id, sum(quantity)::int AS units FROM wins GROUP BY sale_id) w
      WHERE sales.id = w.sale_id
      RETURNING sales.id
    ), buyers AS (
      INSERT INTO sale_buyers (sale_id, user_id, units, max_units)
      SELECT w.sale_id, w.user_id, w.units, s.per_user_limit
      FROM (SELECT sale_id, user_id, sum(quantity)::int AS units FROM wins GROUP BY sale_id, user_id) w
      JOIN sales s ON s.id = w.sale_id
      ORDER BY w.sale_id, w.user_id
      ON CONFLICT (sale_id, user_id) DO UPDATE SET units = sale_buyers.units + excluded.units
      RETURNING 1
    )
    SELECT i.request_id,
           CASE WHEN f.request_id IS NULL THEN p.status::text ELSE i.status END AS status,
           CASE WHEN f.request_id IS NULL THEN p.reason ELSE i.reason END AS reason,
           CASE WHEN f.request_id IS NULL THEN p.order_id ELSE i.order_id END AS order_id,
           CASE WHEN f.request_id IS NULL THEN o.expires_at WHEN i.status = 'succeeded' THEN ${expiresAt}::timestamptz END AS expires_at,
           f.request_id IS NOT NULL AS fresh
    FROM input i
    LEFT JOIN fresh f USING (request_id)
    LEFT JOIN purchases p ON f.request_id IS NULL AND p.request_id = i.request_id
    LEFT JOIN orders o ON o.id = p.order_id`;
  const decisions = new Map<string, PersistedDecision>();
  for (const r of rows) {
    if (!r.status) continue; // not fresh and not in PostgreSQL: cannot happen inside one statement, but never guess
    decisions.set(r.request_id, {
      status: r.status,
      ...(r.reason ? { reason: r.reason } : {}),
      ...(r.order_id ? { orderId: r.order_id } : {}),
      ...(r.expires_at ? { expiresAt: new Date(r.expires_at) } : {}),
      fresh: r.fresh,
    });
  }
  return decisions;
}
