/**
 * The purchase worker: consumes admitted purchases with manual acks and a prefetch, and decides them in batches.
 * A batch is one decide script call per sale, one PostgreSQL statement (fenced by the sale's epoch, see persist.ts),
 * one expiry message, one pipeline of result writes, then the acks: a message is acknowledged only after its
 * decision is in PostgreSQL and its result is in Redis, so a
 * crash at any point means a redelivery, which every step absorbs (the script and the writes are idempotent per
 * request id). Delivery is at-least-once; the effect is exactly-once.
 *
 * Failures: a message that is not a valid purchase (poison) goes straight to the dead-letter queue. A transient
 * failure (PostgreSQL or Redis unavailable) moves the message to the next retry tier, acking the original only
 * after that publish is confirmed; after the last tier the purchase fails for good, its units go back to stock,
 * and the message goes to the dead-letter queue with the reason.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { CoreDeps } from '../core/deps.ts';
import { ATTEMPT_HEADER, FINAL_STATUS_HEADER, REASON_HEADER, purchaseMessageSchema, reservationMessageSchema, type PurchaseMessage, type Reservation, type ReservationMessage } from '../core/messages.ts';
import { expireReservation, type ExpireResult } from '../core/orders.ts';
import { FINAL_VERSION, stateWrite, writeState, type PurchaseState } from '../core/purchase-state.ts';
import { idempotencyKey, saleKeys } from '../core/redis/keys.ts';
import { Decision, decide, putState, release, withdraw, type DecideResult } from '../core/redis/scripts.ts';
import { loadSale } from '../core/sales.ts';
import { persistDecisions, type DecidedPurchase, type FinalStatus, type PersistedDecision } from './persist.ts';

export type WorkerDeps = CoreDeps;

interface Item {
  ch: Channel;
  msg: ConsumeMessage;
  attempt: number;
  m: PurchaseMessage;
}

const REASONS: Partial<Record<FinalStatus, string>> = {
  sold_out: 'Every unit is sold.',
  rejected: 'You already hold the most this sale allows per shopper.',
};

/** The decision Redis records when it gives back units PostgreSQL says are not the shopper's. */
const RELEASED_AS: Record<Exclude<PersistedDecision['status'], 'succeeded'>, Decision> = {
  sold_out: Decision.SoldOut,
  rejected: Decision.OverLimit,
  failed: Decision.Failed,
  withdrawn: Decision.Withdrawn,
};

const STATUS_OF: Record<number, FinalStatus> = {
  [Decision.Succeeded]: 'succeeded',
  [Decision.SoldOut]: 'sold_out',
  [Decision.OverLimit]: 'rejected',
  [Decision.Expired]: 'succeeded',
  [Decision.Failed]: 'failed',
};

/** Most batches in flight at once, count: overlaps Redis, PostgreSQL and RabbitMQ round trips. */
const MAX_CONCURRENT_BATCHES = 4;

/**
 * Emits `decided` (PurchaseState) for each result written, `withdrawn` (requestId) for each message of a withdrawn
 * admission it dropped, `retried` (requestId, attempt), `dead-lettered`
 * (id or null, reason), `expired` (orderId, ExpireResult), `batch` ({ size, ms }).
 */
export class PurchaseWorker extends EventEmitter {
  private buffer: { ch: Channel; msg: ConsumeMessage }[] = [];
  /** Purchase batches in flight, count. */
  private running = 0;
  /** Expiry messages in flight, count. */
  private expiring = 0;
  private scheduled = false;
  private channel: Channel | undefined;
  private consumerTags: string[] = [];
  private opening: Promise<void> | undefined;
  private stopping = false;
  private idle: (() => void)[] = [];

  constructor(private readonly d: WorkerDeps) {
    super();
  }

  /**
   * Starts consuming, and keeps doing so until `stop`: the consumer channel is opened again when it closes (a channel
   * error) and on every reconnect (channels die with their connection, and cannot be opened while it is down).
   */
  async start(): Promise<void> {
    this.d.broker.on('connected', this.resume);
    await this.consume();
  }

  private readonly resume = (): void => {
    if (this.stopping || this.channel || this.opening) return;
    this.opening = this.consume()
      .catch((err: Error) => this.d.logger.warn({ err: err.message }, 'cannot consume yet; waiting for the next connect'))
      .finally(() => (this.opening = undefined));
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
  }

  /**
   * Stops consuming, finishes what was delivered, and closes the channel (anything still unacked is redelivered to
   * another worker).
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.d.broker.off('connected', this.resume);
    const ch = this.channel;
    this.channel = undefined;
    for (const tag of this.consumerTags) await ch?.cancel(tag).catch(() => undefined);
    await new Promise<void>((resolve) => (this.isIdle() ? resolve() : this.idle.push(resolve)));
    await ch?.close().catch(() => undefined);
  }

  private isIdle(): boolean {
    return this.running === 0 && this.expiring === 0 && this.buffer.length === 0;
  }

  private wakeIdle(): void {
    if (this.isIdle()) for (const resolve of this.idle.splice(0)) resolve();
  }

  /** Expires one reservation (see core/orders.ts); transient failures go through the reservation retry tiers. */
  private async expire(ch: Channel, msg: ConsumeMessage): Promise<void> {
    const t = this.d.topology;
    this.expiring++;
    try {
      const parsed = parseWith(reservationMessageSchema, msg);
      if (typeof parsed === 'string') return await this.deadLetter(ch, msg, null, `poison message: ${parsed}`, t.reservationDeadQueue);
      try {
        const results: ExpireResult[] = [];
        for (const r of parsed.reservations) results.push(await expireReservation(this.d.db, this.d.redis, this.d.config.REDIS_KEY_PREFIX, r));
        settle(ch, msg, 'ack');
        parsed.reservations.forEach((r, i) => this.emit('expired', r.orderId, results[i]));
      } catch (err) {
        const reason = (err as Error).message;
        const attempt = attemptOf(msg);
        const tier = t.reservationRetryQueues[attempt];
        const id = msg.properties.messageId ? String(msg.properties.messageId) : null;
        if (!tier) return await this.deadLetter(ch, msg, id, `gave up after ${attempt + 1} attempts: ${reason}`, t.reservationDeadQueue);
        await this.d.broker
          .sendToQueue(tier.name, msg.content, { messageId: id ?? randomUUID(), contentType: 'application/json', headers: { [ATTEMPT_HEADER]: attempt + 1, [REASON_HEADER]: reason } })
          .then(() => settle(ch, msg, 'ack'), () => settle(ch, msg, 'requeue'));
      }
    } finally {
      this.expiring--;
      this.wakeIdle();
    }
  }

  private receive(ch: Channel, msg: ConsumeMessage): void {
    this.buffer.push({ ch, msg });
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
      this.processBatch(batch)
        .catch((err: Error) => this.d.logger.error({ err }, 'batch failed unexpectedly'))
        .finally(() => {
          this.running--;
          this.emit('batch', { size: batch.length, ms: performance.now() - started });
          if (this.buffer.length > 0) this.flush();
          else this.wakeIdle();
        });
    }
  }

  private async processBatch(raw: { ch: Channel; msg: ConsumeMessage }[]): Promise<void> {
    const items: Item[] = [];
    for (const { ch, msg } of raw) {
      const parsed = parseWith(purchaseMessageSchema, msg);
      if (typeof parsed === 'string') await this.deadLetter(ch, msg, null, `poison message: ${parsed}`);
      else items.push({ ch, msg, m: parsed, attempt: attemptOf(msg) });
    }
    const failedBefore = items.filter((it) => it.msg.properties.headers?.[FINAL_STATUS_HEADER] === 'failed');
    const toDecide = failedBefore.length ? items.filter((it) => !failedBefore.includes(it)) : items;
    if (items.length === 0) return;
    try {
      for (const it of failedBefore) await this.recordFailure(it);
      if (toDecide.length) await this.decideAndPersist(toDecide);
    } catch (err) {
      this.d.logger.warn({ err: (err as Error).message, size: items.length }, 'transient failure; retrying the batch later');
      await Promise.all(items.map((it) => this.retryOrFail(it, (err as Error).message)));
    }
  }

  private async decideAndPersist(items: Item[]): Promise<void> {
    let pending = items;
    for (let round = 0; pending.length > 0; round++) {
      if (round === 3) throw new Error(`${pending.length} decisions went stale three times: the sale keeps being rebuilt`);
      const stale = await this.decideRound(pending);
      // Decided under an epoch PostgreSQL has moved past: Redis is behind (another process rebuilt the sale and
      // has not loaded it yet, or died before it did). Load the newest state, then decide those again.
      for (const saleId of new Set(stale.map((it) => it.m.saleId))) {
        this.d.logger.warn({ saleId, count: stale.length }, 'decisions of an older epoch refused by PostgreSQL; reloading the sale');
        await loadSale(this.d.db, this.d.redis, this.d.config.REDIS_KEY_PREFIX, saleId, { force: true });
      }
      pending = stale;
    }
  }

  /** Decides, persists, schedules expiries, writes results and acks; @returns the items PostgreSQL found stale. */
  private async decideRound(items: Item[]): Promise<Item[]> {
    const { redis, db, config } = this.d;
    const prefix = config.REDIS_KEY_PREFIX;
    const decided = await this.decideAll(items);

    const toPersist: { it: Item; r: DecideResult; p: DecidedPurchase }[] = [];
    for (const [it, r] of decided) {
      if (r.decision === Decision.Withdrawn) {
        this.ack(it);
        this.emit('withdrawn', it.m.requestId);
        continue;
      }
      const status = STATUS_OF[r.decision];
      if (!status) throw new Error(`Unexpected decision ${r.decision} for ${it.m.requestId}`);
      const { requestId, saleId, userId, quantity } = it.m;
      const reason = REASONS[status];
      toPersist.push({ it, r, p: { requestId, saleId, userId, quantity, status, epoch: r.epoch, ...(reason ? { reason } : {}) } });
    }
    if (toPersist.length === 0) return [];
    // The same request twice in one batch (a redelivery, or the sweeper's re-publish): write it once, settle both.
    const twins = new Map<string, Item[]>();
    const seen = new Set<string>();
    const unique = toPersist.filter(({ it, p }) => {
      if (!seen.has(p.requestId)) {
        seen.add(p.requestId);
        return true;
      }
      twins.set(p.requestId, [...(twins.get(p.requestId) ?? []), it]);
      return false;
    });

    const { decisions, stale } = await persistDecisions(db, unique.map((x) => x.p), config.PAYMENT_WINDOW_SECONDS * 1000);
    const staleIds = new Set(stale);

    // The batch's reservations get their expiry message before the results are visible; re-sent on redelivery (the
    // expiry is idempotent), so a crash between the two never leaves a reservation that cannot expire.
    const now = new Date().toISOString();
    const done: { it: Item; state: PurchaseState }[] = [];
    const withdrawn: Item[] = [];
    const reservations: Reservation[] = [];
    for (const { it, r } of unique) {
      const pg = decisions.get(it.m.requestId);
      if (!pg) continue; // stale
      if (!pg.fresh && !r.replayed && r.decision === Decision.Succeeded && pg.status !== 'succeeded') {
        // Redis took units for a request PostgreSQL had already decided otherwise, or that the API withdrew (its
        // shopper was told 503) before Redis lost that: give them back.
        await release(redis, saleKeys(prefix, it.m.saleId), { ...it.m, as: RELEASED_AS[pg.status] });
        if (pg.status !== 'withdrawn') this.d.logger.error({ requestId: it.m.requestId, pg: pg.status }, 'Redis decided a request PostgreSQL had decided');
      }
      if (pg.status === 'withdrawn') {
        withdrawn.push(it);
        continue;
      }
      done.push({
        it,
        state: {
          requestId: it.m.requestId,
          saleId: it.m.saleId,
          userId: it.m.userId,
          status: pg.status,
          ...(pg.orderId ? { orderId: pg.orderId } : {}),
          ...(pg.expiresAt ? { expiresAt: pg.expiresAt.toISOString() } : {}),
          ...(pg.reason ? { reason: pg.reason } : {}),
          acceptedAt: new Date(it.m.admittedAt).toISOString(),
          updatedAt: now,
          version: FINAL_VERSION,
        },
      });
      if (pg.status === 'succeeded' && pg.orderId) {
        const { requestId, saleId, userId, quantity } = it.m;
        reservations.push({ orderId: pg.orderId, requestId, saleId, userId, quantity });
      }
    }
    if (reservations.length) await this.scheduleExpiry(reservations);

    // Issued together, the writes share round trips: ioredis auto-pipelining groups them per connection (per shard
    // on a Redis Cluster, where a batch's sales may live on different shards).
    await Promise.all(done.map(({ state }) => {
      const w = stateWrite(prefix, state);
      return putState(redis, w.key, w.args);
    }));

    for (const it of withdrawn) {
      this.ack(it);
      for (const twin of twins.get(it.m.requestId) ?? []) this.ack(twin);
      this.emit('withdrawn', it.m.requestId);
    }
    for (const { it, state } of done) {
      this.ack(it);
      for (const twin of twins.get(it.m.requestId) ?? []) this.ack(twin);
      this.emit('decided', state);
    }
    return unique.filter((x) => staleIds.has(x.it.m.requestId)).flatMap((x) => [x.it, ...(twins.get(x.it.m.requestId) ?? [])]);
  }

  /** Runs one decide call per sale (all of the sale's items at once); loads sales Redis lost and decides again. */
  private async decideAll(items: Item[]): Promise<Map<Item, DecideResult & { epoch: string }>> {
    const { redis, db, config } = this.d;
    const prefix = config.REDIS_KEY_PREFIX;
    const out = new Map<Item, DecideResult & { epoch: string }>();
    const bySale = new Map<string, Item[]>();
    for (const it of items) {
      const group = bySale.get(it.m.saleId);
      if (group) group.push(it);
      else bySale.set(it.m.saleId, [it]);
    }
    await Promise.all(
      [...bySale].map(async ([saleId, group]) => {
        for (let round = 0; round < 2; round++) {
          const { epoch, results } = await decide(redis, saleKeys(prefix, saleId), group.map((it) => it.m));
          if (results[0]?.decision !== Decision.SaleNotLoaded) {
            group.forEach((it, i) => out.set(it, { ...results[i]!, epoch }));
            return;
          }
          if ((await loadSale(db, redis, prefix, saleId)) === 'missing') {
            for (const it of group) await this.deadLetter(it.ch, it.msg, it.m.requestId, `unknown sale ${saleId}`);
            return;
          }
        }
        throw new Error(`sale ${saleId} vanished from Redis twice in a row`);
      }),
    );
    return out;
  }

  private scheduleExpiry(reservations: Reservation[]): Promise<void> {
    const body: ReservationMessage = { v: 2, reservations };
    return this.d.broker.sendToQueue(this.d.topology.reservationDelayQueue, Buffer.from(JSON.stringify(body)), {
      messageId: randomUUID(),
      contentType: 'application/json',
    });
  }

  private async retryOrFail(it: Item, reason: string): Promise<void> {
    if (settledMessages.has(it.msg)) return; // settled before the failure (dead-lettered, or done)
    const tiers = this.d.topology.retryQueues;
    try {
      if (it.attempt < tiers.length) {
        const tier = tiers[it.attempt]!;
        await this.d.broker.sendToQueue(tier.name, it.msg.content, {
          messageId: it.m.requestId,
          contentType: 'application/json',
          headers: { ...it.msg.properties.headers, [ATTEMPT_HEADER]: it.attempt + 1, [REASON_HEADER]: reason },
        });
        this.ack(it);
        this.emit('retried', it.m.requestId, it.attempt + 1);
        return;
      }
      await this.failForGood(it, `gave up after ${it.attempt + 1} attempts: ${reason}`);
    } catch (err) {
      // Not even the retry publish went through: leave the message to the broker (redelivery, then the
      // delivery limit). Nothing is lost.
      this.d.logger.warn({ err: (err as Error).message, requestId: it.m.requestId }, 'cannot retry; requeueing');
      this.nack(it);
    }
  }

  /** The last tier failed: the purchase fails, its units go back to stock, the message to the dead-letter queue. */
  private async failForGood(it: Item, reason: string): Promise<void> {
    const { redis, db, config, logger } = this.d;
    const prefix = config.REDIS_KEY_PREFIX;
    const keys = saleKeys(prefix, it.m.saleId);
    // The worker does not know the request's Idempotency-Key: keeping it lets a retry with it replay this failure.
    await withdraw(redis, keys, idempotencyKey(prefix, it.m.saleId, it.m.userId, ''), it.m);
    await release(redis, keys, { ...it.m, as: Decision.Failed });
    await redis.hset(keys.decided, it.m.requestId, Decision.Failed); // failed, not withdrawn: its shopper had a 202
    const state: PurchaseState = {
      requestId: it.m.requestId,
      saleId: it.m.saleId,
      userId: it.m.userId,
      status: 'failed',
      reason: 'We could not process your purchase in time; nothing was charged or reserved. Please try again.',
      acceptedAt: new Date(it.m.admittedAt).toISOString(),
      updatedAt: new Date().toISOString(),
      version: FINAL_VERSION,
    };
    await db.purchase
      .create({ data: { requestId: state.requestId, saleId: state.saleId, userId: state.userId, quantity: it.m.quantity, status: 'failed', reason: state.reason! } })
      .catch((err: Error) => logger.warn({ err: err.message, requestId: state.requestId }, 'failed decision not recorded in PostgreSQL'));
    await writeState(redis, prefix, state);
    await this.deadLetter(it.ch, it.msg, it.m.requestId, reason, this.d.topology.purchaseDeadQueue, { [FINAL_STATUS_HEADER]: 'failed' });
    this.emit('decided', state);
  }

  /**
   * A purchase failed for good earlier comes back (a dead-letter replay): record the failure in PostgreSQL, which
   * may have been down then, and never decide it again (the shopper was told it failed). Should PostgreSQL hold an
   * order for it after all (its commit went through while the worker saw an error), that order was never shown to
   * the shopper: it expires now.
   */
  private async recordFailure(it: Item): Promise<void> {
    const { db, redis, config } = this.d;
    const reason = 'We could not process your purchase in time; nothing was charged or reserved. Please try again.';
    const { requestId, saleId, userId, quantity } = it.m;
    await db.purchase.createMany({ data: [{ requestId, saleId, userId, quantity, status: 'failed', reason }], skipDuplicates: true });
    const order = await db.order.findUnique({ where: { requestId }, select: { id: true, status: true } });
    if (order?.status === 'pending_payment') {
      await expireReservation(db, redis, config.REDIS_KEY_PREFIX, { orderId: order.id, requestId, saleId, userId, quantity });
      await db.purchase.update({ where: { requestId }, data: { status: 'failed', reason } });
      this.d.logger.warn({ requestId, orderId: order.id }, 'an order committed for a purchase failed for good; expired it');
    }
    await redis.hsetnx(saleKeys(config.REDIS_KEY_PREFIX, saleId).decided, requestId, Decision.Failed);
    this.ack(it);
    this.emit('decided', { requestId, saleId, userId, status: 'failed', reason, updatedAt: new Date().toISOString(), version: FINAL_VERSION });
  }

  private async deadLetter(
    ch: Channel,
    msg: ConsumeMessage,
    requestId: string | null,
    reason: string,
    queue = this.d.topology.purchaseDeadQueue,
    extraHeaders: Record<string, string> = {},
  ): Promise<void> {
    try {
      await this.d.broker.sendToQueue(queue, msg.content, {
        messageId: requestId ?? `poison:${msg.fields.deliveryTag}:${Date.now()}`,
        contentType: msg.properties.contentType ?? 'application/octet-stream',
        headers: { ...msg.properties.headers, ...extraHeaders, [REASON_HEADER]: reason },
      });
      settle(ch, msg, 'ack');
      this.d.logger.warn({ requestId, reason }, 'dead-lettered');
      this.emit('dead-lettered', requestId, reason);
    } catch (err) {
      this.d.logger.warn({ err: (err as Error).message }, 'cannot dead-letter; requeueing');
      settle(ch, msg, 'requeue');
    }
  }

  private ack(it: Item): void {
    settle(it.ch, it.msg, 'ack');
  }

  private nack(it: Item): void {
    settle(it.ch, it.msg, 'requeue');
  }
}

const settledMessages = new WeakSet<ConsumeMessage>();

/**
 * Acks or requeues a delivery once: a second ack of one delivery tag is a channel error that would close the
 * channel (and requeue everything on it). An ack on a closed channel throws; the broker redelivers those messages,
 * which processing absorbs.
 */
function settle(ch: Channel, msg: ConsumeMessage, how: 'ack' | 'requeue'): void {
  if (settledMessages.has(msg)) return;
  settledMessages.add(msg);
  try {
    if (how === 'ack') ch.ack(msg);
    else ch.nack(msg, false, true);
  } catch {
    /* channel closed: the message will be redelivered */
  }
}

/** Parses a message body with a schema. @returns the message, or why it is poison. */
function parseWith<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } }, msg: ConsumeMessage): T | string {
  let json: unknown;
  try {
    json = JSON.parse(msg.content.toString('utf8'));
  } catch {
    return 'body is not JSON';
  }
  const r = schema.safeParse(json);
  return r.success ? r.data : r.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
}

function attemptOf(msg: ConsumeMessage): number {
  const n = Number(msg.properties.headers?.[ATTEMPT_HEADER] ?? 0);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}
