/**
 * RabbitMQ topology: exchanges and queues, declared by code at start and safe to declare again.
 *
 *   purchases (direct) ──purchase──▶ purchases            quorum; x-delivery-limit; dead-letters to `dead`
 *   retry tier N (one queue per delay) ──TTL──▶ purchases  quorum; per-queue TTL; dead-letters back to `purchases`
 *   reservations.delay.<window>ms ──TTL──▶ reservations (direct) ──expire──▶ reservations.expiry
 *   reservation retry tier N ──TTL──▶ reservations
 *   dead (direct) ──▶ purchases.dead, reservations.dead    the dead-letter queues, replayable
 *
 * Delays use per-queue TTL plus dead-lettering, one queue per delay length: per-message TTL only expires at the head
 * of a queue (https://www.rabbitmq.com/docs/ttl#per-message-ttl-caveats), and the delayed-message plugin is not part
 * of RabbitMQ as packaged here. Dead-lettering is at-least-once only from quorum queues with
 * `x-dead-letter-strategy: at-least-once` and `x-overflow: reject-publish`
 * (https://www.rabbitmq.com/docs/quorum-queues#dead-lettering); a hop may then duplicate a message, which idempotent
 * processing absorbs. `x-delivery-limit` also counts deliveries lost to crashes
 * (https://www.rabbitmq.com/docs/quorum-queues#poison-message-handling), so a healthy message can reach the
 * dead-letter queue after repeated worker crashes: replaying it is safe.
 */
import type { Channel } from 'amqplib';
import type { Config } from '../config.ts';

/** Names of every exchange and queue under one prefix (e.g. `fs.v1`); tests use their own prefix. */
export interface Topology {
  purchaseExchange: string;
  purchaseQueue: string;
  purchaseRoutingKey: string;
  /** Retry tiers, in order: queue name and delay (ms). */
  retryQueues: { name: string; delayMs: number }[];
  reservationExchange: string;
  reservationDelayQueue: string;
  reservationExpiryQueue: string;
  reservationRoutingKey: string;
  /** Retry tiers of the expiry consumer, in order. */
  reservationRetryQueues: { name: string; delayMs: number }[];
  deadExchange: string;
  purchaseDeadQueue: string;
  reservationDeadQueue: string;
  paymentWindowMs: number;
  deliveryLimit: number;
  /** Replicas of each quorum queue at declaration (x-quorum-initial-group-size), count; undefined: the broker's default. */
  quorumSize?: number;
}

/** Builds the names of the topology under `prefix`. */
export function topology(
  prefix: string,
  o: { retryDelaysMs: number[]; paymentWindowMs: number; deliveryLimit: number; quorumSize?: number },
): Topology {
  return {
    purchaseExchange: `${prefix}.purchases`,
    purchaseQueue: `${prefix}.purchases`,
    purchaseRoutingKey: 'purchase',
    retryQueues: o.retryDelaysMs.map((delayMs) => ({ name: `${prefix}.purchases.retry.${delayMs}ms`, delayMs })),
    reservationExchange: `${prefix}.reservations`,
    reservationDelayQueue: `${prefix}.reservations.delay.${o.paymentWindowMs}ms`,
    reservationExpiryQueue: `${prefix}.reservations.expiry`,
    reservationRoutingKey: 'expire',
    reservationRetryQueues: o.retryDelaysMs.map((delayMs) => ({ name: `${prefix}.reservations.retry.${delayMs}ms`, delayMs })),
    deadExchange: `${prefix}.dead`,
    purchaseDeadQueue: `${prefix}.purchases.dead`,
    reservationDeadQueue: `${prefix}.reservations.dead`,
    paymentWindowMs: o.paymentWindowMs,
    deliveryLimit: o.deliveryLimit,
    quorumSize: o.quorumSize,
  };
}

/** The topology a process configured with `config` uses. */
export function topologyFor(config: Config): Topology {
  return topology(config.AMQP_PREFIX, {
    retryDelaysMs: config.RETRY_DELAYS_MS,
    paymentWindowMs: config.PAYMENT_WINDOW_SECONDS * 1000,
    deliveryLimit: config.DELIVERY_LIMIT,
    quorumSize: config.AMQP_QUORUM_SIZE,
  });
}

const atLeastOnceDeadLettering = { 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' } as const;

/**
 * Declares the whole topology on a channel. Idempotent: declaring an existing queue with the same arguments is a
 * no-op. @throws the broker's PRECONDITION_FAILED error if a queue exists with other arguments.
 */
export async function declareTopology(ch: Channel, t: Topology): Promise<void> {
  // RabbitMQ compares this argument on redeclaration: a queue declared without it cannot be declared with it.
  const quorum = { 'x-queue-type': 'quorum', ...(t.quorumSize ? { 'x-quorum-initial-group-size': t.quorumSize } : {}) };
  await ch.assertExchange(t.purchaseExchange, 'direct', { durable: true });
  await ch.assertExchange(t.reservationExchange, 'direct', { durable: true });
  await ch.assertExchange(t.deadExchange, 'direct', { durable: true });

  await ch.assertQueue(t.purchaseDeadQueue, { durable: true, arguments: { ...quorum } });
  await ch.bindQueue(t.purchaseDeadQueue, t.deadExchange, t.purchaseRoutingKey);
  await ch.assertQueue(t.reservationDeadQueue, { durable: true, arguments: { ...quorum } });
  await ch.bindQueue(t.reservationDeadQueue, t.deadExchange, t.reservationRoutingKey);

  const deadLettered = (routingKey: string) => ({
    ...quorum,
    ...atLeastOnceDeadLettering,
    'x-delivery-limit': t.deliveryLimit,
    'x-dead-letter-exchange': t.deadExchange,
    'x-dead-letter-routing-key': routingKey,
  });
  await ch.assertQueue(t.purchaseQueue, { durable: true, arguments: deadLettered(t.purchaseRoutingKey) });
  await ch.bindQueue(t.purchaseQueue, t.purchaseExchange, t.purchaseRoutingKey);
  await ch.assertQueue(t.reservationExpiryQueue, { durable: true, arguments: deadLettered(t.reservationRoutingKey) });
  await ch.bindQueue(t.reservationExpiryQueue, t.reservationExchange, t.reservationRoutingKey);

  const delayed = (delayMs: number, exchange: string, routingKey: string) => ({
    ...quorum,
    ...atLeastOnceDeadLettering,
    'x-message-ttl': delayMs,
    'x-dead-letter-exchange': exchange,
    'x-dead-letter-routing-key': routingKey,
  });
  for (const tier of t.retryQueues) {
    await ch.assertQueue(tier.name, {
      durable: true,
      arguments: delayed(tier.delayMs, t.purchaseExchange, t.purchaseRoutingKey),
    });
  }
  for (const tier of t.reservationRetryQueues) {
    await ch.assertQueue(tier.name, {
      durable: true,
      arguments: delayed(tier.delayMs, t.reservationExchange, t.reservationRoutingKey),
    });
  }
  await ch.assertQueue(t.reservationDelayQueue, {
    durable: true,
    arguments: delayed(t.paymentWindowMs, t.reservationExchange, t.reservationRoutingKey),
  });
}
