/**
 * Outages of the real RabbitMQ and PostgreSQL, seen through TCP proxies the test cuts. RabbitMQ gone: purchases get
 * 503 with Retry-After and leave nothing behind; when it is back, the API and the worker reconnect by themselves
 * (amqplib's recovery) and the shopper's retry goes through. PostgreSQL gone: reads that need it get 503, while
 * purchases of a sale already in Redis are still accepted, and decided once it is back.
 */
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSystem, TEST_DATABASE_URL, type TestSystem } from './support/system.ts';
import { proxyFor, type TcpProxy } from './support/tcp-proxy.ts';

let sys: TestSystem;
let proxy: TcpProxy;
let pgProxy: TcpProxy;
beforeAll(async () => {
  const amqp = await proxyFor(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
  const pg = await proxyFor(TEST_DATABASE_URL);
  [proxy, pgProxy] = [amqp.proxy, pg.proxy];
  sys = await startSystem({ AMQP_URL: amqp.url, DATABASE_URL: pg.url });
});
afterAll(async () => {
  proxy?.restore();
  pgProxy?.restore();
  await sys?.stop();
  await Promise.all([proxy?.close(), pgProxy?.close()]);
});
afterEach(() => sys.assertInvariants());

async function buy(saleId: string, userId: string) {
  return sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token(userId)}`).send({});
}

describe('RabbitMQ unreachable', () => {
  it('when the broker goes away, then purchases get 503 and change nothing; when it is back, the retry succeeds', async () => {
    const saleId = await sys.createSale({ stock: 3 });
    const first = await buy(saleId, `before-${randomUUID()}`);
    expect(first.status).toBe(202);
    expect((await sys.waitForFinal(saleId, first.body.requestId)).status).toBe('succeeded');

    const broker = sys.api.deps.broker;
    const disconnected = once(broker, 'disconnected');
    proxy.cut();
    await disconnected;
    const shopper = `during-${randomUUID()}`;
    const refused = await buy(saleId, shopper);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBeDefined();
    expect(refused.body.type).toBe('/problems/service-unavailable');
    expect((await sys.http.get('/readyz')).body.checks.rabbitmq).toBe('down');
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 2, pendingUnits: 0, inflightRequests: 0 });

    const ready = once(broker, 'ready');
    proxy.restore();
    await ready;
    const retried = await buy(saleId, shopper);
    expect(retried.status).toBe(202);
    expect((await sys.waitForFinal(saleId, retried.body.requestId)).status).toBe('succeeded');
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 1, ordersInDatabase: 2, inflightRequests: 0 });
  });
});

describe('PostgreSQL unreachable', () => {
  it('when the database goes away, then reads that need it get 503, purchases are still accepted, and decided once it is back', async () => {
    const saleId = await sys.createSale({ stock: 2 });
    await sys.http.get(`/api/sales/${saleId}`); // the sale record is now known to this process
    pgProxy.cut();
    let requestId: string;
    try {
      const list = await sys.http.get('/api/sales');
      expect(list.status).toBe(503);
      expect(list.body.type).toBe('/problems/service-unavailable');
      const ready = await sys.http.get('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.checks.postgres).toBe('down');
      const accepted = await buy(saleId, `pg-down-${randomUUID()}`);
      expect(accepted.status).toBe(202);
      requestId = accepted.body.requestId;
    } finally {
      pgProxy.restore();
    }
    expect((await sys.waitForFinal(saleId, requestId)).status).toBe('succeeded');
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 1, ordersInDatabase: 1 });
  });
});
