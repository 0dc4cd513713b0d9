/**
 * Inspecting and replaying the dead-letter queues. Replay is safe because processing is idempotent per request id
 * (a purchase decided before gets its first decision back; an order expired before is not expired twice).
 */
import type { Channel, GetMessage } from 'amqplib';
import { ATTEMPT_HEADER, REASON_HEADER } from '../messages.ts';
import type { Broker } from './broker.ts';
import type { Topology } from './topology.ts';

export type DeadLetterQueue = 'purchases' | 'reservations';

export interface DeadLetter {
  messageId: string | null;
  /** Why it was dead-lettered: the worker's reason, or the broker's (e.g. delivery_limit). */
  reason: string;
  /** The message body: parsed JSON, or the raw text when it is not JSON. */
  body: unknown;
}

function queueOf(t: Topology, q: DeadLetterQueue) {
  return q === 'purchases'
    ? { dead: t.purchaseDeadQueue, exchange: t.purchaseExchange, routingKey: t.purchaseRoutingKey }
    : { dead: t.reservationDeadQueue, exchange: t.reservationExchange, routingKey: t.reservationRoutingKey };
}

function describe(msg: GetMessage): DeadLetter {
  const headers = msg.properties.headers ?? {};
  const text = msg.content.toString('utf8');
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* poison: keep the raw text */
  }
  const reason = headers[REASON_HEADER] ?? headers['x-first-death-reason'] ?? 'unknown';
  return { messageId: msg.properties.messageId ? String(msg.properties.messageId) : null, reason: String(reason), body };
}

async function withChannel<T>(broker: Broker, fn: (ch: Channel) => Promise<T>): Promise<T> {
  const ch = await broker.createChannel();
  try {
    return await fn(ch);
  } finally {
    await ch.close().catch(() => undefined);
  }
}

/**
 * Counts a dead-letter queue and describes its first `limit` messages, leaving them in place (they are taken
 * unacknowledged and returned to the queue when the channel closes).
 */
export function peekDeadLetters(broker: Broker, t: Topology, q: DeadLetterQueue, limit: number): Promise<{ count: number; messages: DeadLetter[] }> {
  return withChannel(broker, async (ch) => {
    const { messageCount } = await ch.checkQueue(queueOf(t, q).dead);
    const messages: DeadLetter[] = [];
    for (let i = 0; i < Math.min(limit, messageCount); i++) {
      const msg = await ch.get(queueOf(t, q).dead, { noAck: false });
      if (!msg) break;
      messages.push(describe(msg));
    }
    return { count: messageCount, messages };
  });
}

/**
 * Moves up to `limit` messages from a dead-letter queue back to their exchange, each acked in the dead-letter
 * queue only after its re-publish is confirmed (so a failure duplicates at worst, never loses). Only the messages
 * there when the replay starts are moved: a poison message comes straight back, and must not be replayed forever.
 * @returns how many were replayed.
 */
export function replayDeadLetters(broker: Broker, t: Topology, q: DeadLetterQueue, limit: number): Promise<number> {
  const target = queueOf(t, q);
  return withChannel(broker, async (ch) => {
    let replayed = 0;
    const { messageCount } = await ch.checkQueue(target.dead);
    while (replayed < Math.min(limit, messageCount)) {
      const msg = await ch.get(target.dead, { noAck: false });
      if (!msg) break;
      const { [ATTEMPT_HEADER]: _a, [REASON_HEADER]: _r, 'x-death': _d, ...headers } = msg.properties.headers ?? {};
      await broker.publish(target.exchange, target.routingKey, msg.content, {
        messageId: String(msg.properties.messageId ?? `replay:${Date.now()}:${replayed}`),
        contentType: msg.properties.contentType ?? 'application/json',
        headers,
      });
      ch.ack(msg);
      replayed++;
    }
    return replayed;
  });
}
