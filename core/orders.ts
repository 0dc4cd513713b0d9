/**
 * Reservations: a succeeded purchase is an order `pending_payment` until it is paid or its payment window closes.
 * Paying and expiring are each one conditional UPDATE on the order row, so when they race PostgreSQL's row lock
 * makes exactly one win: the loser's WHERE no longer matches (READ COMMITTED re-checks it after the lock).
 *
 * The delayed expiry message is the timer (its queue's TTL equals the payment window and it is published after the
 * order is written, so it never fires early); paying checks the clock itself, so a payment after `expiresAt`
 * is refused even if the expiry message has not arrived yet.
 */
import type { RedisClient } from './redis/client.ts';
import type { Db } from './db/client.ts';
import type { Reservation } from './messages.ts';
import { saleKeys } from './redis/keys.ts';
import { Decision, release } from './redis/scripts.ts';

export type OrderStatus = 'pending_payment' | 'paid' | 'expired';

/** The owner's view of an order. Times are ISO 8601. */
export interface OrderView {
  orderId: string;
  requestId: string;
  saleId: string;
  quantity: number;
  status: OrderStatus;
  expiresAt: string;
  paidAt: string | null;
  expiredAt: string | null;
  createdAt: string;
}

type OrderRow = Awaited<ReturnType<Db['order']['findUniqueOrThrow']>>;

function view(o: OrderRow): OrderView {
  return {
    orderId: o.id,
    requestId: o.requestId,
    saleId: o.saleId,
    quantity: o.quantity,
    status: o.status,
    expiresAt: o.expiresAt.toISOString(),
    paidAt: o.paidAt?.toISOString() ?? null,
    expiredAt: o.expiredAt?.toISOString() ?? null,
    createdAt: o.createdAt.toISOString(),
  };
}

/** Reads an order for its owner. @returns undefined when it does not exist or belongs to someone else. */
export async function getOrder(db: Db, orderId: string, userId: string): Promise<OrderView | undefined> {
  const o = await db.order.findUnique({ where: { id: orderId } });
  return o && o.userId === userId ? view(o) : undefined;
}

export type PayResult = { outcome: 'paid'; order: OrderView } | { outcome: 'expired'; order: OrderView } | { outcome: 'not_found' };

/**
 * Pays an order (simulated payment). Idempotent: paying a paid order answers it again.
 * @returns paid (now or before), expired (its window closed, or it expired), or not_found (unknown or not the owner's).
 */
export async function payOrder(db: Db, orderId: string, userId: string): Promise<PayResult> {
  const updated = await db.$queryRaw<{ id: string }[]>`
    UPDATE orders SET status = 'paid', paid_at = now()
    WHERE id = ${orderId}::uuid AND user_id = ${userId} AND status = 'pending_payment' AND expires_at > now()
    RETURNING id`;
  const o = await db.order.findUnique({ where: { id: orderId } });
  if (!o || o.userId !== userId) return { outcome: 'not_found' };
  if (updated.length === 1 || o.status === 'paid') return { outcome: 'paid', order: view(o) };
  return { outcome: 'expired', order: view(o) };
}

export type ExpireResult = 'expired' | 'already_expired' | 'paid' | 'missing';

/**
 * Expires an unpaid reservation: the order becomes `expired`, then Redis gets the units back and the shopper's slot
 * is freed. Idempotent: a redelivered expiry finds the order expired and only repeats the (idempotent) Redis
 * release, which covers a crash between the commit and the release. The sale's row is held in share mode, so a
 * rebuild of the sale (which takes it exclusively) sees the expiry either wholly before or wholly after.
 */
export async function expireReservation(db: Db, redis: RedisClient, prefix: string, m: Reservation): Promise<ExpireResult> {
  const result = await db.$transaction(async (tx) => {
    await tx.$queryRaw`SELECT 1 FROM sales WHERE id = ${m.saleId}::uuid FOR SHARE`;
    const rows = await tx.$queryRaw<{ quantity: number }[]>`
      UPDATE orders SET status = 'expired', expired_at = now()
      WHERE id = ${m.orderId}::uuid AND status = 'pending_payment'
      RETURNING quantity`;
    if (rows.length === 0) {
      const o = await tx.order.findUnique({ where: { id: m.orderId }, select: { status: true } });
      return !o ? 'missing' : o.status === 'paid' ? 'paid' : 'already_expired';
    }
    return 'expired';
  });
  if (result === 'expired' || result === 'already_expired') {
    await release(redis, saleKeys(prefix, m.saleId), { requestId: m.requestId, userId: m.userId, quantity: m.quantity, as: Decision.Expired });
  }
  return result;
}
