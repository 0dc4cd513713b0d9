/**
 * Settling deliveries: each is acked or requeued once, whatever path reaches it first. A second ack of one delivery
 * tag is a channel error that would close the channel (and requeue everything on it).
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { ATTEMPT_HEADER, type PurchaseMessage } from '../core/messages.ts';
import type { Delivery, Item } from './context.ts';

const settledMessages = new WeakSet<ConsumeMessage>();

/**
 * Acks or requeues a delivery once. An ack on a closed channel throws; the broker redelivers those messages, which
 * processing absorbs.
 */
export function settle(ch: Channel, msg: ConsumeMessage, how: 'ack' | 'requeue'): void {
  if (settledMessages.has(msg)) return;
  settledMessages.add(msg);
  try {
    if (how === 'ack') ch.ack(msg);
    else ch.nack(msg, false, true);
  } catch {
    /* channel closed: the message will be redelivered */
  }
}

/** The items of one delivery's purchases, settled together (see `Delivery`). */
export function itemsOf(ch: Channel, msg: ConsumeMessage, purchases: PurchaseMessage[]): Item[] {
  const delivery: Delivery = { ch, msg, open: purchases.length, requeue: false };
  const attempt = attemptOf(msg);
  return purchases.map((m) => ({ delivery, ch, msg, m, attempt, settled: false }));
}

/** Settles one purchase of a delivery, once; the delivery itself when it was the last one open. */
export function settleItem(it: Item, how: 'ack' | 'requeue'): void {
  if (it.settled) return;
  it.settled = true;
  const d = it.delivery;
  if (how === 'requeue') d.requeue = true;
  if (--d.open === 0) settle(d.ch, d.msg, d.requeue ? 'requeue' : 'ack');
}

/** The message body of one purchase alone (v1): what its retry tier or dead-letter queue receives. */
export function itemBody(it: Item): Buffer {
  return Buffer.from(JSON.stringify(it.m));
}

/** Parses a message body with a schema. @returns the message, or why it is poison. */
export function parseWith<T>(
  schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } },
  msg: ConsumeMessage,
): T | string {
  let json: unknown;
  try {
    json = JSON.parse(msg.content.toString('utf8'));
  } catch {
    return 'body is not JSON';
  }
  const r = schema.safeParse(json);
  return r.success ? r.data : r.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** The retry attempt a delivery carries (ATTEMPT_HEADER), count; 0 for a first delivery. */
export function attemptOf(msg: ConsumeMessage): number {
  const n = Number(msg.properties.headers?.[ATTEMPT_HEADER] ?? 0);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}
