/**
 * Reservations against the real services: an unpaid reservation expires through the delayed queue and its unit is
 * sold again; paying is idempotent; paying after expiry is refused; pay and expiry racing have exactly one winner,
 * every time. After every test the sale's invariant holds: remaining + units in active orders == stock.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expireReservation } from '../core/orders.ts';
import { saleKeys } from '../core/redis/keys.ts';
import { startSystem, type TestSystem } from './support/system.ts';

let quick: TestSystem; // 1 s payment window: expiry messages fire during the test
let slow: TestSystem; // default window: only the test expires orders
beforeAll(async () => {
  [quick, slow] = await Promise.all([startSystem({ PAYMENT_WINDOW_SECONDS: '1' }), startSystem()]);
});
afterAll(async () => {
  await Promise.all([quick?.stop(), slow?.stop()]);
});
afterEach(() => Promise.all([quick.assertInvariants(), slow.assertInvariants()]).then(() => undefined));

async function purchase(sys: TestSystem, saleId: string, userId = `u-${randomUUID()}`) {
  const token = await sys.token(userId);
  const res = await sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${token}`).send({});
  expect(res.status).toBe(202);
  const final = await sys.waitForFinal(saleId, res.body.requestId);
  return { userId, token, final, requestId: res.body.requestId as string };
}

async function expectInvariant(sys: TestSystem, saleId: string) {
  const s = await sys.stats(saleId);
  expect(s.remaining + s.unitsInDatabase).toBe(s.stock);
  expect(s.ordersInDatabase).toBe(s.unitsInDatabase); // every order here is of one unit
}

describe('an unpaid reservation', () => {
  it('when its payment window closes, then it expires, the unit returns, and another shopper buys it', async () => {
    const saleId = await quick.createSale({ stock: 1 });
    const expired = quick.workerEvent('expired', () => true);
    // Every API node hears the returned stock, whichever remembered the sold-out answer.
    const announced = Promise.all(quick.apis.map((a) => new Promise((resolve) => a.deps.soldOut.on('returned', (id: string) => id === saleId && resolve(id)))));
    const a = await purchase(quick, saleId);
    expect(a.final.status).toBe('succeeded');
    const early = await quick.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await quick.token('b')}`).send({});
    expect(early.body.type).toBe('/problems/sold-out');
    expect(quick.apis.filter((a) => a.deps.soldOut.has(saleId))).toHaveLength(1); // the node that answered
    const order = await quick.http.get(`/api/orders/${a.final.orderId}`).set('Authorization', `Bearer ${a.token}`);
    expect(order.body).toMatchObject({ orderId: a.final.orderId, saleId, status: 'pending_payment', quantity: 1 });
    expect((await quick.http.get(`/api/sales/${saleId}`)).body.state).toBe('sold_out');

    const [orderId, result] = await expired;
    expect([orderId, result]).toEqual([a.final.orderId, 'expired']);
    const after = await quick.http.get(`/api/orders/${a.final.orderId}`).set('Authorization', `Bearer ${a.token}`);
    expect(after.body.status).toBe('expired');
    expect((await quick.http.get(`/api/sales/${saleId}`)).body).toMatchObject({ remaining: 1, state: 'live' });
    expect(await quick.stats(saleId)).toMatchObject({ ordersInDatabase: 0, ordersByStatus: { expired: 1 } });
    expect(await quick.redis.hget(saleKeys(quick.config.REDIS_KEY_PREFIX, saleId).held, a.userId)).toBeNull();

    const pay = await quick.http.post(`/api/orders/${a.final.orderId}/pay`).set('Authorization', `Bearer ${a.token}`);
    expect(pay.status).toBe(409);
    expect(pay.body.type).toBe('/problems/order-expired');

    await announced; // the API forgot the sold-out answer it remembered
    expect(quick.apis.some((a) => a.deps.soldOut.has(saleId))).toBe(false);
    const b = await purchase(quick, saleId, 'b');
    expect(b.final.status).toBe('succeeded');
    await expectInvariant(quick, saleId);
  });

  it('when paid in time, then paying again answers the same, and the expiry finds it paid', async () => {
    const saleId = await quick.createSale({ stock: 2 });
    const expiries = quick.recordWorkerEvents('expired');
    const a = await purchase(quick, saleId);
    const expired = expiries.find((id: string) => id === a.final.orderId);
    const first = await quick.http.post(`/api/orders/${a.final.orderId}/pay`).set('Authorization', `Bearer ${a.token}`);
    expect(first.status).toBe(200);
    expect(first.body.status).toBe('paid');
    const again = await quick.http.post(`/api/orders/${a.final.orderId}/pay`).set('Authorization', `Bearer ${a.token}`);
    expect(again.body).toEqual(first.body);
    expect((await expired)[1]).toBe('paid');
    expect(await quick.stats(saleId)).toMatchObject({ remaining: 1, ordersInDatabase: 1, ordersByStatus: { paid: 1 } });
    await expectInvariant(quick, saleId);
  });

  it('when an expiry message of the previous format (v1, one reservation) arrives, then it is honoured', async () => {
    const saleId = await slow.createSale({ stock: 1 });
    const a = await purchase(slow, saleId);
    const expired = slow.workerEvent('expired', (id: string) => id === a.final.orderId);
    const t = slow.api.deps.topology;
    const v1 = { v: 1, orderId: a.final.orderId, requestId: a.requestId, saleId, userId: a.userId, quantity: 1 };
    await slow.api.deps.broker.publish(t.reservationExchange, t.reservationRoutingKey, Buffer.from(JSON.stringify(v1)), { messageId: randomUUID() });
    expect((await expired)[1]).toBe('expired');
    expect(await slow.stats(saleId)).toMatchObject({ remaining: 1, ordersInDatabase: 0 });
  });

  it('when someone else asks for the order, then 404', async () => {
    const saleId = await slow.createSale({ stock: 1 });
    const a = await purchase(slow, saleId);
    const stranger = `Bearer ${await slow.token('stranger')}`;
    expect((await slow.http.get(`/api/orders/${a.final.orderId}`).set('Authorization', stranger)).status).toBe(404);
    expect((await slow.http.post(`/api/orders/${a.final.orderId}/pay`).set('Authorization', stranger)).status).toBe(404);
    expect((await slow.http.post('/api/orders/not-a-uuid/pay').set('Authorization', stranger)).status).toBe(404);
  });
});

describe('pay versus expiry', () => {
  it('when they race, 50 times, then exactly one wins each time and stock follows the winner', async () => {
    const outcomes = { paid: 0, expired: 0 };
    for (let i = 0; i < 50; i++) {
      const saleId = await slow.createSale({ stock: 1 });
      const a = await purchase(slow, saleId);
      const orderId = a.final.orderId!;
      const message = { v: 1 as const, orderId, requestId: a.requestId, saleId, userId: a.userId, quantity: 1 };
      const [pay, expiry] = await Promise.all([
        slow.http.post(`/api/orders/${orderId}/pay`).set('Authorization', `Bearer ${a.token}`),
        expireReservation(slow.api.deps.db, slow.redis, slow.config.REDIS_KEY_PREFIX, message),
      ]);
      const stats = await slow.stats(saleId);
      if (pay.status === 200) {
        expect(expiry).toBe('paid');
        expect(stats).toMatchObject({ remaining: 0, ordersByStatus: { paid: 1, expired: 0 } });
        outcomes.paid++;
      } else {
        expect(pay.status).toBe(409);
        expect(expiry).toBe('expired');
        expect(stats).toMatchObject({ remaining: 1, ordersByStatus: { paid: 0, expired: 1 } });
        outcomes.expired++;
      }
      expect(stats.remaining + stats.unitsInDatabase).toBe(1);
    }
    expect(outcomes.paid + outcomes.expired).toBe(50);
  });
});
