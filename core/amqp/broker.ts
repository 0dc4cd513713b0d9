/**
 * RabbitMQ connection with amqplib's opt-in recovery (reconnects with exponential backoff and jitter, then re-runs
 * `setup`), plus a publisher that resolves only on the broker's publisher confirm.
 *
 * amqplib recovers the connection, not channels or unconfirmed messages (a channel error closes a channel for
 * good), so the publisher owns its confirm channel, re-creates it, and fails every publish still unconfirmed when
 * its channel dies: the caller decides what a failed publish means (the API answers 503 and withdraws).
 *
 * A RabbitMQ cluster: `urls` lists its nodes. amqplib's recovery reconnects to one URL; given the URL as an object
 * (a documented form of `connect`), it reads the object's fields on every attempt, so the broker points that object
 * at the next node whenever a connection is lost or an attempt fails. The first node is picked at random, which
 * spreads the connections of many processes over the nodes.
 *
 * A publish whose channel died before its confirm (its node went away) is published once more through the next
 * connection, with the same messageId, if one opens within the publish timeout: the message may now be in the
 * queue twice, which the worker absorbs (it decides each requestId once). Nacks and returns are not retried.
 */
import { EventEmitter } from 'node:events';
import amqp, { type ConfirmChannel, type Channel, type ChannelModel, type Options } from 'amqplib';
import type { Logger } from 'pino';
import { QuietWarnings } from '../quiet-log.ts';
import { declareTopology, type Topology } from './topology.ts';

/** Wait before trying again to open the publish channel on a live connection, ms. */
const REOPEN_RETRY_MS = 500;

/** A publish that did not get a positive confirm: nacked, unroutable, timed out, or its channel closed. */
export class PublishError extends Error {
  override name = 'PublishError';
  /** True when the channel closed before the confirm: the message may or may not be in the queue. */
  channelLost = false;
}

export interface BrokerOptions {
  /** amqp URLs of the nodes of one cluster (or the one broker). */
  urls: readonly string[];
  topology: Topology;
  logger: Logger;
  /** How long a publish waits for its confirm, ms. */
  publishTimeoutMs: number;
  /** Retries before the first connection succeeds, count (then start fails); Infinity afterwards. */
  initialMaxRetries?: number;
  /** Resolve `connect` at once, before any node answered (`ready` tells when publishes can succeed). */
  background?: boolean;
}

/** The fields of an amqp URL, in the object form `amqplib.connect` accepts. */
interface AmqpTarget {
  protocol: string;
  hostname: string;
  port: number;
  username: string;
  password: string;
  vhost: string;
  heartbeat?: number;
}

function targetOf(url: string): AmqpTarget {
  const u = new URL(url);
  const protocol = u.protocol.replace(':', '');
  const heartbeat = u.searchParams.get('heartbeat');
  return {
    protocol,
    hostname: u.hostname.replace(/^\[|\]$/g, ''),
    port: Number(u.port) || (protocol === 'amqps' ? 5671 : 5672),
    username: u.username ? decodeURIComponent(u.username) : 'guest',
    password: u.password ? decodeURIComponent(u.password) : 'guest',
    vhost: u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : '/',
    ...(heartbeat ? { heartbeat: Number(heartbeat) } : {}),
  };
}

/** One mutable target that walks the nodes round-robin from a random start. */
class NodeRotation {
  readonly target: AmqpTarget;
  private index: number;
  constructor(private readonly urls: readonly string[]) {
    if (urls.length === 0) throw new Error('no RabbitMQ URL given');
    this.index = Math.floor(Math.random() * urls.length);
    this.target = targetOf(urls[this.index]!);
  }
  /** Points the target at the next node. */
  next(): void {
    if (this.urls.length < 2) return;
    this.index = (this.index + 1) % this.urls.length;
    Object.assign(this.target, targetOf(this.urls[this.index]!));
  }
  get current(): string {
    return `${this.target.hostname}:${this.target.port}`;
  }
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
  /** When a channel was last replaced after a nack, ms (Date.now()). */
  private replacedAt = 0;
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
    const nodes = new NodeRotation(o.urls);
    const quiet = new QuietWarnings(o.logger);
    const model = await connectRecovering(o, nodes.target, async (m) => {
      const ch = await m.createChannel();
      await declareTopology(ch, o.topology);
      await ch.close();
    });
    const broker = new Broker(model, o);
    model.on('disconnect', (err: Error) => {
      broker.channel = undefined;
      o.logger.warn({ err: err.message, node: nodes.current }, 'rabbitmq disconnected');
      nodes.next();
      broker.emit('disconnected', err);
    });
    model.on('connect-failed', (err: Error) => {
      quiet.warn({ err: err.message, node: nodes.current }, 'rabbitmq node unreachable');
      nodes.next();
    });
    model.on('connect', () => {
      o.logger.info({ node: nodes.current }, 'rabbitmq connected');
      // Channels die with their connection, and opening one while disconnected fails: open it on every connect.
      broker.reopen();
      broker.emit('connected');
    });
    // An 'error' without a listener would be thrown: a broker going away must never crash the process.
    model.on('error', (err: Error) => quiet.warn({ err: err.message }, 'rabbitmq connection error'));
    model.on('reconnect-failed', (err: Error) => o.logger.error({ err: err.message }, 'rabbitmq recovery abandoned'));
    if (o.background) return broker;
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
      .catch((err: Error) => {
        this.o.logger.warn({ err: err.message }, 'cannot open the publish channel yet');
        // The connection may stay up (a cluster node failing over its queues): try again rather than wait for a
        // reconnect that never comes, which left the API answering 503 for good.
        setTimeout(() => this.reopen(), REOPEN_RETRY_MS).unref();
      })
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

  /**
   * Replaces a channel that nacked, at most once per REOPEN_RETRY_MS. A nack means the broker could not enqueue,
   * and the channel may stay that way: a channel opened on RabbitMQ 3.10 while a quorum queue elected its new
   * leader nacked every publish for minutes while a new channel on the same node was acked at once (seen in
   * test:cluster's failover run). The old channel carries publishes until the new one is open, then closes: its
   * publishes still in flight fail as channel losses and are published once more (see publish).
   */
  private replaceAfterNack(ch: ConfirmChannel): void {
    if (this.channel !== ch || this.opening || this.closing || Date.now() - this.replacedAt < REOPEN_RETRY_MS) return;
    this.replacedAt = Date.now();
    this.o.logger.warn('rabbitmq nacked a publish; replacing the publish channel');
    this.opening = this.openChannel(this.model)
      .then(() => ch.close())
      .catch((err: Error) => this.o.logger.warn({ err: err.message }, 'cannot replace the publish channel yet'))
      .finally(() => (this.opening = undefined));
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
  async publish(exchange: string, routingKey: string, body: Buffer, options: Options.Publish & { messageId: string }): Promise<void> {
    const deadline = Date.now() + this.o.publishTimeoutMs;
    try {
      await this.publishOnce(exchange, routingKey, body, options, this.o.publishTimeoutMs);
    } catch (err) {
      if (!(err instanceof PublishError) || !err.channelLost || this.closing) throw err;
      // Its node went away before confirming: once more through the next connection, same messageId.
      if (!(await this.readyWithin(deadline - Date.now()))) throw err;
      this.emit('republished', options.messageId);
      await this.publishOnce(exchange, routingKey, body, options, Math.max(100, deadline - Date.now()));
    }
  }

  /** Resolves true once a confirm channel is open, false if none opens within `ms` (ms). */
  private readyWithin(ms: number): Promise<boolean> {
    if (this.ready) return Promise.resolve(true);
    if (ms <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), ms);
      this.on('ready', onReady);
    });
  }

  private publishOnce(
    exchange: string,
    routingKey: string,
    body: Buffer,
    options: Options.Publish & { messageId: string },
    timeoutMs: number,
  ): Promise<void> {
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
      const timer = setTimeout(() => settle(new PublishError(`no publisher confirm within ${timeoutMs} ms`)), timeoutMs);
      try {
        ch.publish(exchange, routingKey, body, { persistent: true, mandatory: true, ...options }, (err) => {
          if (!err) return settle();
          const e = new PublishError(`publish nacked: ${String(err?.message ?? err)}`);
          // amqplib fails every unconfirmed publish when its channel closes; a real nack leaves the channel open.
          e.channelLost = this.channel !== ch || /closed/i.test(String(err?.message ?? err));
          if (!e.channelLost) this.replaceAfterNack(ch);
          settle(e);
        });
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

function connectRecovering(o: BrokerOptions, target: AmqpTarget, setup: (m: ChannelModel) => Promise<void>) {
  return amqp.connect(target, {
    // amqplib leaves Nagle's algorithm on. A publish is several frames (method, header, one body frame per frameMax
    // bytes), written one by one: with Nagle, the later ones wait for the broker's delayed ACK of the first (40 ms
    // on Linux), so every publisher confirm took ~45 ms and the accept path was bound by it, not by CPU.
    noDelay: true,
    recovery: {
      initialDelay: 100,
      maxDelay: 1000,
      factor: 2,
      jitter: 0.2,
      maxRetries: Infinity,
      initialMaxRetries: o.initialMaxRetries ?? (o.background ? Infinity : 5),
      waitForConnect: false,
      setup,
    },
  });
}
