/**
 * Rate limits and connection caps against the real Redis: limits shared by two API nodes, 429 with Retry-After and
 * the IETF RateLimit headers, X-Forwarded-For honoured only from trusted proxies, the demo login and the admin
 * token's failure budget, and event streams (purchases, waiting room) capped per shopper, ended after their lifetime
 * with a `retry:` hint.
 * No worker: purchases stay queued, so their event streams stay open.
 */
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../api/app.ts';
import { startApi, type ApiServer } from '../api/main.ts';
import { loadConfig, type Config } from '../core/config.ts';
import { ADMIN_TOKEN, startSystem, type TestSystem } from './support/system.ts';

let sys: TestSystem;
let second: ApiServer;
beforeAll(async () => {
  sys = await startSystem(
    {
      RATE_LIMITS: 'on',
      RATE_LIMIT_IP: '100000/60',
      RATE_LIMIT_PURCHASE: '3/60',
      RATE_LIMIT_POLL: '100000/60',
      SSE_STREAMS_PER_SHOPPER: '2',
      SSE_MAX_LIFETIME_MS: '1500',
      SSE_RETRY_MS: '750',
    },
    { worker: false },
  );
  // A second API node on the same Redis and key prefix.
  second = await startApi(sys.config, sys.api.deps.logger);
});
afterAll(async () => {
  await second?.stop();
  await sys?.stop();
});

async function keysOf(pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await sys.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

/** An app on the system's connections with other settings, its limits under a key prefix of their own. */
function appWith(env: Record<string, string>) {
  const config: Config = loadConfig({
    ...process.env,
    NODE_ENV: 'test',
    DATABASE_URL: sys.config.DATABASE_URL,
    JWT_SECRET: sys.config.JWT_SECRET,
    ADMIN_TOKEN,
    REDIS_KEY_PREFIX: `${sys.config.REDIS_KEY_PREFIX}:${randomUUID().slice(0, 8)}`,
    AMQP_PREFIX: sys.config.AMQP_PREFIX,
    RATE_LIMITS: 'on',
    LOG_LEVEL: 'silent',
    ...env,
  });
  return request(createApp({ ...sys.api.deps, config }));
}

describe('shared limits', () => {
  it('when a shopper spends the purchase limit across two API nodes, then the next attempt on either gets 429 with Retry-After and RateLimit headers', async () => {
    const saleId = await sys.createSale({ stock: 50, perUserLimit: 10 });
    const token = await sys.token(`limited-${randomUUID()}`);
    const nodes = [sys.http, request(`http://127.0.0.1:${second.port}`)];
    const buy = (i: number) => nodes[i % 2]!.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${token}`).send({});
    const first = [await buy(0), await buy(1), await buy(0)];
    expect(first.map((r) => r.status)).toEqual([202, 202, 202]);
    expect(first[2]!.headers['ratelimit-policy']).toContain('"purchase-60s";q=3;w=60');
    expect(first[2]!.headers.ratelimit).toMatch(/"purchase-60s";r=0;t=\d+/);
    for (const over of [await buy(1), await buy(0)]) {
      expect(over.status).toBe(429);
      expect(over.body.type).toBe('/problems/rate-limited');
      expect(Number(over.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(over.headers.ratelimit).toMatch(/"purchase-60s";r=0;t=\d+/);
      expect(over.headers['ratelimit-policy']).toContain('q=3;w=60');
    }
    // The document says so: the purchase route lists this answer, its problem type and its headers.
    const documented = (await sys.http.get('/openapi.json')).body.paths['/api/sales/{saleId}/purchases'].post.responses['429'];
    expect(documented.content['application/problem+json'].schema.properties.type.enum).toContain('/problems/rate-limited');
    expect(Object.keys(documented.headers)).toEqual(expect.arrayContaining(['Retry-After', 'RateLimit', 'RateLimit-Policy']));
    // Each node now refuses this shopper from memory: more attempts do not reach Redis (its count stays put).
    const [key] = await keysOf(`${sys.config.REDIS_KEY_PREFIX}:rl:purchase:60s:*`);
    const counted = await sys.redis.get(key!);
    expect(Number(counted)).toBe(5);
    for (let i = 0; i < 4; i++) expect((await buy(i)).status).toBe(429);
    expect(await sys.redis.get(key!)).toBe(counted);
    // Nothing was admitted for the refused attempts; another sale has its own budget.
    expect((await sys.stats(saleId)).inflightRequests).toBe(3);
    const other = await sys.createSale({ stock: 5 });
    expect((await sys.http.post(`/api/sales/${other}/purchases`).set('Authorization', `Bearer ${token}`).send({})).status).toBe(202);
  });
});

describe('client addresses', () => {
  it('when an untrusted peer sends a different X-Forwarded-For each time, then it stays in its own bucket', async () => {
    const http = appWith({ TRUST_PROXY: '10.9.9.9', RATE_LIMIT_IP: '3/60' });
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await http.get('/healthz').set('X-Forwarded-For', `203.0.113.${i}`)).status);
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
  });

  it("when a trusted proxy forwards clients, then each client's X-Forwarded-For address has its own bucket", async () => {
    const http = appWith({ TRUST_PROXY: 'loopback', RATE_LIMIT_IP: '3/60' });
    const one = [];
    for (let i = 0; i < 4; i++) one.push((await http.get('/healthz').set('X-Forwarded-For', '198.51.100.7')).status);
    expect(one).toEqual([200, 200, 200, 429]);
    expect((await http.get('/healthz').set('X-Forwarded-For', '198.51.100.8')).status).toBe(200);
  });

  it('when TRUST_PROXY is true, then the configuration is refused', () => {
    expect(() => loadConfig({ TRUST_PROXY: 'true' })).toThrow(/TRUST_PROXY/);
  });
});

describe('demo login and admin token', () => {
  it('when a shopper reads its queue ticket and opens its queue stream past the poll limit, then 429', async () => {
    const http = appWith({ RATE_LIMIT_POLL: '2/60' });
    const saleId = await sys.createSale({ stock: 5, waitingRoom: { admissionsPerMinute: 60, maxInside: 10 } });
    const auth = { Authorization: `Bearer ${await sys.token(`queue-poll-${randomUUID()}`)}` };
    const statuses = [
      (await http.get(`/api/sales/${saleId}/queue/me`).set(auth)).status,
      (await http.get(`/api/sales/${saleId}/queue/events`).set(auth)).status,
      (await http.get(`/api/sales/${saleId}/queue/me`).set(auth)).status,
      (await http.get(`/api/sales/${saleId}/queue/events`).set(auth)).status,
    ];
    expect(statuses).toEqual([404, 404, 429, 429]); // no ticket yet: read and stream answer 404 until the limit
  });

  it('when one address logs in too often, then 429', async () => {
    const http = appWith({ RATE_LIMIT_LOGIN: '2/60' });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await http.post('/api/session').send({ userId: `login-${i}` })).status);
    expect(statuses).toEqual([200, 200, 429]);
  });

  it('when an address spends its admin-token failure budget, then it is refused even with the right token', async () => {
    const http = appWith({ RATE_LIMIT_ADMIN_FAILURES: '3/60' });
    expect((await http.get('/api/admin/dlq').set('Authorization', `Bearer ${ADMIN_TOKEN}`)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await http.get('/api/admin/dlq').set('Authorization', `Bearer guess-${i}`)).status).toBe(401);
    const blocked = await http.get('/api/admin/dlq').set('Authorization', `Bearer ${ADMIN_TOKEN}`);
    expect(blocked.status).toBe(429);
    expect(blocked.body.type).toBe('/problems/rate-limited');
  });
});

/**
 * Opens an event stream; resolves once its headers arrived (its slot is taken) with the status and a promise of its
 * whole text, which settles when the server ends the stream (or `stopAfter` matches).
 */
async function stream(url: string, token: string, stopAfter?: RegExp): Promise<{ status: number; text: Promise<string> }> {
  const ac = new AbortController();
  const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, signal: ac.signal });
  if (res.status !== 200) return { status: res.status, text: res.text() };
  const text = (async () => {
    let t = '';
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body!) {
        t += decoder.decode(chunk as Uint8Array, { stream: true });
        if (stopAfter?.test(t)) break;
      }
    } finally {
      ac.abort();
    }
    return t;
  })();
  return { status: 200, text };
}

/**
 * Opens two streams of `url` (the cap is 2), expects 429 for a third, then each of the two to carry `retry: 750` and
 * `content` and to end after its lifetime, and the slots to come back once they ended.
 */
async function expectCappedStreams(url: string, token: string, content: string): Promise<void> {
  const open = [await stream(url, token), await stream(url, token)];
  expect(open.map((s) => s.status)).toEqual([200, 200]);
  const third = await stream(url, token);
  expect(third.status).toBe(429);
  expect(JSON.parse(await third.text).type).toBe('/problems/rate-limited');
  for (const text of await Promise.all(open.map((s) => s.text))) {
    expect(text).toMatch(/^retry: 750$/m);
    expect(text).toContain(content);
  }
  const again = await stream(url, token, /^data: /m);
  expect(again.status).toBe(200);
  await again.text;
}

describe('event streams', () => {
  it('when a shopper opens more streams than allowed, then the next gets 429; every stream carries retry: and ends after its lifetime', async () => {
    const saleId = await sys.createSale({ stock: 5 });
    const token = await sys.token(`streams-${randomUUID()}`);
    const buy = await sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${token}`).send({});
    expect(buy.status).toBe(202);
    // The purchase stays queued (no worker): the streams end only because their lifetime is over.
    await expectCappedStreams(`${sys.url}${buy.body.eventsUrl}`, token, 'event: status');
  });

  it('when a shopper opens more waiting-room streams than allowed, then the next gets 429; every stream carries retry: and ends after its lifetime', async () => {
    const saleId = await sys.createSale({ stock: 5, startsAt: new Date(Date.now() + 3_600_000).toISOString(), waitingRoom: { admissionsPerMinute: 60, maxInside: 10 } });
    const token = await sys.token(`queue-streams-${randomUUID()}`);
    expect((await sys.http.post(`/api/sales/${saleId}/queue`).set('Authorization', `Bearer ${token}`).send({})).status).toBe(201);
    // The ticket stays in the pre-queue: the streams end only because their lifetime is over.
    await expectCappedStreams(`${sys.url}/api/sales/${saleId}/queue/events`, token, '"state":"prequeue"');
  });
});
