/**
 * Ending a sale early: admission stops at once (on every API node, since they all read the sale's Redis hash),
 * the views say `ended`, an earlier end is kept, and a sale rebuilt from PostgreSQL stays ended.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../api/app.ts';
import request from 'supertest';
import { saleKeys } from '../core/redis/keys.ts';
import { ADMIN_TOKEN, startSystem, type TestSystem } from './support/system.ts';

let sys: TestSystem;
beforeAll(async () => {
  sys = await startSystem();
});
afterAll(() => sys?.stop());
afterEach(() => sys.assertInvariants());

const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };
const buy = async (http: ReturnType<typeof request>, saleId: string) =>
  http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${await sys.token(`end-${randomUUID()}`)}`).send({});

describe('POST /api/admin/sales/:saleId/end', () => {
  it('when a live sale is ended, then it answers ended and every node refuses purchases at once; accepted ones are still decided', async () => {
    const saleId = await sys.createSale({ stock: 10 });
    // A second API node on the same Redis and PostgreSQL, as another process would be.
    const other = request(createApp(sys.api.deps));
    const before = await buy(sys.http, saleId);
    expect(before.status).toBe(202);
    expect((await buy(other, saleId)).status).toBe(202);

    const ended = await sys.http.post(`/api/admin/sales/${saleId}/end`).set(admin);
    expect(ended.status).toBe(200);
    expect(ended.body).toMatchObject({ id: saleId, state: 'ended' });
    expect(Date.parse(ended.body.endsAt)).toBeLessThanOrEqual(Date.now());

    for (const http of [sys.http, other]) {
      const refused = await buy(http, saleId);
      expect(refused.status).toBe(409);
      expect(refused.body).toMatchObject({ type: '/problems/sale-not-active', state: 'ended' });
    }
    expect((await sys.http.get(`/api/sales/${saleId}`)).body.state).toBe('ended');
    expect((await sys.waitForFinal(saleId, before.body.requestId)).status).toBe('succeeded');
  });

  it('when a sale is ended twice, then the first end is kept', async () => {
    const saleId = await sys.createSale({ stock: 1 });
    const first = await sys.http.post(`/api/admin/sales/${saleId}/end`).set(admin);
    await new Promise((r) => setTimeout(r, 20));
    const second = await sys.http.post(`/api/admin/sales/${saleId}/end`).set(admin);
    expect(second.body.endsAt).toBe(first.body.endsAt);
  });

  it('when Redis loses an ended sale, then the rebuild from PostgreSQL keeps it ended', async () => {
    const saleId = await sys.createSale({ stock: 3 });
    await sys.http.post(`/api/admin/sales/${saleId}/end`).set(admin);
    const k = saleKeys(sys.config.REDIS_KEY_PREFIX, saleId);
    await sys.redis.del(k.sale, k.held, k.last, k.inflight, k.requests, k.decided);
    const refused = await buy(sys.http, saleId);
    expect(refused.status).toBe(409);
    expect(refused.body.state).toBe('ended');
  });

  it('when the sale is unknown or the caller is no admin, then 404 or 401 and nothing changes', async () => {
    expect((await sys.http.post(`/api/admin/sales/${randomUUID()}/end`).set(admin)).status).toBe(404);
    expect((await sys.http.post('/api/admin/sales/not-a-uuid/end').set(admin)).status).toBe(404);
    const saleId = await sys.createSale({ stock: 1 });
    expect((await sys.http.post(`/api/admin/sales/${saleId}/end`)).status).toBe(401);
    const accepted = await buy(sys.http, saleId);
    expect(accepted.status).toBe(202);
    expect((await sys.waitForFinal(saleId, accepted.body.requestId)).status).toBe('succeeded');
  });
});
