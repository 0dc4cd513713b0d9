/**
 * Crashes, redeliveries and outages against the real services: a worker that dies mid-purchase, an API that dies
 * between admission and publish, RabbitMQ refusing a message, Redis unreachable, Redis losing its state.
 * Nothing accepted is lost, nothing is sold twice.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { Channel } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { purchaseDeliverySchema } from '../core/messages.ts';
import { QUEUED_VERSION, writeState } from '../core/purchase-state.ts';
import { idempotencyKey, saleKeys } from '../core/redis/keys.ts';
import { AdmitCode, admit, decide } from '../core/redis/scripts.ts';
import { snapshotSale } from '../core/sales.ts';
import { startWorker } from '../worker/main.ts';
import { persistDecisions } from '../worker/persist.ts';
import { createPool } from '../core/db/client.ts';
import { startSystem, TEST_DATABASE_URL, type TestSystem } from './support/system.ts';

let sys: TestSystem;
let ch: Channel;
const sql = createPool(TEST_DATABASE_URL, 1);
beforeAll(async () => {
  // No worker at first: the tests play the worker's crash themselves, then start the real one.
  sys = await startSystem({ STALE_ADMISSION_MS: '1000' }, { worker: false });
  ch = await sys.api.deps.broker.createChannel();
});
afterAll(async () => {
  await ch?.close().catch(() => undefined);
  await sys?.stop();
  await sql.end();
});
afterEach(() => sys.assertInvariants());

async function buy(saleId: string, userId: string, headers: Record<string, string> = {}) {
  return sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token(userId)}`).set(headers).send({});
}

/** Takes the next purchase message off the queue without acking it, as a worker that is about to crash. */
async function takeMessage() {
  const msg = await ch.get(sys.api.deps.topology.purchaseQueue, { noAck: false });
  if (!msg) throw new Error('expected a message in the purchase queue');
  const [m, ...more] = purchaseDeliverySchema.parse(JSON.parse(msg.content.toString()));
  if (!m || more.length) throw new Error('expected a message of one purchase');
  return m;
}

describe('a worker starts and stops', () => {
  it('when it starts before RabbitMQ has answered (as deployed), then each queue gets one consumer, and none is left after it stops', async () => {
    const { purchaseQueue, reservationExpiryQueue } = sys.api.deps.topology;
    const consumers = async () => [(await ch.checkQueue(purchaseQueue)).consumerCount, (await ch.checkQueue(reservationExpiryQueue)).consumerCount];
    expect(await consumers()).toEqual([0, 0]);
    const running = await startWorker(sys.config, sys.api.deps.logger, { background: true });
    try {
      await once(running.worker, 'consuming');
      await running.worker.stop();
      // The connection is still open: a consumer opened twice (at start, and again on the first connect) would be here.
      expect(await consumers()).toEqual([0, 0]);
    } finally {
      await running.stop();
    }
  });
});

describe('a worker dies mid-purchase', () => {
  it('when it dies after the Lua script and after the PostgreSQL write but before the ack, then the redelivery takes no second unit and makes no second order', async () => {
    const saleId = await sys.createSale({ stock: 5 });
    const a = await buy(saleId, `crash-${randomUUID()}`);
    const b = await buy(saleId, `crash-${randomUUID()}`);
    expect([a.status, b.status]).toEqual([202, 202]);

    const keys = saleKeys(sys.config.REDIS_KEY_PREFIX, saleId);
    const m1 = await takeMessage();
    const m2 = await takeMessage();
    // Message 1: decided in Redis, then the worker died. Message 2: decided and persisted, then it died.
    expect((await decide(sys.redis, keys, [m1])).results[0]!.decision).toBe(0);
    const decidedM2 = await decide(sys.redis, keys, [m2]);
    expect(decidedM2.results[0]!.decision).toBe(0);
    await persistDecisions(sql, [{ ...m2, status: 'succeeded', epoch: decidedM2.epoch }], 60_000);
    await ch.close(); // unacked messages go back to the queue
    ch = await sys.api.deps.broker.createChannel();

    await sys.startWorker();
    const finals = await Promise.all([sys.waitForFinal(saleId, m1.requestId), sys.waitForFinal(saleId, m2.requestId)]);
    expect(finals.map((f) => f.status)).toEqual(['succeeded', 'succeeded']);
    const stats = await sys.stats(saleId);
    expect(stats).toMatchObject({ remaining: 3, ordersInDatabase: 2, unitsInDatabase: 2, inflightRequests: 0, pendingUnits: 0 });
    await sys.worker!.stop();
  });
});

describe('following a purchase over SSE', () => {
  it('when connected while queued, then it gets the queued state, then the result, then the stream closes', async () => {
    const saleId = await sys.createSale({ stock: 1 });
    const userId = `follower-${randomUUID()}`;
    const { body } = await buy(saleId, userId);
    const token = await sys.token(userId);
    let text = '';
    let startedWorker: Promise<unknown> | undefined;
    await new Promise<void>((resolve, reject) => {
      http
        .get(`${sys.url}${body.eventsUrl}`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
          expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            text += chunk;
            // The result can only come after we saw the queued state: the worker starts now.
            if (!startedWorker && text.includes('"status":"queued"')) startedWorker = sys.startWorker();
          });
          res.on('end', resolve);
        })
        .on('error', reject);
    });
    await startedWorker;
    const events = [...text.matchAll(/^id: (\d+)\ndata: (.*)$/gm)].map((m) => [Number(m[1]), JSON.parse(m[2]!).status]);
    expect(events).toEqual([
      [1, 'queued'],
      [2, 'succeeded'],
    ]);
    await sys.worker!.stop();
  });
});

describe('the same purchase delivered twice', () => {
  it('when two copies of one message arrive together, then one order is made and both are settled', async () => {
    const saleId = await sys.createSale({ stock: 2 });
    const res = await buy(saleId, `twice-${randomUUID()}`);
    const msg = await ch.get(sys.api.deps.topology.purchaseQueue, { noAck: false });
    if (!msg) throw new Error('expected the purchase message');
    const t = sys.api.deps.topology;
    for (let i = 0; i < 2; i++) {
      await sys.api.deps.broker.publish(t.purchaseExchange, t.purchaseRoutingKey, msg.content, { messageId: res.body.requestId });
    }
    ch.ack(msg);
    await sys.startWorker();
    expect((await sys.waitForFinal(saleId, res.body.requestId)).status).toBe('succeeded');
    await sys.worker!.stop(); // waits for the batch: both copies settled
    expect((await ch.checkQueue(t.purchaseQueue)).messageCount).toBe(0);
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 1, ordersInDatabase: 1, inflightRequests: 0 });
  });
});

describe('an API dies between admission and publish', () => {
  it('when an admission is never published, then the sweeper publishes it and the request reaches a final state', async () => {
    const saleId = await sys.createSale({ stock: 2, startsAt: new Date(Date.now() - 60_000).toISOString() });
    const prefix = sys.config.REDIS_KEY_PREFIX;
    const keys = saleKeys(prefix, saleId);
    const requestId = randomUUID();
    const userId = `orphan-${randomUUID()}`;
    const r = await admit(sys.redis, keys, idempotencyKey(prefix, saleId, userId, ''), {
      requestId,
      userId,
      quantity: 1,
      nowMs: Date.now() - 5000,
      bodyHash: '',
      idemTtlS: 60,
      state: { body: JSON.stringify({ requestId, saleId, userId, status: 'queued', updatedAt: new Date().toISOString(), version: QUEUED_VERSION }), version: QUEUED_VERSION, ttlS: 60 },
    });
    expect(r.code).toBe(AdmitCode.Admitted);

    await sys.startWorker();
    const final = await sys.waitForFinal(saleId, requestId);
    expect(final.status).toBe('succeeded');
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 1, ordersInDatabase: 1, inflightRequests: 0 });
    await sys.worker!.stop();
  });
});

describe('dependency outages', () => {
  it('when RabbitMQ cannot route the message, then 503 with Retry-After and nothing is left to block the retry', async () => {
    const saleId = await sys.createSale({ stock: 3 });
    const t = sys.api.deps.topology;
    const user = `unroutable-${randomUUID()}`;
    const key = randomUUID();
    await ch.unbindQueue(t.purchaseQueue, t.purchaseExchange, t.purchaseRoutingKey);
    try {
      const res = await buy(saleId, user, { 'Idempotency-Key': key });
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('1');
      expect(res.body.type).toBe('/problems/service-unavailable');
      expect(await sys.stats(saleId)).toMatchObject({ remaining: 3, pendingUnits: 0, inflightRequests: 0 });
    } finally {
      await ch.bindQueue(t.purchaseQueue, t.purchaseExchange, t.purchaseRoutingKey);
    }
    const retry = await buy(saleId, user, { 'Idempotency-Key': key });
    expect(retry.status).toBe(202);
    expect(retry.headers['idempotent-replayed']).toBeUndefined();
  });

  it('when Redis is unreachable, then 503 with Retry-After; when it is back, the retry is accepted', async () => {
    const saleId = await sys.createSale({ stock: 3 });
    const user = `redis-down-${randomUUID()}`;
    const clients = sys.apis.map((a) => a.deps.redis); // whichever node the request reaches has lost Redis
    for (const c of clients) c.disconnect();
    try {
      const res = await buy(saleId, user);
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBeDefined();
      const ready = await sys.http.get('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.checks.redis).toBe('down');
    } finally {
      await Promise.all(clients.map((c) => c.connect()));
    }
    // A 202, not a 409 duplicate: the admission that got its 503 was not run once Redis came back.
    expect((await buy(saleId, user)).status).toBe(202);
  });
});

describe('Redis loses its state (restart without persistence)', () => {
  it('when Redis is wiped with purchases queued and orders taken, then the sale is rebuilt from PostgreSQL and no promise breaks', async () => {
    const stock = 6;
    const saleId = await sys.createSale({ stock });
    const worker = await sys.startWorker();

    // Phase 1: two orders taken and persisted.
    const early = [`early-${randomUUID()}`, `early-${randomUUID()}`];
    const done = await Promise.all(early.map((u) => buy(saleId, u)));
    await Promise.all(done.map((r) => sys.waitForFinal(saleId, r.body.requestId)));
    await worker.stop();

    // Phase 2: eight more accepted while no worker runs, then Redis loses everything of this sale.
    const late = Array.from({ length: 8 }, () => `late-${randomUUID()}`);
    const queued = await Promise.all(late.map((u) => buy(saleId, u)));
    const accepted = queued.filter((r) => r.status === 202);
    expect(accepted).toHaveLength(4); // admission lets in only what stock can serve
    await sys.wipeRedis();

    // Phase 3: the worker rebuilds the sale from PostgreSQL and decides the queued purchases.
    await sys.startWorker();
    const finals = await Promise.all(accepted.map((r) => sys.waitForFinal(saleId, r.body.requestId)));
    expect(finals.filter((f) => f.status === 'succeeded')).toHaveLength(4);
    const stats = await sys.stats(saleId);
    expect(stats).toMatchObject({ remaining: 0, ordersInDatabase: stock, unitsInDatabase: stock, inflightRequests: 0 });

    // An early buyer is still known after the rebuild: a second purchase is a duplicate, not a sale.
    const again = await buy(saleId, early[0]!);
    expect(again.status).toBe(409);
    expect(again.body.type).toMatch(/\/(duplicate-purchase|sold-out)$/);
    await sys.worker!.stop();
  });
});

describe('a rebuild that never reached Redis', () => {
  it('when PostgreSQL moved to a newer epoch than Redis holds, then the worker\'s decisions come back stale, it reloads the sale and decides them again', async () => {
    const stock = 3;
    const saleId = await sys.createSale({ stock });
    // A process bumped the epoch to rebuild the sale, then died before loading Redis.
    const bumped = await snapshotSale(sys.api.deps.db, saleId);
    const redisEpoch = await sys.redis.hget(saleKeys(sys.config.REDIS_KEY_PREFIX, saleId).sale, 'epoch');
    expect(Number(bumped!.epoch)).toBeGreaterThan(Number(redisEpoch));

    const accepted = await Promise.all(Array.from({ length: 5 }, () => buy(saleId, `stale-${randomUUID()}`)));
    const worker = await sys.startWorker();
    const finals = await Promise.all(accepted.filter((r) => r.status === 202).map((r) => sys.waitForFinal(saleId, r.body.requestId)));
    expect(finals.filter((f) => f.status === 'succeeded')).toHaveLength(stock);
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 0, ordersInDatabase: stock, unitsInDatabase: stock, inflightRequests: 0 });
    const sale = await sys.api.deps.db.sale.findUniqueOrThrow({ where: { id: saleId } });
    expect(await sys.redis.hget(saleKeys(sys.config.REDIS_KEY_PREFIX, saleId).sale, 'epoch')).toBe(String(sale.epoch));
    await worker.stop();
  });
});
