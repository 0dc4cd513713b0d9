/**
 * Publisher micro-batching against the real broker and worker: the purchases admitted in one event-loop turn travel
 * in one message with one confirm; the worker decides each purchase of it on its own, dead-letters one alone, and
 * acks the delivery once all are settled; a batch that is not confirmed fails every purchase in it, and each is
 * withdrawn.
 */
import { randomUUID } from 'node:crypto';
import type { Channel } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REASON_HEADER, purchaseDeliverySchema, type PurchaseMessage } from '../core/messages.ts';
import { startSystem, type TestSystem } from './support/system.ts';

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

function message(saleId: string, userId = `batch-${randomUUID()}`): PurchaseMessage {
  return { v: 1, requestId: randomUUID(), saleId, userId, quantity: 1, epoch: '0', admittedAt: Date.now() };
}

async function buy(saleId: string, userId: string) {
  return sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token(userId)}`).send({});
}

describe('the purchase publisher', () => {
  it('when purchases are published in one event-loop turn, then one message carries them all and every one is confirmed', async () => {
    const saleId = randomUUID();
    const purchases = Array.from({ length: 50 }, () => message(saleId));
    await Promise.all(purchases.map((m) => sys.api.deps.purchases.publish(m)));
    const msg = await ch.get(sys.api.deps.topology.purchaseQueue, { noAck: true });
    if (!msg) throw new Error('expected a message');
    expect(purchaseDeliverySchema.parse(JSON.parse(msg.content.toString()))).toEqual(purchases);
    expect(await ch.get(sys.api.deps.topology.purchaseQueue, { noAck: true })).toBe(false);
  });

  it('when the batch cannot be routed, then every purchase in it is answered 503 and withdrawn', async () => {
    const saleId = await sys.createSale({ stock: 10 });
    const t = sys.api.deps.topology;
    await ch.unbindQueue(t.purchaseQueue, t.purchaseExchange, t.purchaseRoutingKey);
    try {
      const answers = await Promise.all(Array.from({ length: 5 }, () => buy(saleId, `unroutable-${randomUUID()}`)));
      expect(answers.map((r) => r.status)).toEqual([503, 503, 503, 503, 503]);
    } finally {
      await ch.bindQueue(t.purchaseQueue, t.purchaseExchange, t.purchaseRoutingKey);
    }
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 10, pendingUnits: 0, inflightRequests: 0 });
  });
});

describe('the worker reading a batch message', () => {
  it('when one purchase of a batch names an unknown sale, then it alone is dead-lettered, the others are decided, and the delivery is settled', async () => {
    const saleId = await sys.createSale({ stock: 5 });
    const t = sys.api.deps.topology;
    const accepted = await Promise.all([buy(saleId, `b-${randomUUID()}`), buy(saleId, `b-${randomUUID()}`)]);
    expect(accepted.map((r) => r.status)).toEqual([202, 202]);
    // Replace what the API queued by one batch message that also carries a purchase of a sale nobody knows.
    const queued: PurchaseMessage[] = [];
    for (let msg = await ch.get(t.purchaseQueue, { noAck: true }); msg; msg = await ch.get(t.purchaseQueue, { noAck: true })) {
      queued.push(...purchaseDeliverySchema.parse(JSON.parse(msg.content.toString())));
    }
    expect(queued.map((m) => m.requestId).sort()).toEqual(accepted.map((r) => r.body.requestId).sort());
    const stranger = message(randomUUID());
    await sys.api.deps.broker.publish(t.purchaseExchange, t.purchaseRoutingKey, Buffer.from(JSON.stringify({ v: 2, purchases: [queued[0], stranger, queued[1]] })), {
      messageId: randomUUID(),
    });

    await sys.startWorker();
    const deadLettered = sys.workerEvent('dead-lettered', (id: string) => id === stranger.requestId);
    const finals = await Promise.all(queued.map((m) => sys.waitForFinal(saleId, m.requestId)));
    expect(finals.map((f) => f.status)).toEqual(['succeeded', 'succeeded']);
    await deadLettered;
    await sys.worker!.stop(); // waits for the batch: every purchase settled, so the delivery is acked
    expect((await ch.checkQueue(t.purchaseQueue)).messageCount).toBe(0);
    const dead = await ch.get(t.purchaseDeadQueue, { noAck: true });
    if (!dead) throw new Error('expected the dead-lettered purchase');
    expect(JSON.parse(dead.content.toString())).toEqual(stranger);
    expect(String(dead.properties.headers?.[REASON_HEADER])).toContain('unknown sale');
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 3, ordersInDatabase: 2, inflightRequests: 0 });
  });
});
