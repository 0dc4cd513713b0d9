/**
 * Publisher micro-batching for purchases: every purchase admitted in one event-loop turn of this process travels in
 * one AMQP message (`{v: 2, purchases}`, see core/messages.ts), with one publisher confirm for all of them, so the
 * broker, amqplib's framing and the socket do per-turn work instead of per-purchase work. A lone purchase goes as
 * it always did (v1). Each purchase keeps its own requestId; the worker settles the delivery once every purchase
 * in it is settled, and retries and dead-letters purchases one by one.
 *
 * The promise of each purchase settles with its batch: confirmed means all of them are in the queue; a failure
 * fails each of them, and each caller withdraws its own admission (see withdraw-admission.ts).
 */
import { randomUUID } from 'node:crypto';
import type { Broker } from '../core/amqp/broker.ts';
import type { Topology } from '../core/amqp/topology.ts';
import { PURCHASE_BATCH_MAX, type PurchaseBatchMessage, type PurchaseMessage } from '../core/messages.ts';

interface Waiting {
  m: PurchaseMessage;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class PurchasePublisher {
  private waiting: Waiting[] = [];
  private scheduled = false;

  constructor(
    private readonly broker: Broker,
    private readonly topology: Topology,
    private readonly maxBatch = PURCHASE_BATCH_MAX,
  ) {}

  /**
   * Queues a purchase for this turn's message. @returns once the broker confirmed it.
   * @throws PublishError when the message carrying it was nacked, returned, timed out or lost with its channel.
   */
  publish(m: PurchaseMessage): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ m, resolve, reject });
      if (this.waiting.length >= this.maxBatch) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flush);
      }
    });
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const batch = this.waiting.splice(0, this.maxBatch);
    if (batch.length === 0) return;
    const single = batch.length === 1 ? batch[0]!.m : undefined;
    const body: PurchaseMessage | PurchaseBatchMessage = single ?? { v: 2, purchases: batch.map((w) => w.m) };
    const first = batch[0]!.m;
    this.broker
      .publish(this.topology.purchaseExchange, this.topology.purchaseRoutingKey, Buffer.from(JSON.stringify(body)), {
        messageId: single ? single.requestId : randomUUID(),
        contentType: 'application/json',
        timestamp: Math.floor(first.admittedAt / 1000),
      })
      .then(
        () => batch.forEach((w) => w.resolve()),
        (err: Error) => batch.forEach((w) => w.reject(err)),
      );
    if (this.waiting.length > 0 && !this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  };
}
