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

async function writeBatch(db: Db, batch: DecidedPurchase[], paymentWindowMs: number): Promise<Map<string, PersistedDecision>> {
  const expiresAt = new Date(Date.now() + paymentWindowMs);
  return db.$transaction(async (tx) => {
    const col = <K extends keyof DecidedPurchase>(k: K) => batch.map((p) => p[k] ?? null);
    const orderIds = batch.map((p) => (p.status === 'succeeded' ? orderIdFor(p.requestId) : null));
    const inserted = await tx.$queryRaw<{ request_id: string }[]>`
      INSERT INTO purchases (request_id, sale_id, user_id, quantity, status, reason, order_id)
      SELECT r, s, u, q, st::purchase_status, re, o
      FROM unnest(${col('requestId')}::uuid[], ${col('saleId')}::uuid[], ${col('userId')}::text[], ${col('quantity')}::int[],
                  ${col('status')}::text[], ${col('reason')}::text[], ${orderIds}::uuid[]) AS t(r, s, u, q, st, re, o)
      ON CONFLICT (request_id) DO NOTHING
      RETURNING request_id`;
    const fresh = new Set(inserted.map((r) => r.request_id));
    const wins = batch.filter((p) => p.status === 'succeeded' && fresh.has(p.requestId));

    if (wins.length) {
      await tx.$executeRaw`
        INSERT INTO orders (id, request_id, sale_id, user_id, quantity, status, expires_at)
        SELECT o, r, s, u, q, 'pending_payment', ${expiresAt}
        FROM unnest(${wins.map((p) => orderIdFor(p.requestId))}::uuid[], ${wins.map((p) => p.requestId)}::uuid[],
                    ${wins.map((p) => p.saleId)}::uuid[], ${wins.map((p) => p.userId)}::text[], ${wins.map((p) => p.quantity)}::int[])
             AS t(o, r, s, u, q)`;
      const perSale = sumBy(wins, (p) => p.saleId);
      const perBuyer = sumBy(wins, (p) => `${p.saleId}\u0000${p.userId}`);
      await tx.$executeRaw`
        UPDATE sales SET sold = sales.sold + t.units
        FROM unnest(${[...perSale.keys()]}::uuid[], ${[...perSale.values()]}::int[]) AS t(id, units)
        WHERE sales.id = t.id`;
      const buyerKeys = [...perBuyer.keys()].map((k) => k.split('\u0000') as [string, string]);
      await tx.$executeRaw`
        INSERT INTO sale_buyers (sale_id, user_id, units, max_units)
        SELECT t.s, t.u, t.units, sales.per_user_limit
        FROM unnest(${buyerKeys.map((k) => k[0])}::uuid[], ${buyerKeys.map((k) => k[1])}::text[], ${[...perBuyer.values()]}::int[])
             AS t(s, u, units)
        JOIN sales ON sales.id = t.s
        ON CONFLICT (sale_id, user_id) DO UPDATE SET units = sale_buyers.units + excluded.units`;
    }

    const decisions = new Map<string, PersistedDecision>();
    for (const p of batch) {
      if (!fresh.has(p.requestId)) continue;
      decisions.set(p.requestId, {
        status: p.status,
        ...(p.reason ? { reason: p.reason } : {}),
        ...(p.status === 'succeeded' ? { orderId: orderIdFor(p.requestId), expiresAt } : {}),
        fresh: true,
      });
    }
    const known = batch.filter((p) => !fresh.has(p.requestId)).map((p) => p.requestId);
    if (known.length) {
      const rows = await tx.$queryRaw<{ request_id: string; status: FinalStatus; reason: string | null; order_id: string | null; expires_at: Date | null }[]>`
        SELECT p.request_id, p.status::text AS status, p.reason, p.order_id, o.expires_at
        FROM purchases p LEFT JOIN orders o ON o.id = p.order_id
        WHERE p.request_id = ANY(${known}::uuid[])`;
      for (const r of rows) {
        decisions.set(r.request_id, {
          status: r.status,
          ...(r.reason ? { reason: r.reason } : {}),
          ...(r.order_id ? { orderId: r.order_id } : {}),
          ...(r.expires_at ? { expiresAt: r.expires_at } : {}),
          fresh: false,
        });
      }
    }
    return decisions;
  });
}

function sumBy<T extends { quantity: number }>(items: T[], key: (t: T) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of items) m.set(key(t), (m.get(key(t)) ?? 0) + t.quantity);
  return new Map([...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
