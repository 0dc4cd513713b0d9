/**
 * The purchase pipeline end to end against the real PostgreSQL, Redis and RabbitMQ: the promises that never bend
 * (no oversell, no purchase beyond the per-user limit, nothing lost, PostgreSQL agrees with Redis) under
 * concurrency, and the HTTP contract around them.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSystem, type TestSystem } from './support/system.ts';

let sys: TestSystem;
beforeAll(async () => {
  sys = await startSystem();
});
afterAll(() => sys?.stop());
afterEach(() => sys.assertInvariants());

async function buy(saleId: string, userId: string, body: object = {}, headers: Record<string, string> = {}, http = sys.http) {
  return http
    .post(`/api/sales/${saleId}/purchases`)
    .set('Authorization', `Bearer ${await sys.token(userId)}`)
    .set(headers)
    .send(body);
}

describe('concurrency', () => {
  it('when many more shoppers than units buy at once, then exactly `stock` succeed and the rest are sold out', async () => {
    const stock = 20;
    const saleId = await sys.createSale({ stock });
    const shoppers = Array.from({ length: 200 }, (_, i) => `crowd-${i}-${randomUUID()}`);
    const responses = await Promise.all(shoppers.map((u) => buy(saleId, u)));
    const accepted = responses.filter((r) => r.status === 202);
    const soldOut = responses.filter((r) => r.status === 409 && r.body.type.endsWith('/sold-out'));
    expect(accepted.length + soldOut.length).toBe(shoppers.length);
    const finals = await Promise.all(accepted.map((r) => sys.waitForFinal(saleId, r.body.requestId)));
    const succeeded = finals.filter((s) => s.status === 'succeeded');
    expect(succeeded).toHaveLength(stock);
    expect(finals.every((s) => s.status === 'succeeded' || s.status === 'sold_out')).toBe(true);
    const stats = await sys.stats(saleId);
    expect(stats.remaining).toBe(0);
    expect(stats.ordersInDatabase).toBe(stock);
    expect(stats.remaining + stats.unitsInDatabase).toBe(stock);
  });

  it('when one shopper fires many concurrent requests, then only perUserLimit of them are accepted', async () => {
    const saleId = await sys.createSale({ stock: 50, perUserLimit: 2 });
    const user = `greedy-${randomUUID()}`;
    const responses = await Promise.all(Array.from({ length: 30 }, () => buy(saleId, user)));
    const accepted = responses.filter((r) => r.status === 202);
    expect(accepted).toHaveLength(2);
    const duplicates = responses.filter((r) => r.status === 409);
    expect(duplicates).toHaveLength(28);
    expect(duplicates.every((r) => r.body.type.endsWith('/duplicate-purchase') && typeof r.body.requestId === 'string')).toBe(true);
    await Promise.all(accepted.map((r) => sys.waitForFinal(saleId, r.body.requestId)));
    const stats = await sys.stats(saleId);
    expect(stats.ordersInDatabase).toBe(2);
    expect(stats.remaining).toBe(48);
  });
});

describe('POST /api/sales/:saleId/purchases', () => {
  it('when accepted, then 202 carries the request id, Location and the status and events URLs', async () => {
    const saleId = await sys.createSale({ stock: 5 });
    const res = await buy(saleId, `u-${randomUUID()}`);
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ saleId, status: 'queued' });
    expect(res.headers.location).toBe(`/api/sales/${saleId}/purchases/${res.body.requestId}`);
    expect(res.body.statusUrl).toBe(res.headers.location);
    expect(res.body.eventsUrl).toBe(`${res.headers.location}/events`);
    const final = await sys.waitForFinal(saleId, res.body.requestId);
    expect(final.status).toBe('succeeded');
    expect(final.orderId).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.parse(final.expiresAt!)).toBeGreaterThan(Date.parse(final.acceptedAt!));
  });

  it('when the same Idempotency-Key and body come back, then the first answer is replayed; another body gets 422', async () => {
    const saleId = await sys.createSale({ stock: 5, perUserLimit: 3 });
    const user = `idem-${randomUUID()}`;
    const key = randomUUID();
    const first = await buy(saleId, user, { quantity: 1 }, { 'Idempotency-Key': key });
    const again = await buy(saleId, user, {}, { 'Idempotency-Key': key });
    expect(again.status).toBe(202);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body.requestId).toBe(first.body.requestId);
    const other = await buy(saleId, user, { quantity: 2 }, { 'Idempotency-Key': key });
    expect(other.status).toBe(422);
    expect(other.body.type).toMatch(/\/idempotency-key-reused$/);
    await sys.waitForFinal(saleId, first.body.requestId);
    expect((await sys.stats(saleId)).ordersInDatabase).toBe(1);
  });

  it('when the sale is sold out, then the API answers 409 sold-out without queueing', async () => {
    const saleId = await sys.createSale({ stock: 1 });
    const first = await buy(saleId, `a-${randomUUID()}`);
    await sys.waitForFinal(saleId, first.body.requestId);
    const res = await buy(saleId, `b-${randomUUID()}`);
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ status: 409, title: 'Sold out' });
    expect(res.body.type).toMatch(/\/sold-out$/);
    expect((await sys.stats(saleId)).inflightRequests).toBe(0);
    // Remembered now by the node that answered (each API process remembers its own answers): answered from memory,
    // yet a retry with an Idempotency-Key still reaches Redis and replays.
    const remembering = sys.apis.filter((a) => a.deps.soldOut.has(saleId));
    expect(remembering).toHaveLength(1);
    const node = sys.httpOf(remembering[0]!);
    const remembered = await buy(saleId, `c-${randomUUID()}`, {}, {}, node);
    expect(remembered.status).toBe(409);
    expect(remembered.headers['content-type']).toBe(res.headers['content-type']);
    expect(remembered.body).toEqual(res.body);
    // Known to everyone: answered before the token is verified (state-changing requests must carry one, see csrf.ts).
    const anonymous = await node.post(`/api/sales/${saleId}/purchases`).set('Authorization', 'Bearer not.a.jwt').send({});
    expect(anonymous.body.type).toBe('/problems/sold-out');
  });

  it('when the sale has not started or has ended, then 409 sale-not-active', async () => {
    const upcoming = await sys.createSale({ startsAt: new Date(Date.now() + 3600_000).toISOString() });
    const res = await buy(upcoming, `c-${randomUUID()}`);
    expect(res.status).toBe(409);
    expect(res.body.type).toMatch(/\/sale-not-active$/);
    expect(res.body.state).toBe('upcoming');
  });

  it('when the sale does not exist, then 404 sale-not-found', async () => {
    const res = await buy(randomUUID(), 'd');
    expect(res.status).toBe(404);
    expect(res.body.type).toMatch(/\/sale-not-found$/);
  });
});

describe('bad input never yields a 5xx and changes nothing', () => {
  it.each([
    ['malformed JSON', '{"quantity":', 'application/json', 400, 'validation-error'],
    ['a wrong type', '{"quantity":"two"}', 'application/json', 400, 'validation-error'],
    ['a negative quantity', '{"quantity":-1}', 'application/json', 400, 'validation-error'],
    ['an unknown field', '{"quantity":1,"price":0}', 'application/json', 400, 'validation-error'],
    ['a JSON array', '[1,2]', 'application/json', 400, 'validation-error'],
    ['a body over 16 KiB', JSON.stringify({ pad: 'x'.repeat(17 * 1024) }), 'application/json', 413, 'payload-too-large'],
    ['a non-JSON content type', 'quantity=1', 'application/x-www-form-urlencoded', 415, 'unsupported-media-type'],
  ])('when the body is %s, then %i', async (_name, body, type, status, slug) => {
    const saleId = await sys.createSale({ stock: 3 });
    const res = await sys.http
      .post(`/api/sales/${saleId}/purchases`)
      .set('Authorization', `Bearer ${await sys.token(`bad-${randomUUID()}`)}`)
      .set('Content-Type', type)
      .send(body);
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body.type).toBe(`/problems/${slug}`);
    const stats = await sys.stats(saleId);
    expect(stats).toMatchObject({ remaining: 3, pendingUnits: 0, inflightRequests: 0 });
  });

  it.each([
    ['no token', undefined],
    ['a garbage token', 'Bearer not.a.jwt'],
    ['a token signed with another secret', 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4IiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2lnbmF0dXJl'],
    ['another scheme', 'Basic YWxpY2U6c2VjcmV0'],
  ])('when the request carries %s, then 401 unauthorized', async (_name, auth) => {
    const req = sys.http.post(`/api/sales/${randomUUID()}/purchases`).send({});
    const res = await (auth ? req.set('Authorization', auth) : req);
    expect(res.status).toBe(401);
    expect(res.body.type).toBe('/problems/unauthorized');
  });

  it('when ids are not UUIDs or unknown, then 404s', async () => {
    const token = await sys.token('nobody');
    const cases = [
      await sys.http.post('/api/sales/not-a-uuid/purchases').set('Authorization', `Bearer ${token}`).send({}),
      await sys.http.get('/api/sales/not-a-uuid'),
      await sys.http.get(`/api/sales/${randomUUID()}`),
      await sys.http.get('/api/purchases/%E0%A4%A').set('Authorization', `Bearer ${token}`),
      await sys.http.get(`/api/purchases/${randomUUID()}`).set('Authorization', `Bearer ${token}`),
      await sys.http.get(`/api/purchases/${randomUUID()}/events`).set('Authorization', `Bearer ${token}`),
      await sys.http.get('/api/nothing-here'),
    ];
    for (const res of cases) {
      expect(res.status, res.text).toBeGreaterThanOrEqual(400);
      expect(res.status, res.text).toBeLessThan(500);
    }
  });

  it('when the body is over the limit, then 413 names the limit', async () => {
    const res = await sys.http
      .post(`/api/sales/${randomUUID()}/purchases`)
      .set('Authorization', `Bearer ${await sys.token('big')}`)
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ pad: 'x'.repeat(17 * 1024) }));
    expect(res.status).toBe(413);
    expect(res.body.detail).toBe('The body must be at most 16384 bytes.');
  });

  it('when an Idempotency-Key is malformed (spaces, over 255 characters), then 400 and nothing is admitted', async () => {
    const saleId = await sys.createSale({ stock: 2 });
    const token = await sys.token(`idem-bad-${randomUUID()}`);
    for (const key of ['has spaces', 'k'.repeat(256)]) {
      const res = await sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${token}`).set('Idempotency-Key', key).send({});
      expect(res.status).toBe(400);
      expect(res.body.errors[0].field).toBe('header');
    }
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 2, pendingUnits: 0, inflightRequests: 0 });
  });

  it.each([
    ['no body', undefined],
    ['an empty user id', { userId: '' }],
    ['a user id with spaces', { userId: 'a b' }],
    ['a user id of 129 characters', { userId: 'u'.repeat(129) }],
    ['an unknown field', { userId: 'ok', admin: true }],
  ])('when the demo login gets %s, then 400', async (_name, body) => {
    const res = await sys.http.post('/api/session').send(body);
    expect(res.status).toBe(400);
    expect(res.body.type).toBe('/problems/validation-error');
    expect(res.headers['set-cookie']).toBeUndefined();
  });

  it('when an admin body is invalid, then 400 lists the fields', async () => {
    const res = await sys.http
      .post('/api/admin/sales')
      .set('Authorization', 'Bearer test-admin-token-0123456789')
      .send({ name: '', stock: 0, endsAt: 'yesterday' });
    expect(res.status).toBe(400);
    expect(res.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['endsAt', 'name', 'stock']);
  });
});

describe('GET /api/purchases/:requestId', () => {
  it('when polled, then the owner gets the state with an ETag and 304 while unchanged; others get 404', async () => {
    const saleId = await sys.createSale({ stock: 2 });
    const owner = `owner-${randomUUID()}`;
    const { body } = await buy(saleId, owner);
    await sys.waitForFinal(saleId, body.requestId);
    const token = await sys.token(owner);
    const res = await sys.http.get(body.statusUrl).set('Authorization', `Bearer ${token}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ requestId: body.requestId, saleId, status: 'succeeded' });
    expect(res.body.userId).toBeUndefined();
    const etag = String(res.headers.etag);
    expect(etag).toMatch(/^"[0-9a-f-]+\.2"$/);
    const again = await sys.http.get(body.statusUrl).set('Authorization', `Bearer ${token}`).set('If-None-Match', etag);
    expect(again.status).toBe(304);
    const stranger = await sys.http.get(body.statusUrl).set('Authorization', `Bearer ${await sys.token('stranger')}`);
    expect(stranger.status).toBe(404);
  });
});

describe('GET /api/purchases/:requestId/events (SSE)', () => {
  function readEvents(url: string, token: string, headers: Record<string, string> = {}) {
    return new Promise<string>((resolve, reject) => {
      sys.http
        .get(url)
        .set('Authorization', `Bearer ${token}`)
        .set(headers)
        .buffer(true)
        .parse((res, done) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => done(null, text));
        })
        .end((err, res) => (err ? reject(err) : resolve(res.body as string)));
    });
  }

  it('when a subscriber connects after the final result was written, then it gets the result at once and the stream closes', async () => {
    const saleId = await sys.createSale({ stock: 1 });
    const user = `late-${randomUUID()}`;
    const { body } = await buy(saleId, user);
    await sys.waitForFinal(saleId, body.requestId);
    const text = await readEvents(body.eventsUrl, await sys.token(user));
    expect(text).toMatch(/^retry: \d+\n\nevent: status\nid: 2\n/); // the reconnect delay before the first event
    expect(text).toContain('"status":"succeeded"');
  });

  it('when Last-Event-ID already has the final version, then nothing is sent again', async () => {
    const saleId = await sys.createSale({ stock: 1 });
    const user = `resume-${randomUUID()}`;
    const { body } = await buy(saleId, user);
    await sys.waitForFinal(saleId, body.requestId);
    expect(await readEvents(body.eventsUrl, await sys.token(user), { 'Last-Event-ID': '2' })).toBe('');
  });
});

describe('GET /api/sales', () => {
  it('when a sale was just created, then it is listed at once, with its live remaining stock and state', async () => {
    await sys.http.get('/api/sales'); // a list read before the sale exists must not hide it
    const saleId = await sys.createSale({ stock: 4, name: 'Listed at once' });
    const list = await sys.http.get('/api/sales');
    expect(list.body.sales.find((s: { id: string }) => s.id === saleId)).toMatchObject({ name: 'Listed at once', stock: 4, remaining: 4, state: 'live' });
    const { body } = await buy(saleId, `lister-${randomUUID()}`);
    await sys.waitForFinal(saleId, body.requestId);
    expect((await sys.http.get(`/api/sales/${saleId}`)).body).toMatchObject({ remaining: 3, state: 'live' });
  });
});

describe('ops', () => {
  it('when several API nodes run (TEST_API_NODES), then consecutive requests reach each of them in turn', async () => {
    const served = sys.apis.map(() => 0);
    const count = sys.apis.map((a, i) => {
      const listener = () => served[i]!++;
      a.server.on('request', listener);
      return () => a.server.off('request', listener);
    });
    try {
      for (let i = 0; i < 2 * sys.apis.length; i++) expect((await sys.http.get('/healthz')).status).toBe(200);
    } finally {
      count.forEach((off) => off());
    }
    expect(served).toEqual(sys.apis.map(() => 2));
  });

  it('answers /healthz and /readyz with every dependency up', async () => {
    expect((await sys.http.get('/healthz')).status).toBe(200);
    const ready = await sys.http.get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.checks).toEqual({ postgres: 'up', redis: 'up', rabbitmq: 'up' });
  });
});
