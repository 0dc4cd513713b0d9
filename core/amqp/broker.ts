/**
 * RabbitMQ connection with amqplib's opt-in recovery (reconnects with exponential backoff and jitter, then re-runs
 * `setup`), plus a publisher that resolves only on the broker's publisher confirm.
 *
 * amqplib recovers the connection, not channels or unconfirmed messages (a channel error closes a channel for
 * good), so the publisher owns its confirm channel, re-creates it, and fails every publish still unconfirmed when
 * its channel dies: the caller decides what a failed publish means (the API answers 503 and withdraws).
 */
import { EventEmitter } from 'node:events';
import amqp, { type ConfirmChannel, type Channel, type ChannelModel, type Options } from 'amqplib';
import type { Logger } from 'pino';
import { declareTopology, type Topology } from './topology.ts';

/** A publish that did not get a positive confirm: nacked, unroutable, timed out, or its channel closed. */
export class PublishError extends Error {
  override name = 'PublishError';
}

export interface BrokerOptions {
  url: string;
  topology: Topology;
  logger: Logger;
  /** How long a publish waits for its confirm, ms. */
  publishTimeoutMs: number;
  /** Retries before the first connection succeeds, count (then start fails); Infinity afterwards. */
  initialMaxRetries?: number;
}

/**
 * A recovering RabbitMQ connection with one confirm channel for publishing.
 * Emits `published` (messageId), `acked` (messageId), `nacked` (messageId, error), `connected`, `disconnected`,
 * `ready` (a confirm channel is open: publishes can succeed again).
 */
export class Broker extends EventEmitter {
  private channel: ConfirmChannel | undefined;
  private readonly returned = new Set<string>();
  private closing = false;
  private opening: Promise<void> | undefined;
  /** Publishes waiting for their confirm, count. */
  private unconfirmed = 0;

  private constructor(
    private readonly model: Awaited<ReturnType<typeof connectRecovering>>,
    private readonly o: BrokerOptions,
  ) {
    super();
  }

  /** Connects, declares the topology and opens the confirm channel. @throws when the broker stays unreachable. */
  static async connect(o: BrokerOptions): Promise<Broker> {
    const model = await connectRecovering(o, async (m) => {
      const ch = await m.createChannel();
      await declareTopology(ch, o.topology);
      await ch.close();
    });
    const broker = new Broker(model, o);
    model.on('disconnect', (err: Error) => {
      broker.channel = undefined;
      o.logger.warn({ err: err.message }, 'rabbitmq disconnected');
      broker.emit('disconnected', err);
    });
    model.on('connect', () => {
      // Channels die with their connection, and opening one while disconnected fails: open it on every connect.
      broker.reopen();
      broker.emit('connected');
    });
    // An 'error' without a listener would be thrown: a broker going away must never crash the process.
    model.on('error', (err: Error) => o.logger.warn({ err: err.message }, 'rabbitmq connection error'));
    model.on('reconnect-scheduled', (i: { attempt: number; delay: number }) =>
      o.logger.info(i, 'rabbitmq reconnect scheduled'),
    );
    await model.waitForConnect();
    broker.reopen(); // unless the connect event did already
    await broker.opening;
    if (!broker.ready) throw new Error('RabbitMQ accepted the connection but no channel could be opened');
    return broker;
  }

  /** Opens a confirm channel unless one is open or opening; a failure waits for the next connect. */
  private reopen(): void {
    if (this.channel || this.opening || this.closing) return;
    this.opening = this.openChannel(this.model)
      .catch((err: Error) => this.o.logger.warn({ err: err.message }, 'cannot open the publish channel yet'))
      .finally(() => (this.opening = undefined));
  }

  private async openChannel(m: { createConfirmChannel(): Promise<ConfirmChannel> }): Promise<void> {
    if (this.closing) return;
    const ch = await m.createConfirmChannel();
    ch.on('error', (err: Error) => this.o.logger.warn({ err: err.message }, 'rabbitmq publish channel error'));
    ch.on('return', (msg) => {
      if (msg.properties.messageId) this.returned.add(String(msg.properties.messageId));
    });
    ch.on('close', () => {
      if (this.channel === ch) this.channel = undefined;
      // A channel error closes the channel for good; the connection may still be up, so open another one.
      this.reopen();
    });
    this.channel = ch;
    this.emit('ready');
  }

  /** True while a confirm channel is open. */
  get ready(): boolean {
    return this.channel !== undefined;
  }

  /**
   * Publishes a persistent, mandatory message and waits for its publisher confirm
   * (https://www.rabbitmq.com/docs/confirms#publisher-confirms). An unroutable message is confirmed after a
   * basic.return, so a return counts as a failure.
   * @param options - must carry `messageId`, unique per message.
   * @throws PublishError when there is no channel, on nack, return, channel loss, or after `publishTimeoutMs`.
   */
  publish(exchange: string, routingKey: string, body: Buffer, options: Options.Publish & { messageId: string }): Promise<void> {
    const ch = this.channel;
    if (!ch) return Promise.reject(new PublishError('RabbitMQ is not connected'));
    const id = options.messageId;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      this.unconfirmed++;
      const settle = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (--this.unconfirmed === 0) this.emit('idle');
        const wasReturned = this.returned.delete(id);
        if (!err && wasReturned) err = new PublishError(`message ${id} was unroutable (${exchange}/${routingKey})`);
        if (err) {
          this.emit('nacked', id, err);
          reject(err instanceof PublishError ? err : new PublishError(err.message));
        } else {
          this.emit('acked', id);
          resolve();
        }
      };
      const timer = setTimeout(
        () => settle(new PublishError(`no publisher confirm within ${this.o.publishTimeoutMs} ms`)),
        this.o.publishTimeoutMs,
      );
      try {
        ch.publish(exchange, routingKey, body, { persistent: true, mandatory: true, ...options }, (err) =>
          settle(err ? new PublishError(`publish nacked: ${String(err?.message ?? err)}`) : undefined),
        );
        this.emit('published', id);
      } catch (err) {
        settle(err as Error);
      }
    });
  }

  /** Publishes straight to a queue through the default exchange (retry tiers, dead-letter queues). */
  sendToQueue(queue: string, body: Buffer, options: Options.Publish & { messageId: string }): Promise<void> {
    return this.publish('', queue, body, options);
  }

  /** Opens a plain channel on the current connection (for consumers and queue inspection). */
  createChannel(): Promise<Channel> {
    return this.model.createChannel();
  }

  /**
   * Waits for the publishes in flight to be confirmed (at most `publishTimeoutMs`, after which each has failed on
   * its own), then closes the channel and the connection.
   */
  async close(): Promise<void> {
    this.closing = true;
    if (this.unconfirmed > 0) await new Promise((resolve) => this.once('idle', resolve));
    await this.model.close().catch(() => undefined);
  }
}

function connectRecovering(o: BrokerOptions, setup: (m: ChannelModel) => Promise<void>) {
  return amqp.connect(o.url, {
    recovery: {
      initialDelay: 200,
      maxDelay: 5000,
      factor: 2,
      jitter: 0.2,
      maxRetries: Infinity,
      initialMaxRetries: o.initialMaxRetries ?? 5,
      waitForConnect: false,
      setup,
    },
  });
}
