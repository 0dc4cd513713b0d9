/**
 * Proof of work at the waiting room's door, against the real PostgreSQL, Redis and RabbitMQ: a valid solution
 * joins; a missing, forged, expired, another sale's or shopper's, or replayed one is refused with a problem and
 * changes nothing (no ticket, no spent mark); a shopper holding a ticket needs none; a join that makes no ticket
 * gives the solution back. Solutions come from altcha-lib's own solver at a small maxNumber.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { doorSolutionKey } from '../core/redis/keys.ts';
import { queueKeys } from '../core/waiting-room/scripts.ts';
import { CHALLENGE_TTL_MS } from '../api/queue-door.ts';
import { mintChallenge, solve } from './support/proof-of-work.ts';
import { ADMIN_TOKEN, startSystem, type TestSystem } from './support/system.ts';

let sys: TestSystem;
beforeAll(async () => {
  sys = await startSystem({}, { worker: false });
});
afterAll(() => sys?.stop());
afterEach(() => sys.assertInvariants());

const MAX_NUMBER = 2000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const auth = async (u: string) => ({ Authorization: `Bearer ${await sys.token(u)}` });
const shopper = (tag: string) => `${tag}-${randomUUID().slice(0, 8)}`;
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64');
const unb64 = (s: string) => JSON.parse(Buffer.from(s, 'base64').toString('utf8'));

async function doorSale(room: Record<string, unknown> = {}, sale: Record<string, unknown> = {}) {
  return sys.createSale({ stock: 10, waitingRoom: { admissionsPerMinute: 6000, maxInside: 100, proofOfWork: { maxNumber: MAX_NUMBER }, ...room }, ...sale });
}
async function challenge(saleId: string, u: string) {
  return sys.http.get(`/api/sales/${saleId}/queue/challenge`).set(await auth(u));
}
async function solved(saleId: string, u: string): Promise<string> {
  const c = await challenge(saleId, u);
  expect(c.status).toBe(200);
  return solve(c.body);
}
async function join(saleId: string, u: string, altcha?: string) {
  return sys.http.post(`/api/sales/${saleId}/queue`).set(await auth(u)).send(altcha === undefined ? {} : { altcha });
}
const keys = (saleId: string) => queueKeys(sys.config.REDIS_KEY_PREFIX, saleId);
const spentKey = (saleId: string, altcha: string) => doorSolutionKey(sys.config.REDIS_KEY_PREFIX, saleId, unb64(altcha).challenge);

/** Asserts a refusal that changed nothing: the problem, no ticket for `u`, no ticket counted, nothing spent. */
async function expectRefused(res: { status: number; body: any }, slug: string, saleId: string, u: string, spent?: string) {
  expect(res.status).toBe(403);
  expect(res.body).toMatchObject({ type: `/problems/${slug}`, status: 403, challengeUrl: `/api/sales/${saleId}/queue/challenge` });
  expect(await sys.redis.hexists(keys(saleId).tickets, u)).toBe(0);
  expect(Number(await sys.redis.hget(keys(saleId).queue, 'tickets'))).toBe(0);
  if (spent) expect(await sys.redis.exists(spentKey(saleId, spent))).toBe(0);
}

describe('settings and challenges', () => {
  it('when a sale asks for proof of work, then GET /api/sales/:id shows maxNumber and the challenge URL; bad settings get 400', async () => {
    const saleId = await doorSale();
    const view = await sys.http.get(`/api/sales/${saleId}`);
    expect(view.body.waitingRoom.proofOfWork).toEqual({ maxNumber: MAX_NUMBER, challengeUrl: `/api/sales/${saleId}/queue/challenge` });
    const plain = await sys.createSale({ waitingRoom: { admissionsPerMinute: 60, maxInside: 1 } });
    expect((await sys.http.get(`/api/sales/${plain}`)).body.waitingRoom.proofOfWork).toBeNull();
    for (const proofOfWork of [{ maxNumber: 0 }, { maxNumber: 10_000_001 }, { maxNumber: 1.5 }, { difficulty: 4 }, {}]) {
      const res = await sys.http
        .post('/api/admin/sales')
        .set('Authorization', `Bearer ${ADMIN_TOKEN}`)
        .send({ name: 'x', stock: 1, waitingRoom: { admissionsPerMinute: 60, maxInside: 1, proofOfWork } });
      expect(res.status, JSON.stringify(proofOfWork)).toBe(400);
      expect(res.body.errors[0].field).toMatch(/^waitingRoom\.proofOfWork/);
    }
    const row = await sys.api.deps.db.waitingRoom.findUniqueOrThrow({ where: { saleId } });
    expect(row.powMaxNumber).toBe(MAX_NUMBER);
  });

  it('when a shopper asks for a challenge, then it is bound to the sale and the shopper, expires, and is stored nowhere', async () => {
    const saleId = await doorSale();
    const u = shopper('ask');
    const before = Date.now();
    const res = await challenge(saleId, u);
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toMatchObject({ algorithm: 'SHA-256', maxnumber: MAX_NUMBER });
    const params = new URLSearchParams(res.body.salt.split('?')[1]);
    expect(params.get('sale')).toBe(saleId);
    expect(params.get('sub')).toBe(u);
    const expires = Date.parse(res.body.expiresAt);
    expect(Number(params.get('expires')) * 1000).toBe(expires);
    expect(expires).toBeGreaterThan(before);
    expect(expires).toBeLessThanOrEqual(Date.now() + CHALLENGE_TTL_MS);
    expect(await sys.redis.exists(doorSolutionKey(sys.config.REDIS_KEY_PREFIX, saleId, res.body.challenge))).toBe(0);

    expect((await challenge(saleId, u)).body.challenge).not.toBe(res.body.challenge);
    expect((await sys.http.get(`/api/sales/${saleId}/queue/challenge`)).status).toBe(401);
    const noPow = await sys.createSale({ waitingRoom: { admissionsPerMinute: 60, maxInside: 1 } });
    expect((await challenge(noPow, u)).body.type).toBe('/problems/not-found');
    expect((await challenge(await sys.createSale(), u)).body.type).toBe('/problems/no-waiting-room');
    expect((await challenge(randomUUID(), u)).body.type).toBe('/problems/sale-not-found');
  });
});

describe('joining through the door', () => {
  it('when a shopper sends a valid solution, then they get a ticket and the solution is spent until the challenge expires', async () => {
    const saleId = await doorSale();
    const u = shopper('valid');
    const altcha = await solved(saleId, u);
    const res = await join(saleId, u, altcha);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ saleId, ticket: 1 });
    const ttl = await sys.redis.pttl(spentKey(saleId, altcha));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(CHALLENGE_TTL_MS + 60_000);
    expect(await sys.redis.get(spentKey(saleId, altcha))).toBe(u);
  });

  it('when a shopper holding a ticket joins again, then the same ticket comes back with no solution needed', async () => {
    const saleId = await doorSale();
    const u = shopper('again');
    const first = await join(saleId, u, await solved(saleId, u));
    expect(first.status).toBe(201);
    for (const altcha of [undefined, 'garbage']) {
      const again = await join(saleId, u, altcha);
      expect(again.status).toBe(200);
      expect(again.body.ticket).toBe(first.body.ticket);
    }
    expect(await sys.redis.hget(keys(saleId).queue, 'tickets')).toBe('1');
  });

  it('when the solution is missing, then 403 proof-of-work-required and nothing changes', async () => {
    const saleId = await doorSale();
    const u = shopper('missing');
    const res = await join(saleId, u);
    await expectRefused(res, 'proof-of-work-required', saleId, u);
    expect(res.headers.link).toBe(`</api/sales/${saleId}/queue/challenge>; rel="challenge"`);
  });

  it('when the solution is forged (wrong number, our challenge re-signed elsewhere, tampered salt, garbage), then 403 proof-of-work-invalid and nothing changes', async () => {
    const saleId = await doorSale();
    const u = shopper('forged');
    const good = unb64(await solved(saleId, u));
    const foreign = await mintChallenge('another-secret-0123456789-0123456789-abc', { maxNumber: 10, expires: new Date(Date.now() + 60_000), params: { sale: saleId, sub: u } });
    const forgeries = [
      b64({ ...good, number: good.number + 1 }),
      await solve(foreign),
      b64({ ...good, salt: good.salt.replace(`sub=${encodeURIComponent(u)}`, 'sub=someone') }),
      b64({ ...good, algorithm: 'SHA-1' }),
      b64({ ...good, number: String(good.number) }),
      b64(null),
      'not base64 at all!',
    ];
    for (const altcha of forgeries) await expectRefused(await join(saleId, u, altcha), 'proof-of-work-invalid', saleId, u);
    expect(await sys.redis.exists(doorSolutionKey(sys.config.REDIS_KEY_PREFIX, saleId, good.challenge))).toBe(0);
    const tooLong = await join(saleId, u, 'x'.repeat(5000));
    expect(tooLong.status).toBe(400);
    expect((await join(saleId, u, b64(good))).status).toBe(201); // the genuine one still works
  });

  it('when the challenge expired, then 403 proof-of-work-expired and nothing changes', async () => {
    const saleId = await doorSale();
    const u = shopper('expired');
    const old = await mintChallenge(sys.config.JWT_SECRET, { maxNumber: 100, expires: new Date(Date.now() - 1000), params: { sale: saleId, sub: u } });
    const altcha = await solve(old);
    await expectRefused(await join(saleId, u, altcha), 'proof-of-work-expired', saleId, u, altcha);
  });

  it('when the solution is for another sale or another shopper, then 403 proof-of-work-invalid and nothing changes', async () => {
    const saleId = await doorSale();
    const other = await doorSale();
    const [u, v] = [shopper('mine'), shopper('theirs')];
    const forOther = await solved(other, u);
    await expectRefused(await join(saleId, u, forOther), 'proof-of-work-invalid', saleId, u, forOther);
    const vs = await solved(saleId, v);
    await expectRefused(await join(saleId, u, vs), 'proof-of-work-invalid', saleId, u, vs);
    expect((await join(other, u, forOther)).status).toBe(201); // each still works where it belongs
    expect((await join(saleId, v, vs)).status).toBe(201);
  });

  it('when a solution is already spent by a join in flight, then 403 proof-of-work-replayed and nothing changes', async () => {
    const saleId = await doorSale();
    const u = shopper('replay');
    const altcha = await solved(saleId, u);
    // What the first of two joins sending the same solution has done when the second arrives.
    await sys.redis.set(spentKey(saleId, altcha), u, 'PX', 60_000);
    const res = await join(saleId, u, altcha);
    await expectRefused(res, 'proof-of-work-replayed', saleId, u);
    expect(await sys.redis.get(spentKey(saleId, altcha))).toBe(u);
  });

  it('when one solution is sent by many joins at once, then exactly one ticket is made and every other answer is that ticket or a replay refusal', async () => {
    const saleId = await doorSale();
    const u = shopper('burst');
    const altcha = await solved(saleId, u);
    const answers = await Promise.all(Array.from({ length: 8 }, () => join(saleId, u, altcha)));
    const kinds = answers.map((r) => (r.status === 403 ? r.body.type : r.status));
    expect(kinds.filter((k) => k === 201)).toHaveLength(1);
    expect(kinds.every((k) => k === 201 || k === 200 || k === '/problems/proof-of-work-replayed')).toBe(true);
    expect(new Set(answers.filter((r) => r.status < 300).map((r) => r.body.ticket))).toEqual(new Set([1]));
    expect(await sys.redis.hget(keys(saleId).queue, 'tickets')).toBe('1');
  });

  it('when a valid solution meets a queue not open yet, then 409 queue-not-open and the same solution joins once it opens', async () => {
    const opensAt = new Date(Date.now() + 1500);
    const saleId = await doorSale({ opensAt: opensAt.toISOString() }, { startsAt: new Date(Date.now() + 60_000).toISOString() });
    const u = shopper('early');
    const altcha = await solved(saleId, u);
    const early = await join(saleId, u, altcha);
    expect(early.status).toBe(409);
    expect(early.body.type).toBe('/problems/queue-not-open');
    expect(await sys.redis.exists(spentKey(saleId, altcha))).toBe(0);
    while (Date.now() <= opensAt.getTime() + 100) await sleep(100);
    const res = await join(saleId, u, altcha);
    expect(res.status).toBe(201);
    expect(res.body.state).toBe('prequeue');
  });
});
