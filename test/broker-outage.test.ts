/**
 * A RabbitMQ outage against the real broker, seen through a TCP proxy the test cuts: purchases get 503 with
 * Retry-After and leave nothing behind; when the broker is back, the API and the worker reconnect by themselves
 * (amqplib's recovery) and the shopper's retry goes through.
 */
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSystem, type TestSystem } from './support/system.ts';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.ts';

let sys: TestSystem;
let proxy: TcpProxy;
beforeAll(async () => {
  const amqpUrl = new URL(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
  proxy = await startTcpProxy(Number(amqpUrl.port || 5672), amqpUrl.hostname);
  amqpUrl.port = String(proxy.port);
  sys = await startSystem({ AMQP_URL: amqpUrl.toString() });
});
afterAll(async () => {
  proxy?.restore();
  await sys?.stop();
  await proxy?.close();
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
    expect((await sys.waitForFinal(first.body.requestId)).status).toBe('succeeded');

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
    expect((await sys.waitForFinal(retried.body.requestId)).status).toBe('succeeded');
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 1, ordersInDatabase: 2, inflightRequests: 0 });
  });
});
