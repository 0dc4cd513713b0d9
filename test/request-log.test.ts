/**
 * Request logs: a request id accepted from X-Request-Id (or made), echoed back and logged; no token or cookie ever
 * reaches a log line; routine answers on the purchase path are sampled.
 */
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../api/app.ts';
import { startSystem, type TestSystem } from './support/system.ts';

let sys: TestSystem;
beforeAll(async () => {
  sys = await startSystem({}, { worker: false });
});
afterAll(() => sys?.stop());

/** An app on the system's connections whose logs land in `lines`. */
function appLogging(sample: number) {
  const lines: Record<string, any>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  const logger = pino({ level: 'info' }, sink);
  const app = createApp({ ...sys.api.deps, logger, config: { ...sys.config, REQUEST_LOG_SAMPLE: sample } });
  return { http: request(app), lines, raw: () => JSON.stringify(lines) };
}

const settle = () => new Promise((r) => setTimeout(r, 20));

describe('request logs', () => {
  it('when a caller sends X-Request-Id, then it is echoed and logged; a malformed one is replaced', async () => {
    const { http, lines } = appLogging(1);
    const id = `edge-${randomUUID()}`;
    const res = await http.get(`/api/sales/${randomUUID()}`).set('X-Request-Id', id);
    expect(res.status).toBe(404);
    expect(res.headers['x-request-id']).toBe(id);
    const bad = await http.get('/api/sales').set('X-Request-Id', 'has spaces and "quotes"');
    expect(bad.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    await settle();
    const line = lines.find((l) => l.req?.id === id);
    expect(line).toMatchObject({ req: { method: 'GET' }, route: '/api/sales/:saleId', res: { statusCode: 404 } });
    expect(typeof line!.responseTime).toBe('number');
  });

  it('when a request carries a token, a cookie and a query, then none of them is logged', async () => {
    const { http, raw } = appLogging(1);
    const token = await sys.token(`log-${randomUUID()}`);
    await http.get(`/api/orders/${randomUUID()}?secret=query-secret`).set('Authorization', `Bearer ${token}`).set('Cookie', 'session=cookie-secret');
    await http.post('/api/session').send({ userId: `log-${randomUUID()}` });
    await settle();
    const text = raw();
    expect(text).toContain('/api/orders/');
    expect(text).not.toContain(token);
    expect(text).not.toContain('cookie-secret');
    expect(text).not.toContain('query-secret');
    expect(text).not.toMatch(/authorization|set-cookie/i);
  });

  it('when the sample is 0, then routine purchase answers are not logged, while other answers are', async () => {
    const { http, lines } = appLogging(0);
    const saleId = await sys.createSale({ stock: 1 });
    const a = await http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token(`a-${randomUUID()}`)}`).send({});
    const b = await http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token(`b-${randomUUID()}`)}`).send({});
    expect([a.status, b.status]).toEqual([202, 409]);
    const unauth = await http.post(`/api/sales/${await sys.createSale({ stock: 1 })}/purchases`).send({});
    expect(unauth.status).toBe(401);
    await settle();
    const ids = lines.map((l) => l.req?.id);
    expect(ids).not.toContain(a.headers['x-request-id']);
    expect(ids).not.toContain(b.headers['x-request-id']);
    expect(ids).toContain(unauth.headers['x-request-id']);
  });
});
