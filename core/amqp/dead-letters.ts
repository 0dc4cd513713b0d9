/**
 * Inspecting and replaying the dead-letter queues. Replay is safe because processing is idempotent per request id
 * (a purchase decided before gets its first decision back; an order expired before is not expired twice).
 */
import { randomUUID } from 'node:crypto';
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

/** Header marking a message with the replay that moved it, so a replay stops when its own messages come back. */
const REPLAY_HEADER = 'x-replay-id';

/**
 * Counts a dead-letter queue and describes its first `limit` messages, leaving them in place (they are taken
 * unacknowledged and requeued; AMQP has no way to browse a queue).
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
    ch.nackAll(true);
    return { count: messageCount, messages };
  });
}

/**
 * Moves up to `limit` messages from a dead-letter queue back to their exchange, each acked in the dead-letter
 * queue only after its re-publish is confirmed (so a failure duplicates at worst, never loses). A poison message
 * comes straight back: the replay stops when it meets a message it moved itself.
 * @returns how many were replayed.
 */
export function replayDeadLetters(broker: Broker, t: Topology, q: DeadLetterQueue, limit: number): Promise<number> {
  const target = queueOf(t, q);
  return withChannel(broker, async (ch) => {
    const replayId = randomUUID();
    let replayed = 0;
    while (replayed < limit) {
      const msg = await ch.get(target.dead, { noAck: false });
      if (!msg) break;
      if (msg.properties.headers?.[REPLAY_HEADER] === replayId) {
        ch.nack(msg, false, true);
        break;
      }
      const { [ATTEMPT_HEADER]: _a, [REASON_HEADER]: _r, 'x-death': _d, ...headers } = msg.properties.headers ?? {};
      await broker.publish(target.exchange, target.routingKey, msg.content, {
        messageId: String(msg.properties.messageId ?? `replay:${replayId}:${replayed}`),
        contentType: msg.properties.contentType ?? 'application/json',
        headers: { ...headers, [REPLAY_HEADER]: replayId },
      });
      ch.ack(msg);
      replayed++;
    }
    return replayed;
  });
}
