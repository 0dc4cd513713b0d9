/**
 * The purchase worker: consumes admitted purchases with manual acks and a prefetch, collects what arrives in one
 * event-loop turn (up to WORKER_BATCH_SIZE) into a batch, and runs a few batches at once (batch.ts); consumes expiry
 * messages (expiry.ts). Its other jobs live beside it: deciding (decide.ts), persisting (persist.ts), retries and
 * failing for good (retry-policy.ts), dead-lettering (dead-letters.ts), settling deliveries once (settle.ts).
 */
import { EventEmitter } from 'node:events';
import type { Channel, ConsumeMessage } from 'amqplib';
import { purchaseDeliverySchema } from '../core/messages.ts';
import { processBatch } from './batch.ts';
import type { Item, WorkerContext, WorkerDeps } from './context.ts';
import { deadLetter } from './dead-letters.ts';
import { expireDelivered } from './expiry.ts';
import { itemsOf, parseWith } from './settle.ts';

export type { WorkerDeps } from './context.ts';

/**
 * Most batches in flight at once, count: overlaps Redis, PostgreSQL and RabbitMQ round trips. Measured on a drain of
 * 60,000 (2 cores, everything on them): 4 batches of 500 drained 14.7-16.1k decisions/s; 8 of 500, 4 of 1,000 or 8
 * of 250 drained 10.8-12.7k, each decision costing PostgreSQL 25-60% more CPU (more backends inserting into the
 * same sale's index pages at once).
 */
const MAX_CONCURRENT_BATCHES = 4;

/**
 * Emits `consuming` when its consumers are open (at start and after each reconnect), `decided` (PurchaseState) for
 * each result written, `withdrawn` (requestId) for each message of a withdrawn admission it dropped, `retried`
 * (requestId, attempt), `dead-lettered` (id or null, reason), `expired` (orderId, ExpireResult), `batch`
 * ({ size, ms }), `stale` (decisions the epoch fence refused, count).
 */
export class PurchaseWorker extends EventEmitter implements WorkerContext {
  /** Purchases delivered and not yet in a batch (a delivery may carry many). */
  private buffer: Item[] = [];
  /** Purchase batches in flight, count. */
  private running = 0;
  /** Expiry messages and poison dead-letterings in flight, count. */
  private settling = 0;
  private scheduled = false;
  private channel: Channel | undefined;
  private consumerTags: string[] = [];
  private opening: Promise<void> | undefined;
  private stopping = false;
  private idle: (() => void)[] = [];

  constructor(readonly d: WorkerDeps) {
    super();
  }

  /**
   * Starts consuming, and keeps doing so until `stop`: the consumer channel is opened again when it closes (a channel
   * error) and on every reconnect (channels die with their connection, and cannot be opened while it is down).
   */
  async start(): Promise<void> {
    this.d.broker.on('connected', this.resume);
    await this.open();
  }

  /**
   * Opens the consumers unless they are open or opening: a start that waits for RabbitMQ and the connect that ends
   * the wait share one opening (two would leave a second consumer that no stop cancels).
   */
  private open(): Promise<void> {
    if (this.channel) return Promise.resolve();
    return (this.opening ??= this.consume().finally(() => (this.opening = undefined)));
  }

  private readonly resume = (): void => {
    if (this.stopping) return;
    this.open().catch((err: Error) => this.d.logger.warn({ err: err.message }, 'cannot consume yet; waiting for the next connect'));
  };

  private async consume(): Promise<void> {
    const ch = await this.d.broker.createChannel();
    await ch.prefetch(this.d.config.WORKER_PREFETCH);
    ch.on('error', (err: Error) => this.d.logger.warn({ err: err.message }, 'consumer channel error'));
    ch.on('close', () => {
      if (this.channel === ch) this.channel = undefined;
      this.resume();
    });
    const purchases = await ch.consume(this.d.topology.purchaseQueue, (msg) => msg && this.receive(ch, msg), { noAck: false });
    const expiries = await ch.consume(this.d.topology.reservationExpiryQueue, (msg) => msg && void this.expire(ch, msg), { noAck: false });
    this.consumerTags = [purchases.consumerTag, expiries.consumerTag];
    this.channel = ch;
    this.d.logger.info({ queue: this.d.topology.purchaseQueue }, 'worker consuming');
    this.emit('consuming');
  }

  /**
   * Stops consuming, finishes what was delivered, and closes the channel (anything still unacked is redelivered to
   * another worker).
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.d.broker.off('connected', this.resume);
    await this.opening?.catch(() => undefined);
    const ch = this.channel;
    this.channel = undefined;
    for (const tag of this.consumerTags) await ch?.cancel(tag).catch(() => undefined);
    await new Promise<void>((resolve) => (this.isIdle() ? resolve() : this.idle.push(resolve)));
    await ch?.close().catch(() => undefined);
  }

  private isIdle(): boolean {
    return this.running === 0 && this.settling === 0 && this.buffer.length === 0;
  }

  private wakeIdle(): void {
    if (this.isIdle()) for (const resolve of this.idle.splice(0)) resolve();
  }

  /** Expires the reservations of one message (see expiry.ts), counted so that `stop` waits for it. */
  private expire(ch: Channel, msg: ConsumeMessage): Promise<void> {
    return this.track(expireDelivered(this, ch, msg));
  }

  private async track(work: Promise<void>): Promise<void> {
    this.settling++;
    try {
      await work;
    } finally {
      this.settling--;
      this.wakeIdle();
    }
  }

  private receive(ch: Channel, msg: ConsumeMessage): void {
    const purchases = parseWith(purchaseDeliverySchema, msg);
    if (typeof purchases === 'string') {
      void this.track(deadLetter(this, ch, msg, null, `poison message: ${purchases}`));
      return;
    }
    this.buffer.push(...itemsOf(ch, msg, purchases));
    if (this.buffer.length >= this.d.config.WORKER_BATCH_SIZE) this.flush();
    else if (!this.scheduled) {
      // Collect what arrives in this event-loop turn into one batch.
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    while (this.buffer.length > 0 && this.running < MAX_CONCURRENT_BATCHES) {
      const batch = this.buffer.splice(0, this.d.config.WORKER_BATCH_SIZE);
      this.running++;
      const started = performance.now();
      processBatch(this, batch)
        .catch((err: Error) => this.d.logger.error({ err }, 'batch failed unexpectedly'))
        .finally(() => {
          this.running--;
          this.emit('batch', { size: batch.length, ms: performance.now() - started });
          if (this.buffer.length > 0) this.flush();
          else this.wakeIdle();
        });
    }
  }
}
