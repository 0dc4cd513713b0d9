/**
 * Dead-lettering by the worker: a message it will never process (poison, unknown sale, failed for good) goes to a
 * dead-letter queue with the reason in a header, and the original is acked only once that publish is confirmed.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { REASON_HEADER } from '../core/messages.ts';
import type { Item, WorkerContext } from './context.ts';
import { itemBody, settle, settleItem } from './settle.ts';

/**
 * Moves a delivery to `queue` (the purchase dead-letter queue by default) with `reason`; requeues it when that
 * publish fails, so nothing is lost. Emits `dead-lettered` (requestId or null, reason).
 */
export async function deadLetter(
  w: WorkerContext,
  ch: Channel,
  msg: ConsumeMessage,
  requestId: string | null,
  reason: string,
  queue = w.d.topology.purchaseDeadQueue,
  extraHeaders: Record<string, string> = {},
): Promise<void> {
  try {
    await w.d.broker.sendToQueue(queue, msg.content, {
      messageId: requestId ?? `poison:${msg.fields.deliveryTag}:${Date.now()}`,
      contentType: msg.properties.contentType ?? 'application/octet-stream',
      headers: { ...msg.properties.headers, ...extraHeaders, [REASON_HEADER]: reason },
    });
    settle(ch, msg, 'ack');
    w.d.logger.warn({ requestId, reason }, 'dead-lettered');
    w.emit('dead-lettered', requestId, reason);
  } catch (err) {
    w.d.logger.warn({ err: (err as Error).message }, 'cannot dead-letter; requeueing');
    settle(ch, msg, 'requeue');
  }
}

/**
 * Moves one purchase of a delivery to `queue` (as a message of its own, with its delivery's headers and `reason`);
 * requeues its delivery when that publish fails. Emits `dead-lettered` (requestId, reason).
 */
export async function deadLetterItem(
  w: WorkerContext,
  it: Item,
  reason: string,
  queue = w.d.topology.purchaseDeadQueue,
  extraHeaders: Record<string, string> = {},
): Promise<void> {
  try {
    await w.d.broker.sendToQueue(queue, itemBody(it), {
      messageId: it.m.requestId,
      contentType: 'application/json',
      headers: { ...it.msg.properties.headers, ...extraHeaders, [REASON_HEADER]: reason },
    });
    settleItem(it, 'ack');
    w.d.logger.warn({ requestId: it.m.requestId, reason }, 'dead-lettered');
    w.emit('dead-lettered', it.m.requestId, reason);
  } catch (err) {
    w.d.logger.warn({ err: (err as Error).message }, 'cannot dead-letter; requeueing');
    settleItem(it, 'requeue');
  }
}
