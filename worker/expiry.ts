/**
 * Reservation expiry: each batch's reservations get one delayed message (its queue's TTL is the payment window);
 * when it arrives, every reservation in it that is still unpaid expires (core/orders.ts). Transient failures go
 * through the reservation retry tiers, then to the reservation dead-letter queue.
 */
import { randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage } from 'amqplib';
import { ATTEMPT_HEADER, REASON_HEADER, reservationMessageSchema, type Reservation, type ReservationMessage } from '../core/messages.ts';
import { expireReservation, type ExpireResult } from '../core/orders.ts';
import type { WorkerContext } from './context.ts';
import { deadLetter } from './dead-letters.ts';
import { attemptOf, parseWith, settle } from './settle.ts';

/** Publishes one delayed expiry message for a batch's reservations. @throws PublishError when not confirmed. */
export function scheduleExpiry(w: WorkerContext, reservations: Reservation[]): Promise<void> {
  const body: ReservationMessage = { v: 2, reservations };
  return w.d.broker.sendToQueue(w.d.topology.reservationDelayQueue, Buffer.from(JSON.stringify(body)), {
    messageId: randomUUID(),
    contentType: 'application/json',
  });
}

/** Expires the reservations of one delivered expiry message. Emits `expired` (orderId, ExpireResult) for each. */
export async function expireDelivered(w: WorkerContext, ch: Channel, msg: ConsumeMessage): Promise<void> {
  const { d } = w;
  const t = d.topology;
  const parsed = parseWith(reservationMessageSchema, msg);
  if (typeof parsed === 'string') return deadLetter(w, ch, msg, null, `poison message: ${parsed}`, t.reservationDeadQueue);
  try {
    const results: ExpireResult[] = [];
    for (const r of parsed.reservations) results.push(await expireReservation(d.db, d.redis, d.config.REDIS_KEY_PREFIX, r));
    settle(ch, msg, 'ack');
    parsed.reservations.forEach((r, i) => w.emit('expired', r.orderId, results[i]));
  } catch (err) {
    const reason = (err as Error).message;
    const attempt = attemptOf(msg);
    const tier = t.reservationRetryQueues[attempt];
    const id = msg.properties.messageId ? String(msg.properties.messageId) : null;
    if (!tier) return deadLetter(w, ch, msg, id, `gave up after ${attempt + 1} attempts: ${reason}`, t.reservationDeadQueue);
    await d.broker
      .sendToQueue(tier.name, msg.content, { messageId: id ?? randomUUID(), contentType: 'application/json', headers: { [ATTEMPT_HEADER]: attempt + 1, [REASON_HEADER]: reason } })
      .then(() => settle(ch, msg, 'ack'), () => settle(ch, msg, 'requeue'));
  }
}
