/**
 * Retry tiers and dead-letter queues against the real RabbitMQ, PostgreSQL and Redis: poison messages, a
 * PostgreSQL outage shorter and longer than the retry tiers (the worker reaches PostgreSQL through a proxy the
 * test cuts), and replaying the dead-letter queue.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { saleKeys } from '../core/redis/keys.ts';
import { startSystem, ADMIN_TOKEN, TEST_DATABASE_URL, type TestSystem } from './support/system.ts';
import { proxyFor, type TcpProxy } from './support/tcp-proxy.ts';

let sys: TestSystem;
let proxy: TcpProxy;
beforeAll(async () => {
  const via = await proxyFor(TEST_DATABASE_URL);
  proxy = via.proxy;
  sys = await startSystem({ RETRY_DELAYS_MS: '300,1000,2000' }, { workerEnv: { DATABASE_URL: via.url } });
});
afterAll(async () => {
  proxy?.restore();
  await sys?.stop();
  await proxy?.close();
});
afterEach(() => sys.assertInvariants());

async function buy(saleId: string, userId = `u-${randomUUID()}`) {
  const res = await sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token(userId)}`).send({});
  expect(res.status).toBe(202);
  return res.body as { requestId: string };
}

const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };
const dlq = async (queue = 'purchases') => (await sys.http.get(`/api/admin/dlq?queue=${queue}&limit=100`).set(admin)).body;

describe('poison messages', () => {
  it('when messages are not JSON or not purchases, then they reach the dead-letter queue on their first delivery and the purchase behind them is processed', async () => {
    const t = sys.api.deps.topology;
    const before = (await dlq()).count;
    const saleId = await sys.createSale({ stock: 2 });
    for (const body of ['not json at all', JSON.stringify({ v: 1, requestId: 'nope' })]) {
      await sys.api.deps.broker.publish(t.purchaseExchange, t.purchaseRoutingKey, Buffer.from(body), { messageId: randomUUID() });
    }
    const { requestId } = await buy(saleId);
    expect((await sys.waitForFinal(saleId, requestId)).status).toBe('succeeded');
    const after = await dlq();
    expect(after.count).toBe(before + 2);
    const reasons = after.messages.map((m: { reason: string }) => m.reason);
    expect(reasons.some((r: string) => r.includes('poison message: body is not JSON'))).toBe(true);
    expect(reasons.some((r: string) => r.includes('poison message') && r.includes('requestId'))).toBe(true);
    const redelivered = after.messages.filter((m: { body: unknown }) => m.body === 'not json at all');
    expect(redelivered).toHaveLength(1);
  });
});

describe('PostgreSQL outage', () => {
  it('when PostgreSQL is unreachable for a moment, then purchases in flight retry and succeed: none failed, none duplicated', async () => {
    const saleId = await sys.createSale({ stock: 5 });
    proxy.cut();
    const ids: string[] = [];
    const retried = new Set<string>();
    const allRetried = sys.workerEvent('retried', (id: string) => {
      if (ids.includes(id)) retried.add(id);
      return ids.length === 3 && retried.size === 3;
    });
    try {
      for (let i = 0; i < 3; i++) ids.push((await buy(saleId)).requestId);
      await allRetried;
    } finally {
      proxy.restore();
    }
    const finals = await Promise.all(ids.map((id) => sys.waitForFinal(saleId, id)));
    expect(finals.map((f) => f.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    const stats = await sys.stats(saleId);
    expect(stats).toMatchObject({ remaining: 2, ordersInDatabase: 3, unitsInDatabase: 3, inflightRequests: 0 });
    expect(stats.decisions).toEqual({ succeeded: 3 });
  });

  it('when PostgreSQL stays unreachable past the last tier, then the purchase fails with a reason, its stock is back, and replaying it makes no order', async () => {
    const saleId = await sys.createSale({ stock: 3 });
    const deadLettered = sys.recordWorkerEvents('dead-lettered');
    proxy.cut();
    let requestId = '';
    try {
      requestId = (await buy(saleId)).requestId;
      const final = await sys.waitForFinal(saleId, requestId);
      expect(final.status).toBe('failed');
      expect(final.reason).toMatch(/try again/i);
      const [, reason] = await deadLettered.find((id: string) => id === requestId);
      expect(reason).toMatch(/^gave up after 4 attempts/);
    } finally {
      proxy.restore();
    }
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 3, ordersInDatabase: 0, inflightRequests: 0 });

    // Redis forgets the sale (a restart), so only the message itself can say the purchase failed.
    const keys = saleKeys(sys.config.REDIS_KEY_PREFIX, saleId);
    await sys.redis.del(keys.sale, keys.held, keys.last, keys.inflight, keys.requests, keys.decided);
    const replayedDecision = sys.workerEvent('decided', (s: { requestId: string }) => s.requestId === requestId);
    const replay = await sys.http.post('/api/admin/dlq/replay').set(admin).send({});
    expect(replay.body.replayed).toBeGreaterThanOrEqual(1);
    await replayedDecision;
    const stats = await sys.stats(saleId);
    expect(stats).toMatchObject({ remaining: 3, ordersInDatabase: 0 });
    expect(stats.decisions).toEqual({ failed: 1 });
  });
});

describe('replaying the dead-letter queue', () => {
  it('when a purchase that already succeeded is replayed (dead-lettered after worker crashes), then no second order is made', async () => {
    const saleId = await sys.createSale({ stock: 4 });
    const userId = `replayed-${randomUUID()}`;
    const { requestId } = await buy(saleId, userId);
    await sys.waitForFinal(saleId, requestId);
    const epoch = await sys.redis.hget(saleKeys(sys.config.REDIS_KEY_PREFIX, saleId).sale, 'epoch');
    const message = { v: 1, requestId, saleId, userId, quantity: 1, epoch, admittedAt: Date.now() };
    // As the broker does when x-delivery-limit is reached: the healthy message lands in the dead-letter queue.
    await sys.api.deps.broker.sendToQueue(sys.api.deps.topology.purchaseDeadQueue, Buffer.from(JSON.stringify(message)), {
      messageId: requestId,
      headers: { 'x-first-death-reason': 'delivery_limit' },
    });
    const replayedDecision = sys.workerEvent('decided', (s: { requestId: string }) => s.requestId === requestId);
    expect((await sys.http.post('/api/admin/dlq/replay').set(admin).send({ limit: 100 })).status).toBe(200);
    const [state] = (await replayedDecision) as [{ status: string }];
    expect(state.status).toBe('succeeded');
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 3, ordersInDatabase: 1, unitsInDatabase: 1 });
  });

  it('when the admin body is invalid, then 400 and nothing moves', async () => {
    const res = await sys.http.post('/api/admin/dlq/replay').set(admin).send({ queue: 'elsewhere' });
    expect(res.status).toBe(400);
    expect((await sys.http.get('/api/admin/dlq?limit=0').set(admin)).status).toBe(400);
  });
});
