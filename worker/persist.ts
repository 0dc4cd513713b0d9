/**
 * Persists a batch of decisions in one PostgreSQL statement: the decision of every request (`purchases`) and an
 * order for each new success. Idempotent per request: a decision already in PostgreSQL wins and is returned, so a
 * redelivered message never makes a second order.
 *
 * The epoch fence: the statement holds each sale's row in share mode and writes only the decisions taken under the
 * sale's current epoch. Rebuilding Redis bumps the epoch under the row's exclusive lock (core/sales.ts), so no
 * decision taken in a Redis that has since lost its state, or been rebuilt, can reach PostgreSQL: such requests
 * come back as `stale` and are decided again. Batches do not block each other (share locks), so the sale's row is
 * no bottleneck.
 *
 * The statement goes through `pg` directly rather than Prisma's `$queryRaw`, whose parameters are eight arrays
 * Prisma would encode value by value; the schema, migrations and every other query stay Prisma's. Its cost is the
 * inserts themselves: 43-47 µs of PostgreSQL backend CPU a decision in 500-row batches (two rows, five index
 * entries, two foreign-key checks), about a tenth of it planning, which a prepared statement cannot save: after five
 * runs PostgreSQL switched it to a generic plan that cost twice as much.
 */
import { createHash } from 'node:crypto';
import type { PurchaseStatus } from '../core/purchase-state.ts';

export type FinalStatus = Exclude<PurchaseStatus, 'queued'>;

export interface DecidedPurchase {
  requestId: string;
  saleId: string;
  userId: string;
  quantity: number;
  status: FinalStatus;
  reason?: string;
  /** The sale's epoch the decision was taken under (see decide-6.lua). */
  epoch: string;
}

/** The decision PostgreSQL holds for a request after the batch. */
export interface PersistedDecision {
  /** `withdrawn`: the API withdrew the request before it answered 503 (see api/withdraw-admission.ts): drop it. */
  status: FinalStatus | 'withdrawn';
  reason?: string;
  orderId?: string;
  /** Set on success: when the reservation expires unless paid. */
  expiresAt?: Date;
  /** True when this batch wrote the decision; false when PostgreSQL had one already. */
  fresh: boolean;
}

/** The order id of a request: derived from the request id (UUID v8 layout), so every retry computes the same one. */
export function orderIdFor(requestId: string): string {
  const h = createHash('sha256').update(`order:${requestId}`).digest('hex');
  const variant = ((parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(18, 20)}-${h.slice(20, 32)}`;
}

/** A connection pool or client of `pg`: the batch write goes through it, see the file header. */
export interface Sql {
  query<R>(text: string, values: unknown[]): Promise<{ rows: R[] }>;
}

const BATCH_STATEMENT = `
    WITH decided AS (
      SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::text[], $6::text[], $7::uuid[], $8::bigint[])
             AS t(request_id, sale_id, user_id, quantity, status, reason, order_id, epoch)
    ), fence AS (
      SELECT s.id, s.epoch FROM sales s WHERE s.id IN (SELECT sale_id FROM decided) FOR SHARE
    ), fresh AS (
      INSERT INTO purchases (request_id, sale_id, user_id, quantity, status, reason, order_id)
      SELECT d.request_id, d.sale_id, d.user_id, d.quantity, d.status::purchase_status, d.reason, d.order_id
      FROM decided d JOIN fence f ON f.id = d.sale_id AND f.epoch = d.epoch
      ON CONFLICT (request_id) DO NOTHING
      RETURNING request_id, sale_id, user_id, quantity, status, reason, order_id
    ), wins AS (
      INSERT INTO orders (id, request_id, sale_id, user_id, quantity, status, expires_at)
      SELECT order_id, request_id, sale_id, user_id, quantity, 'pending_payment', $9 FROM fresh WHERE status = 'succeeded'
      RETURNING 1
    )
    SELECT request_id::text AS id, NULL::bigint AS epoch FROM fresh
    UNION ALL
    SELECT id::text, epoch FROM fence`;

/** The decisions PostgreSQL held already for requests a batch did not write (a redelivery, a twin): rare. */
const KNOWN_STATEMENT = `
    SELECT p.request_id, p.status::text AS status, p.reason, p.order_id, o.expires_at
    FROM purchases p LEFT JOIN orders o ON o.id = p.order_id
    WHERE p.request_id = ANY($1::uuid[])`;

/**
 * Writes a batch of decisions in one statement, so in one round trip: data-modifying CTEs run exactly once each and
 * atomically with the statement (https://www.postgresql.org/docs/current/queries-with.html#QUERIES-WITH-MODIFYING).
 * It returns the ids of the rows it wrote (as given: nothing else is read back) and the epoch of each sale it
 * fenced (a row with an epoch). From those, a request is stale (its epoch is not its sale's), fresh (written now), or
 * decided before, whose decision a second query reads (a redelivery or a twin: rare, and never on a first delivery;
 * ON CONFLICT waits for a twin's transaction to end, so its decision is committed by then). The statement joins
 * nothing PostgreSQL would plan from table statistics: with statistics of empty tables (a new database, or
 * autovacuum behind a sale that grows its tables by 100,000 rows in seconds) an earlier version was planned with
 * nested loops over its CTEs, quadratic in the batch, and sequential scans of `purchases`, doubling PostgreSQL's CPU
 * per decision. A request decided before whose decision cannot be read fails the batch, which is retried.
 * @param paymentWindowMs - reservation lifetime, ms: an order expires this long after its decision.
 * @returns the decision PostgreSQL holds for each request written or known, and the ids of the requests refused
 *   because their sale's epoch moved on (decide them again).
 * @throws on a database failure (nothing was written; the caller retries the batch later).
 */
export async function persistDecisions(
  sql: Sql,
  batch: DecidedPurchase[],
  paymentWindowMs: number,
): Promise<{ decisions: Map<string, PersistedDecision>; stale: string[] }> {
  const expiresAt = new Date(Date.now() + paymentWindowMs);
  const col = <K extends keyof DecidedPurchase>(k: K) => batch.map((p) => p[k] ?? null);
  const orderIds = batch.map((p) => (p.status === 'succeeded' ? orderIdFor(p.requestId) : null));
  const { rows } = await sql.query<{ id: string; epoch: string | null }>(
    BATCH_STATEMENT,
    [col('requestId'), col('saleId'), col('userId'), col('quantity'), col('status'), col('reason'), orderIds, col('epoch'), expiresAt],
  );
  const written = new Set<string>();
  const epochOf = new Map<string, string>();
  for (const r of rows) {
    if (r.epoch === null) written.add(r.id);
    else epochOf.set(r.id, String(r.epoch));
  }
  const decisions = new Map<string, PersistedDecision>();
  batch.forEach((p, i) => {
    if (!written.has(p.requestId) || decisions.has(p.requestId)) return;
    decisions.set(p.requestId, {
      status: p.status,
      ...(p.reason ? { reason: p.reason } : {}),
      ...(p.status === 'succeeded' ? { orderId: orderIds[i]!, expiresAt } : {}),
      fresh: true,
    });
  });
  const known = batch.filter((p) => epochOf.get(p.saleId) === p.epoch && !decisions.has(p.requestId)).map((p) => p.requestId);
  if (known.length) {
    const before = await sql.query<{ request_id: string; status: PersistedDecision['status']; reason: string | null; order_id: string | null; expires_at: Date | null }>(KNOWN_STATEMENT, [known]);
    for (const r of before.rows) {
      decisions.set(r.request_id, {
        status: r.status,
        ...(r.reason ? { reason: r.reason } : {}),
        ...(r.order_id ? { orderId: r.order_id } : {}),
        ...(r.expires_at ? { expiresAt: new Date(r.expires_at) } : {}),
        fresh: false,
      });
    }
    const unread = known.filter((id) => !decisions.has(id));
    if (unread.length) throw new Error(`No decision for ${unread.length} request(s) after writing them, e.g. ${unread[0]}`);
  }
  return { decisions, stale: batch.filter((p) => !decisions.has(p.requestId)).map((p) => p.requestId) };
}
