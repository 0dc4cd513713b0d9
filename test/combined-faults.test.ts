/**
 * Combined faults, each reproduced at its exact point against the real services: an API that dies between admission
 * and publish while Redis is lost, a publish whose frame reached the broker but whose confirm never came back, a
 * rebuild of Redis in between, a read while Redis is unreachable. Each broke "every 202 reaches a final state" or
 * "a 503 never becomes an order" before; each must hold now.
 */
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { QUEUED_VERSION } from '../core/purchase-state.ts';
import { idempotencyKey, purchaseKey, saleKeys } from '../core/redis/keys.ts';
import { AdmitCode, admit, defineScripts } from '../core/redis/scripts.ts';
import { Redis } from 'ioredis';
import { idempotencyBodyHash } from '../api/purchase-service.ts';
import { startSystem, type TestSystem } from './support/system.ts';
import { proxyFor, type TcpProxy } from './support/tcp-proxy.ts';

const amqpUrl = new URL(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
const redisUrl = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');

/** What a Redis without persistence keeps of a sale after a restart: nothing. */
async function forgetSale(sys: TestSystem, saleId: string, requestIds: string[] = []): Promise<void> {
  const prefix = sys.config.REDIS_KEY_PREFIX;
  const { prefix: _p, saleId: _s, ...keys } = saleKeys(prefix, saleId);
  const idem = await sys.redis.keys(`${prefix}:sale:{${saleId}}:idem:*`);
  await sys.redis.del(...Object.values(keys), ...idem, ...requestIds.map((id) => purchaseKey(prefix, saleId, id)));
}

async function buy(sys: TestSystem, saleId: string, userId: string, headers: Record<string, string> = {}) {
  return sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token(userId)}`).set(headers).send({});
}

describe('an API dies between admission and publish, then Redis is lost', () => {
  let sys: TestSystem;
  let ch: Channel;
  beforeAll(async () => {
    sys = await startSystem({}, { worker: false });
    ch = await sys.api.deps.broker.createChannel();
  });
  afterAll(async () => {
    await ch?.close().catch(() => undefined);
    await sys?.stop();
  });
  afterEach(() => sys.assertInvariants());

  it('when the shopper retries with the same Idempotency-Key, then the replay is in the queue before its 202 and reaches a final state through the Redis loss', async () => {
    const saleId = await sys.createSale({ stock: 3 });
    const prefix = sys.config.REDIS_KEY_PREFIX;
    const userId = `replayed-${randomUUID()}`;
    const key = randomUUID();
    const requestId = randomUUID();
    // The API that admitted it died before publishing: the admission is in Redis only.
    const body = JSON.stringify({ requestId, saleId, userId, status: 'queued', updatedAt: new Date().toISOString(), version: QUEUED_VERSION });
    const admitted = await admit(sys.redis, saleKeys(prefix, saleId), idempotencyKey(prefix, saleId, userId, key), {
      requestId,
      userId,
      quantity: 1,
      nowMs: Date.now(),
      bodyHash: idempotencyBodyHash(saleId, 1),
      idemTtlS: 60,
      state: { body, version: QUEUED_VERSION, ttlS: 60 },
    });
    expect(admitted.code).toBe(AdmitCode.Admitted);
    expect((await ch.checkQueue(sys.api.deps.topology.purchaseQueue)).messageCount).toBe(0);

    const replay = await buy(sys, saleId, userId, { 'Idempotency-Key': key });
    expect(replay.status).toBe(202);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body.requestId).toBe(requestId);
    expect((await ch.checkQueue(sys.api.deps.topology.purchaseQueue)).messageCount).toBe(1);

    await forgetSale(sys, saleId, [requestId]);
    await sys.startWorker();
    expect((await sys.waitForFinal(saleId, requestId)).status).toBe('succeeded');
    const read = await sys.http.get(replay.body.statusUrl).set('Authorization', `Bearer ${await sys.token(userId)}`);
    expect(read.body).toMatchObject({ requestId, status: 'succeeded' });
    await sys.worker!.stop();
  });
});

describe('a publish whose confirm never comes back (the frame reached the broker)', () => {
  let sys: TestSystem;
  let proxy: TcpProxy;
  let ch: Channel;
  let direct: ChannelModel;
  beforeAll(async () => {
    const via = await proxyFor(amqpUrl.toString());
    proxy = via.proxy;
    // The API publishes through the proxy; the worker (started later) and the test talk to the broker directly.
    sys = await startSystem({ AMQP_URL: via.url, PUBLISH_TIMEOUT_MS: '500' }, { worker: false, workerEnv: { AMQP_URL: amqpUrl.toString() } });
    direct = await amqp.connect(amqpUrl.toString());
    ch = await direct.createChannel();
  });
  afterAll(async () => {
    await direct?.close().catch(() => undefined);
    proxy?.restore();
    await sys?.stop();
    await proxy?.close();
  });
  afterEach(() => sys.assertInvariants());

  it('when the shopper is told 503 and Redis is rebuilt before the message is decided, then the message is dropped: no order, the units stay on sale', async () => {
    const saleId = await sys.createSale({ stock: 2 });
    const userId = `unconfirmed-${randomUUID()}`;
    const key = randomUUID();
    const queue = sys.api.deps.topology.purchaseQueue;

    proxy.muteReplies();
    const refused = await buy(sys, saleId, userId, { 'Idempotency-Key': key });
    expect(refused.status).toBe(503);
    expect(refused.body.type).toBe('/problems/service-unavailable');
    // The publish did reach the queue: this is the message nobody may turn into an order.
    expect((await ch.checkQueue(queue)).messageCount).toBe(1);
    const withdrawn = await sys.api.deps.db.purchase.findMany({ where: { saleId } });
    expect(withdrawn).toMatchObject([{ userId, status: 'withdrawn' }]);
    const requestId = withdrawn[0]!.requestId;

    const ready = once(sys.api.deps.broker, 'ready');
    proxy.cut();
    proxy.restore();
    await ready;

    await forgetSale(sys, saleId);
    await sys.startWorker();
    const dropped = sys.workerEvent('withdrawn', (id: string) => id === requestId);
    await dropped;
    expect(await sys.api.deps.db.order.count({ where: { saleId } })).toBe(0);
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 2, ordersInDatabase: 0 });
    const read = await sys.http.get(`/api/sales/${saleId}/purchases/${requestId}`).set('Authorization', `Bearer ${await sys.token(userId)}`);
    expect(read.status).toBe(404);

    // The shopper's retry with the same key is a new request, accepted and decided.
    const retried = await buy(sys, saleId, userId, { 'Idempotency-Key': key });
    expect(retried.status).toBe(202);
    expect(retried.body.requestId).not.toBe(requestId);
    expect((await sys.waitForFinal(saleId, retried.body.requestId)).status).toBe('succeeded');
    await sys.worker!.stop();
  });
});

describe('after a rebuild, a shopper at the limit', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startSystem();
  });
  afterAll(() => sys?.stop());
  afterEach(() => sys.assertInvariants());

  it('when they ask again, then the 409 names the request that holds their place, and it can be read', async () => {
    const saleId = await sys.createSale({ stock: 3, perUserLimit: 1 });
    const userId = `limited-${randomUUID()}`;
    const first = await buy(sys, saleId, userId);
    expect(first.status).toBe(202);
    await sys.waitForFinal(saleId, first.body.requestId);
    await forgetSale(sys, saleId, [first.body.requestId]);

    const again = await buy(sys, saleId, userId);
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ type: '/problems/duplicate-purchase', requestId: first.body.requestId });
    const read = await sys.http.get(first.body.statusUrl).set('Authorization', `Bearer ${await sys.token(userId)}`);
    expect(read.body).toMatchObject({ requestId: first.body.requestId, status: 'succeeded' });
  });
});

describe('Redis unreachable for reads', () => {
  let sys: TestSystem;
  let proxy: TcpProxy;
  beforeAll(async () => {
    const via = await proxyFor(redisUrl.toString());
    proxy = via.proxy;
    sys = await startSystem({ REDIS_URL: via.url }, { workerEnv: { REDIS_URL: redisUrl.toString() } });
  });
  afterAll(async () => {
    proxy?.restore();
    await sys?.stop();
    await proxy?.close();
  });

  it('when a purchase was decided, then its state is read from PostgreSQL; one PostgreSQL does not know gets 503, not 404', async () => {
    const saleId = await sys.createSale({ stock: 2 });
    const userId = `reader-${randomUUID()}`;
    const token = await sys.token(userId);
    const res = await buy(sys, saleId, userId);
    expect(res.status).toBe(202);
    await sys.waitForFinal(saleId, res.body.requestId);

    proxy.cut();
    const decided = await sys.http.get(res.body.statusUrl).set('Authorization', `Bearer ${token}`);
    expect(decided.status).toBe(200);
    expect(decided.body).toMatchObject({ requestId: res.body.requestId, status: 'succeeded' });
    const unknown = await sys.http.get(`/api/sales/${saleId}/purchases/${randomUUID()}`).set('Authorization', `Bearer ${token}`);
    expect(unknown.status).toBe(503);
    const back = once(sys.redis, 'ready');
    proxy.restore();
    await back;
    await sys.assertInvariants();
  });
});

describe('an admission whose reply never comes back (the script ran in Redis)', () => {
  let sys: TestSystem;
  let proxy: TcpProxy;
  let direct: Redis;
  beforeAll(async () => {
    const via = await proxyFor(redisUrl.toString());
    proxy = via.proxy;
    // The API talks to Redis through the proxy; the test reads Redis directly.
    sys = await startSystem({ REDIS_URL: via.url }, { worker: false, workerEnv: { REDIS_URL: redisUrl.toString() } });
    direct = new Redis(redisUrl.toString());
    defineScripts(direct);
  });
  afterAll(async () => {
    direct?.disconnect();
    proxy?.restore();
    await sys?.stop();
    await proxy?.close();
  });

  it('when the shopper is told 503, then the admission is withdrawn: re-sent after the reconnect it is refused, and nothing is held or ordered', async () => {
    const saleId = await sys.createSale({ stock: 2 });
    const prefix = sys.config.REDIS_KEY_PREFIX;
    const keys = saleKeys(prefix, saleId);
    const userId = `slow-redis-${randomUUID()}`;
    expect((await buy(sys, saleId, `loader-${randomUUID()}`)).status).toBe(202); // the sale is in Redis

    proxy.muteReplies();
    const refused = await buy(sys, saleId, userId);
    expect(refused.status).toBe(503);
    const rows = await sys.api.deps.db.purchase.findMany({ where: { saleId, userId } });
    expect(rows).toMatchObject([{ status: 'withdrawn' }]);
    const requestId = rows[0]!.requestId;
    // The admission and the withdrawal both ran; their replies were lost. The reconnect re-sends both (ioredis
    // re-sends what was in flight): the admission runs again, late, and must be refused.
    const back = once(sys.redis, 'ready');
    proxy.cut();
    proxy.restore();
    await back;
    await sys.redis.ping();
    expect(await direct.hget(keys.decided, requestId)).toBe('3');
    expect(await direct.zscore(keys.inflight, requestId)).toBeNull();
    expect(await direct.hget(keys.held, userId)).toBeNull();
    const late = await admit(direct, keys, idempotencyKey(prefix, saleId, userId, ''), { requestId, userId, quantity: 1, nowMs: Date.now(), bodyHash: '', idemTtlS: 60, state: { body: '{}', version: QUEUED_VERSION, ttlS: 60 } });
    expect(late).toEqual({ code: AdmitCode.Decided, value: '3' });

    // Nothing for the sweeper to publish, and the shopper buys afresh.
    await sys.startWorker();
    const retried = await buy(sys, saleId, userId);
    expect(retried.status).toBe(202);
    expect((await sys.waitForFinal(saleId, retried.body.requestId)).status).toBe('succeeded');
    expect(await sys.api.deps.db.order.count({ where: { saleId, userId } })).toBe(1);
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 0, pendingUnits: 0, inflightRequests: 0, ordersInDatabase: 2 });
    await sys.worker!.stop();
  });
});
