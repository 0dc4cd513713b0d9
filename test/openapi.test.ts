/**
 * The OpenAPI contract: the document at /openapi.json is valid OpenAPI 3.1, and real requests through every
 * documented route get answers (status, content type, required headers, body) the document describes. An answer
 * the document does not describe fails the test, and so does a documented route no request went through.
 */
import { randomUUID } from 'node:crypto';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { Response } from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { solve } from './support/proof-of-work.ts';
import { ADMIN_TOKEN, startSystem, type TestSystem } from './support/system.ts';

type Doc = { paths: Record<string, Record<string, { responses: Record<string, any> }>> };

let sys: TestSystem;
let doc: Doc;
let ajv: Ajv2020;
const exercised = new Set<string>();

beforeAll(async () => {
  sys = await startSystem();
  const res = await sys.http.get('/openapi.json');
  expect(res.status).toBe(200);
  doc = res.body as Doc;
  ajv = new Ajv2020({ strict: false, allErrors: true });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  ajv.addSchema(doc as object, 'openapi');
});
afterAll(() => sys?.stop());

const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

/** Asserts that `res`, the answer to `method` on the documented `path` template, is what the document says. */
function conforms(method: string, path: string, res: Response): void {
  const op = doc.paths[path]?.[method];
  expect(op, `${method.toUpperCase()} ${path} is documented`).toBeDefined();
  const spec = op!.responses[String(res.status)];
  expect(spec, `${method.toUpperCase()} ${path} documents ${res.status}: ${res.text?.slice(0, 200)}`).toBeDefined();
  exercised.add(`${method} ${path}`);
  for (const [name, h] of Object.entries<any>(spec.headers ?? {})) {
    if (h.required) expect(res.headers[name.toLowerCase()], `${res.status} carries ${name}`).toBeDefined();
  }
  if (!spec.content) {
    expect(res.text ?? '').toBe('');
    return;
  }
  const type = String(res.headers['content-type'] ?? '').split(';')[0]!;
  expect(Object.keys(spec.content), `${method.toUpperCase()} ${path} ${res.status} documents ${type}`).toContain(type);
  if (!type.endsWith('json')) return;
  const validate = ajv.getSchema(`openapi#/${pointer('paths', path, method, 'responses', String(res.status), 'content', type, 'schema')}`)!;
  const body = JSON.parse(res.text);
  expect(validate(body), `${method.toUpperCase()} ${path} ${res.status}: ${ajv.errorsText(validate.errors)} in ${res.text.slice(0, 300)}`).toBe(true);
}

const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };

describe('OpenAPI document', () => {
  it('when validated with an OpenAPI 3.1 validator, then it is valid', async () => {
    const result = await new Validator().validate(doc as unknown as Record<string, unknown>);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect((doc as unknown as { openapi: string }).openapi).toMatch(/^3\.1\./);
  });

  it('when /docs is opened, then Swagger UI is served from the package', async () => {
    const res = await sys.http.get('/docs/');
    expect(res.status).toBe(200);
    expect(res.text).toContain('swagger-ui');
    expect(res.text).not.toMatch(/https?:\/\/(cdn|unpkg)/);
  });

  it('when real requests go through every documented route, then every answer is what the document describes', async () => {
    const http = sys.http;
    const user = `contract-${randomUUID()}`;

    // session
    const session = await http.post('/api/session').send({ userId: user });
    conforms('post', '/api/session', session);
    const bearer = { Authorization: `Bearer ${session.body.token}` };
    conforms('post', '/api/session', await http.post('/api/session').send({ userId: '' }));
    conforms('post', '/api/session', await http.post('/api/session').set('Content-Type', 'text/plain').send('x'));
    conforms('post', '/api/session', await http.post('/api/session').send({ userId: 'x'.repeat(20_000) }));

    // admin: sales
    const created = await http.post('/api/admin/sales').set(admin).send({ name: 'Contract', stock: 1, perUserLimit: 1 });
    conforms('post', '/api/admin/sales', created);
    const saleId = created.body.id as string;
    conforms('post', '/api/admin/sales', await http.post('/api/admin/sales').set(admin).send({ name: '', stock: 0 }));
    conforms('post', '/api/admin/sales', await http.post('/api/admin/sales').send({ name: 'x', stock: 1 }));
    const upcoming = await http.post('/api/admin/sales').set(admin).send({ name: 'Later', stock: 5, startsAt: new Date(Date.now() + 3600_000).toISOString() });

    // sales
    conforms('get', '/api/sales', await http.get('/api/sales'));
    conforms('get', '/api/sales/{saleId}', await http.get(`/api/sales/${saleId}`));
    conforms('get', '/api/sales/{saleId}', await http.get(`/api/sales/${randomUUID()}`));

    // purchases
    const key = randomUUID();
    const buy = (id: string, headers: Record<string, string> = bearer, body: object = {}) => http.post(`/api/sales/${id}/purchases`).set(headers).send(body);
    const accepted = await buy(saleId, { ...bearer, 'Idempotency-Key': key });
    conforms('post', '/api/sales/{saleId}/purchases', accepted);
    expect(accepted.status).toBe(202);
    conforms('post', '/api/sales/{saleId}/purchases', await buy(saleId, { ...bearer, 'Idempotency-Key': key }, { quantity: 2 })); // 422 or 400
    conforms('post', '/api/sales/{saleId}/purchases', await buy(saleId)); // duplicate
    const other = await sys.token(`contract-other-${randomUUID()}`);
    conforms('post', '/api/sales/{saleId}/purchases', await buy(saleId, { Authorization: `Bearer ${other}` })); // sold out
    conforms('post', '/api/sales/{saleId}/purchases', await buy(upcoming.body.id)); // not active
    conforms('post', '/api/sales/{saleId}/purchases', await buy(randomUUID())); // not found
    conforms('post', '/api/sales/{saleId}/purchases', await buy(saleId, {})); // 401
    conforms('post', '/api/sales/{saleId}/purchases', await buy(upcoming.body.id, bearer, { quantity: 0 })); // 400

    const requestId = accepted.body.requestId as string;
    const final = await sys.waitForFinal(saleId, requestId);
    expect(final.status).toBe('succeeded');
    const read = await http.get(`/api/sales/${saleId}/purchases/${requestId}`).set(bearer);
    conforms('get', '/api/sales/{saleId}/purchases/{requestId}', read);
    conforms('get', '/api/sales/{saleId}/purchases/{requestId}', await http.get(`/api/sales/${saleId}/purchases/${requestId}`).set(bearer).set('If-None-Match', String(read.headers.etag)));
    conforms('get', '/api/sales/{saleId}/purchases/{requestId}', await http.get(`/api/sales/${saleId}/purchases/${randomUUID()}`).set(bearer));
    conforms('get', '/api/sales/{saleId}/purchases/{requestId}', await http.get(`/api/sales/${saleId}/purchases/${requestId}`));
    conforms('get', '/api/sales/{saleId}/purchases/{requestId}/events', await http.get(`/api/sales/${saleId}/purchases/${requestId}/events`).set(bearer));
    conforms('get', '/api/purchases/{requestId}', await http.get(`/api/purchases/${requestId}`).set(bearer));
    conforms('get', '/api/purchases/{requestId}', await http.get(`/api/purchases/${randomUUID()}`).set(bearer));
    conforms('get', '/api/purchases/{requestId}/events', await http.get(`/api/purchases/${requestId}/events`).set(bearer));

    // waiting room: the door's challenge and joining
    const room = { admissionsPerMinute: 600, maxInside: 10, proofOfWork: { maxNumber: 1000 } };
    const door = (await http.post('/api/admin/sales').set(admin).send({ name: 'Door', stock: 1, waitingRoom: room })).body.id as string;
    const later = new Date(Date.now() + 3600_000).toISOString();
    const closedDoor = (await http.post('/api/admin/sales').set(admin).send({ name: 'Door later', stock: 1, startsAt: later, waitingRoom: { ...room, opensAt: later } })).body.id as string;
    conforms('get', '/api/sales/{saleId}', await http.get(`/api/sales/${door}`));
    const challenge = await http.get(`/api/sales/${door}/queue/challenge`).set(bearer);
    conforms('get', '/api/sales/{saleId}/queue/challenge', challenge);
    conforms('get', '/api/sales/{saleId}/queue/challenge', await http.get(`/api/sales/${saleId}/queue/challenge`).set(bearer)); // no waiting room
    conforms('get', '/api/sales/{saleId}/queue/challenge', await http.get(`/api/sales/${door}/queue/challenge`));
    const join = (id: string, body: object = {}, headers: Record<string, string> = bearer) => http.post(`/api/sales/${id}/queue`).set(headers).send(body);
    conforms('post', '/api/sales/{saleId}/queue', await join(door)); // 403 proof-of-work-required
    conforms('post', '/api/sales/{saleId}/queue', await join(door, { altcha: 5 })); // 400
    const joined = await join(door, { altcha: await solve(challenge.body) });
    expect(joined.status).toBe(201);
    conforms('post', '/api/sales/{saleId}/queue', joined);
    conforms('post', '/api/sales/{saleId}/queue', await join(door)); // 200, the same ticket
    conforms('post', '/api/sales/{saleId}/queue', await join(closedDoor, { altcha: await solve((await http.get(`/api/sales/${closedDoor}/queue/challenge`).set(bearer)).body) })); // 409
    conforms('post', '/api/sales/{saleId}/queue', await join(saleId)); // 404 no-waiting-room
    conforms('post', '/api/sales/{saleId}/queue', await join(door, {}, {})); // 401

    // orders
    const orderId = final.orderId!;
    conforms('get', '/api/orders/{orderId}', await http.get(`/api/orders/${orderId}`).set(bearer));
    conforms('get', '/api/orders/{orderId}', await http.get(`/api/orders/${randomUUID()}`).set(bearer));
    conforms('post', '/api/orders/{orderId}/pay', await http.post(`/api/orders/${orderId}/pay`).set(bearer));
    conforms('post', '/api/orders/{orderId}/pay', await http.post(`/api/orders/${orderId}/pay`));

    // admin: stats and dead letters
    conforms('get', '/api/admin/sales/{saleId}/stats', await http.get(`/api/admin/sales/${saleId}/stats`).set(admin));
    conforms('get', '/api/admin/sales/{saleId}/stats', await http.get(`/api/admin/sales/${randomUUID()}/stats`).set(admin));
    conforms('post', '/api/admin/sales/{saleId}/end', await http.post(`/api/admin/sales/${upcoming.body.id}/end`).set(admin));
    conforms('post', '/api/admin/sales/{saleId}/end', await http.post(`/api/admin/sales/${randomUUID()}/end`).set(admin));
    conforms('post', '/api/admin/sales/{saleId}/end', await http.post(`/api/admin/sales/${saleId}/end`));
    conforms('get', '/api/admin/dlq', await http.get('/api/admin/dlq?queue=purchases&limit=5').set(admin));
    conforms('get', '/api/admin/dlq', await http.get('/api/admin/dlq?queue=nope').set(admin));
    conforms('post', '/api/admin/dlq/replay', await http.post('/api/admin/dlq/replay').set(admin).send({ queue: 'purchases' }));
    conforms('post', '/api/admin/dlq/replay', await http.post('/api/admin/dlq/replay').set(admin).send({ queue: 'nope' }));

    // the dashboard's stream never ends: read its head, then leave
    const ac = new AbortController();
    const stream = await fetch(`${sys.url}/api/admin/stats/events`, { headers: admin, signal: ac.signal });
    const first = await stream.body!.getReader().read();
    ac.abort();
    expect(new TextDecoder().decode(first.value)).toMatch(/^event: stats\n/);
    conforms('get', '/api/admin/stats/events', { status: stream.status, headers: { 'content-type': stream.headers.get('content-type') }, text: '' } as unknown as Response);
    conforms('get', '/api/admin/stats/events', await http.get('/api/admin/stats/events'));

    // operations
    conforms('get', '/healthz', await http.get('/healthz'));
    conforms('get', '/readyz', await http.get('/readyz'));
    conforms('get', '/metrics', await http.get('/metrics'));
    conforms('get', '/openapi.json', await http.get('/openapi.json'));

    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`));
    expect(documented.filter((op) => !exercised.has(op))).toEqual([]);
  });
});
