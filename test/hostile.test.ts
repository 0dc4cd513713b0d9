/**
 * Hostile traffic against the real services: what an attacker sends cheaply (case variants of an id, forged tokens,
 * random sale ids, cookie-only form posts, bodies PostgreSQL cannot store) must neither ruin a sale, grow memory,
 * cost PostgreSQL writes, nor get a 5xx.
 */
import { randomUUID } from 'node:crypto';
import { createSigner } from 'fast-jwt';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Request, Response } from 'express';
import { requireShopper, verifiedTokenCacheSize } from '../api/auth.ts';
import { saleKeys } from '../core/redis/keys.ts';
import { ADMIN_TOKEN, startSystem, type TestSystem } from './support/system.ts';

let sys: TestSystem;
beforeAll(async () => {
  sys = await startSystem();
});
afterAll(() => sys?.stop());
afterEach(() => sys.assertInvariants());

/** Runs `task` for each of `items`, at most `concurrency` at a time. */
async function pool<T, R>(items: T[], concurrency: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await task(items[i]!);
      }
    }),
  );
  return out;
}

/** `id` with each letter upper-cased or not, by the bits of `n`. */
function casing(id: string, n: number): string {
  let bit = 0;
  return [...id].map((c) => (/[a-f]/.test(c) ? ((n >> bit++) & 1 ? c.toUpperCase() : c) : c)).join('');
}

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

describe('canonical ids', () => {
  it('when three shoppers flood a sale with case variants of its id, then it stays one sale: one Redis copy, the same epoch, the limit held, honest shoppers served', async () => {
    const saleId = await sys.createSale({ stock: 20, perUserLimit: 1 });
    const { sale } = saleKeys(sys.config.REDIS_KEY_PREFIX, saleId);
    const epoch = await sys.redis.hget(sale, 'epoch');
    const attackers = await Promise.all(['a', 'b', 'c'].map((x) => sys.token(`attacker-${x}-${randomUUID()}`)));
    const honest = Array.from({ length: 15 }, () => `honest-${randomUUID()}`);
    const attacks = attackers.flatMap((token) => Array.from({ length: 100 }, (_, i) => ({ token, id: casing(saleId, i * 7919 + 1) })));
    const buy = (id: string, token: string, key?: string) => {
      const req = sys.http.post(`/api/sales/${id}/purchases`).set('Authorization', `Bearer ${token}`);
      return (key ? req.set('Idempotency-Key', key) : req).send({});
    };
    const [flood, fair] = await Promise.all([
      pool(attacks, 30, (a) => buy(a.id, a.token, randomUUID())),
      Promise.all(honest.map(async (u) => buy(casing(saleId, Math.floor(Math.random() * 2 ** 20)), await sys.token(u)))),
    ]);
    for (const token of attackers) {
      const accepted = flood.filter((r, i) => attacks[i]!.token === token && r.status === 202);
      expect(accepted.length).toBeLessThanOrEqual(1);
    }
    expect(flood.every((r) => r.status === 202 || r.status === 409)).toBe(true);
    expect(fair.map((r) => r.status)).toEqual(honest.map(() => 202));
    const finals = await Promise.all(fair.map((r) => sys.waitForFinal(saleId, r.body.requestId)));
    expect(finals.map((s) => s.status)).toEqual(honest.map(() => 'succeeded'));
    expect(fair.every((r) => r.body.saleId === saleId)).toBe(true);

    const copies = (await keysOf(`${sys.config.REDIS_KEY_PREFIX}:sale:{*}`)).filter((k) => k.toLowerCase().includes(saleId));
    expect(new Set(copies.map((k) => /\{([^}]+)\}/.exec(k)![1]))).toEqual(new Set([saleId]));
    expect(await sys.redis.hget(sale, 'epoch')).toBe(epoch);
    const stats = await sys.stats(saleId.toUpperCase());
    expect(stats.saleId).toBe(saleId);
    expect(stats.ordersInDatabase).toBeLessThanOrEqual(15 + 3);
    expect(stats.ordersInDatabase).toBeGreaterThanOrEqual(15);
  });
});

describe('bounded memory', () => {
  it('when 20,000 forged tokens arrive, then every one gets 401 and the verifier cache holds none of them', async () => {
    const secret = sys.config.JWT_SECRET;
    const honest = await sys.token(`cache-${randomUUID()}`);
    const path = `/api/purchases/${randomUUID()}`;
    expect((await sys.http.get(path).set('Authorization', `Bearer ${honest}`)).status).toBe(404);
    const before = verifiedTokenCacheSize(secret);
    expect(before).toBeGreaterThanOrEqual(1);
    const forge = createSigner({ key: 'not-our-secret-0123456789-0123456789', algorithm: 'HS256' });
    const forged = Array.from({ length: 20_000 }, (_, i) => forge({ sub: `victim-${i}`, exp: Math.floor(Date.now() / 1000) + 3600 }));
    // A sample over HTTP, the whole flood through the same middleware in-process (this machine serves a few hundred
    // requests a second while other suites run; the verifier and its cache are the same).
    const statuses = await pool(forged.slice(0, 500), 25, async (t) => (await fetch(`${sys.url}${path}`, { headers: { Authorization: `Bearer ${t}` } })).status);
    expect(statuses.every((s) => s === 401)).toBe(true);
    const shopper = requireShopper(secret);
    let refused = 0;
    for (const t of forged) {
      const req = { method: 'GET', headers: { authorization: `Bearer ${t}` } } as unknown as Request;
      shopper(req, {} as Response, (err?: unknown) => void (err && refused++));
    }
    expect(refused).toBe(forged.length);
    expect(verifiedTokenCacheSize(secret)).toBe(before);
  });

  it('when a token is over 4 KiB, then 401 before verification, also with a valid signature', async () => {
    const big = createSigner({ key: sys.config.JWT_SECRET, algorithm: 'HS256' })({ sub: 'big', pad: 'x'.repeat(5000), exp: Math.floor(Date.now() / 1000) + 60 });
    const before = verifiedTokenCacheSize(sys.config.JWT_SECRET);
    const res = await sys.http.get(`/api/purchases/${randomUUID()}`).set('Authorization', `Bearer ${big}`);
    expect(res.status).toBe(401);
    expect(res.body.detail).toBe('The token is too large.');
    expect(verifiedTokenCacheSize(sys.config.JWT_SECRET)).toBe(before);
  });
});

describe('unknown sales', () => {
  it('when 2,000 random sale ids arrive, then PostgreSQL sees no write and a bounded number of reads, and Redis gets no key', async () => {
    const deps = sys.api.deps;
    const original = deps.db;
    const ops: string[] = [];
    deps.db = original.$extends({
      query: {
        async $allOperations({ operation, model, args, query }) {
          ops.push(`${model ?? ''}.${operation}`);
          return query(args);
        },
      },
    }) as unknown as typeof original;
    const token = await sys.token(`random-${randomUUID()}`);
    const ids = Array.from({ length: 2000 }, () => randomUUID());
    const started = Date.now();
    let statuses: number[];
    let reads: number[];
    try {
      statuses = await pool(ids, 50, async (id) => {
        const buy = await fetch(`${sys.url}/api/sales/${id}/purchases`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
          body: '{}',
        });
        return buy.status;
      });
      reads = await pool(ids.slice(0, 200), 50, async (id) => (await fetch(`${sys.url}/api/sales/${id}`)).status);
    } finally {
      deps.db = original;
    }
    const elapsed = Date.now() - started;
    expect(new Set(statuses)).toEqual(new Set([404]));
    expect(new Set(reads!)).toEqual(new Set([404]));
    const writes = ops.filter((o) => /create|update|upsert|delete|executeRaw|queryRaw|transaction/i.test(o));
    expect(writes).toEqual([]);
    // The sale directory reads at most once per 250 ms, whatever the number of ids.
    expect(ops.length).toBeLessThanOrEqual(Math.ceil(elapsed / 250) + 5);
    expect(ops.length).toBeLessThan(100);
    const keys = await keysOf(`${sys.config.REDIS_KEY_PREFIX}:*`);
    expect(keys.filter((k) => ids.some((id) => k.includes(id)))).toEqual([]);
  });

  it('when a sale was created by another process a moment ago, then it is found at once', async () => {
    const { createDb } = await import('../core/db/client.ts');
    const db = createDb(sys.config.DATABASE_URL, 1);
    const id = randomUUID();
    try {
      await db.sale.create({ data: { id, name: 'made elsewhere', stock: 1, perUserLimit: 1, startsAt: new Date() } });
      expect((await sys.http.get(`/api/sales/${id}`)).status).toBe(200);
    } finally {
      await db.sale.delete({ where: { id } });
      await db.$disconnect();
    }
  });
});

describe('CSRF', () => {
  it.each([
    ['a form post', 'application/x-www-form-urlencoded', 'quantity=1'],
    ['a text/plain post', 'text/plain', '{"quantity":1}'],
    ['an empty form post', 'application/x-www-form-urlencoded', ''],
  ])('when %s carries only the session cookie, then 401 and nothing is purchased or paid', async (_name, type, body) => {
    const saleId = await sys.createSale({ stock: 3 });
    const login = await sys.http.post('/api/session').send({ userId: `csrf-${randomUUID()}` });
    const cookie = login.headers['set-cookie']![0]!.split(';')[0]!;
    const buy = await sys.http.post(`/api/sales/${saleId}/purchases`).set('Cookie', cookie).set('Content-Type', type).send(body);
    expect(buy.status).toBe(401);
    expect(await sys.stats(saleId)).toMatchObject({ remaining: 3, pendingUnits: 0, inflightRequests: 0, ordersInDatabase: 0 });

    // The same shopper's real order, bought through the Authorization header, cannot be paid with the cookie.
    const real = await sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${login.body.token}`).send({});
    expect(real.status).toBe(202);
    const final = await sys.waitForFinal(saleId, real.body.requestId);
    const pay = await sys.http.post(`/api/orders/${final.orderId}/pay`).set('Cookie', cookie).set('Content-Type', type).send(body);
    expect(pay.status).toBe(401);
    const order = await sys.http.get(`/api/orders/${final.orderId}`).set('Cookie', cookie);
    expect(order.status).toBe(200);
    expect(order.body.status).toBe('pending_payment');
  });

  it('when the scheme is written in lower case, then the token is accepted', async () => {
    const res = await sys.http.get(`/api/purchases/${randomUUID()}`).set('Authorization', `bearer ${await sys.token('lower')}`);
    expect(res.status).toBe(404);
    const admin = await sys.http.get('/api/admin/dlq').set('Authorization', `BEARER ${ADMIN_TOKEN}`);
    expect(admin.status).toBe(200);
  });
});

describe('idempotency keys', () => {
  it('when shopper "tenant" sends key "bob:K" and shopper "tenant:bob" key "K", then they are two requests', async () => {
    const saleId = await sys.createSale({ stock: 5 });
    const a = await sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token('tenant')}`).set('Idempotency-Key', 'bob:K').send({});
    const b = await sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token('tenant:bob')}`).set('Idempotency-Key', 'K').send({ quantity: 1 });
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(b.headers['idempotent-replayed']).toBeUndefined();
    expect(b.body.requestId).not.toBe(a.body.requestId);
    await Promise.all([a, b].map((r) => sys.waitForFinal(saleId, r.body.requestId)));
  });
});

describe('hostile admin bodies', () => {
  it.each([
    ['a NUL byte in name', (m: string) => ({ name: `${m}\u0000x`, stock: 1 }), 'name'],
    ['a lone surrogate in name', (m: string) => ({ name: `${m}\ud800`, stock: 1 }), 'name'],
    ['startsAt in year 0000', (m: string) => ({ name: m, stock: 1, startsAt: '0000-01-01T00:00:00Z' }), 'startsAt'],
    ['endsAt in year 0000', (m: string) => ({ name: m, stock: 1, endsAt: '0000-01-01T00:00:00Z' }), 'endsAt'],
    ['stock beyond int4', (m: string) => ({ name: m, stock: 2 ** 31 }), 'stock'],
    ['perUserLimit beyond int4', (m: string) => ({ name: m, stock: 1, perUserLimit: 2 ** 31 }), 'perUserLimit'],
    ['stock of 1e20', (m: string) => ({ name: m, stock: 1e20 }), 'stock'],
  ])('when the body has %s, then 400 names the field and no sale is written', async (_name, body, field) => {
    const marker = `hostile-${randomUUID()}`;
    const res = await sys.http
      .post('/api/admin/sales')
      .set('Authorization', `Bearer ${ADMIN_TOKEN}`)
      .set('Content-Type', 'application/json')
      .send(JSON.stringify(body(marker)));
    expect(res.status, res.text).toBe(400);
    expect(res.body.type).toBe('/problems/validation-error');
    expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await sys.api.deps.db.sale.count({ where: { name: { startsWith: marker } } })).toBe(0);
  });
});

describe('security headers', () => {
  it('when the page or the API answers, then CSP, nosniff, frame-ancestors and Referrer-Policy are set, HSTS is not (outside production)', async () => {
    for (const path of ['/', '/api/sales']) {
      const res = await sys.http.get(path);
      expect(res.status).toBe(200);
      const csp = res.headers['content-security-policy'];
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['strict-transport-security']).toBeUndefined();
    }
    const page = await sys.http.get('/');
    expect(page.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=/i);
  });

  it('when NODE_ENV=production, then HSTS is sent', async () => {
    const { createApp } = await import('../api/app.ts');
    const app = createApp({ ...sys.api.deps, config: { ...sys.config, NODE_ENV: 'production' } });
    const res = await request(app).get('/healthz');
    expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
  });
});
