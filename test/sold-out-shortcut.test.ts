/**
 * The sold-out shortcut (api/sold-out-shortcut.ts): after a sell-out, purchase POSTs are answered in front of Express with
 * the answer Express gives, and everything the shortcut must not answer still reaches Express.
 */
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BODY_LIMIT_BYTES, createApp } from '../api/app.ts';
import { withSoldOutShortcut } from '../api/sold-out-shortcut.ts';
import { startSystem, type TestSystem } from './support/system.ts';

let sys: TestSystem;
beforeAll(async () => {
  sys = await startSystem({}, { worker: false });
});
afterEach(() => sys.assertInvariants());
afterAll(() => sys?.stop());

/** A sale of one unit, bought: the next purchase finds it sold out, and the process remembers it. */
async function soldOutSale(): Promise<string> {
  const saleId = await sys.createSale({ stock: 1 });
  const first = await sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token(`buyer-${randomUUID()}`)}`).send({});
  expect(first.status).toBe(202);
  // Through Redis (an Idempotency-Key always goes there): the answer that teaches the process the sell-out.
  const second = await sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token(`late-${randomUUID()}`)}`).set('Idempotency-Key', randomUUID()).send({});
  expect(second.status).toBe(409);
  expect(sys.api.deps.soldOut.has(saleId)).toBe(true);
  return saleId;
}

/** The headers of an answer that two answers of the same kind share (date and request id differ by nature). */
const comparable = (h: Record<string, string>) => Object.fromEntries(Object.entries(h).filter(([k]) => !['date', 'x-request-id'].includes(k)));

describe('the sold-out shortcut', () => {
  it('when a sale is sold out, then its purchases are answered before Express with the answer Express gives', async () => {
    const saleId = await soldOutSale();
    const token = await sys.token(`shortcut-${randomUUID()}`);
    const path = `/api/sales/${saleId.toUpperCase()}/purchases`;
    const viaRedis = await sys.http.post(path).set('Authorization', `Bearer ${token}`).set('Idempotency-Key', randomUUID()).send({});
    const atTheDoor = await sys.http.post(path).set('Authorization', `Bearer ${token}`).send({});
    expect(viaRedis.status).toBe(409);
    expect(atTheDoor.status).toBe(409);
    expect(atTheDoor.body).toEqual(viaRedis.body);
    expect(atTheDoor.body).toMatchObject({ type: '/problems/sold-out', status: 409, instance: path });
    expect(comparable(atTheDoor.headers)).toEqual(comparable(viaRedis.headers));
    expect(atTheDoor.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    // The shortcut reads no body: malformed JSON, which Express refuses with 400 before any route, is answered sold out.
    const malformed = await sys.http.post(path).set('Authorization', `Bearer ${token}`).set('Content-Type', 'application/json').send('{"quantity":');
    expect(malformed.status).toBe(409);
    const stats = await sys.stats(saleId);
    expect(stats).toMatchObject({ remaining: 1, pendingUnits: 1, inflightRequests: 1 });
  });

  it('when a request is one the shortcut must not answer, then Express answers it as on any sale', async () => {
    const saleId = await soldOutSale();
    const path = `/api/sales/${saleId}/purchases`;
    const token = await sys.token(`other-${randomUUID()}`);
    // No Authorization: state-changing requests need it (401), whatever the sale.
    expect((await sys.http.post(path).send({})).status).toBe(401);
    // A body Express would refuse: 415 for a non-JSON body, 413 for one over the parser's limit.
    expect((await sys.http.post(path).set('Authorization', `Bearer ${token}`).set('Content-Type', 'text/plain').send('quantity=1')).status).toBe(415);
    expect((await sys.http.post(path).set('Authorization', `Bearer ${token}`).set('Content-Type', 'application/json').send(`{"pad":"${'x'.repeat(BODY_LIMIT_BYTES)}"}`)).status).toBe(413);
    // A query string, or another method: not the purchase route as the shortcut knows it.
    expect((await sys.http.post(`${path}?x=1`).set('Authorization', `Bearer ${token}`).set('Content-Type', 'application/json').send('{"quantity":')).status).toBe(400);
  });

  it('when the shortcut answers, then the answer is counted and logged as the purchase route would count and log it', async () => {
    const saleId = await soldOutSale();
    const lines: Record<string, any>[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
        done();
      },
    });
    const deps = { ...sys.api.deps, logger: pino({ level: 'info' }, sink), config: { ...sys.config, REQUEST_LOG_SAMPLE: 1 } };
    const http = request(withSoldOutShortcut(deps, createApp(deps), BODY_LIMIT_BYTES));
    const metric = async (name: string) => {
      const text = await sys.api.deps.metrics!.registry.getSingleMetricAsString(name);
      return Number(/ (\d+)$/m.exec(text.split('\n').find((l) => l.startsWith(name) && (l.includes('sold_out') || !l.includes('{'))) ?? '')?.[1] ?? 0);
    };
    const [admissions, hits] = [await metric('flashsale_admissions_total'), await metric('flashsale_sold_out_memory_hits_total')];
    const res = await http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token(`count-${randomUUID()}`)}`).set('X-Request-Id', 'shortcut-check-1').set('Content-Type', 'application/json').send('{"quantity":');
    expect(res.status).toBe(409);
    expect(await metric('flashsale_admissions_total')).toBe(admissions + 1);
    expect(await metric('flashsale_sold_out_memory_hits_total')).toBe(hits + 1);
    const line = lines.find((l) => l.req?.id === 'shortcut-check-1');
    expect(line).toMatchObject({ msg: 'request completed', route: '/api/sales/:saleId/purchases', res: { statusCode: 409 }, req: { method: 'POST' } });
  });
});
