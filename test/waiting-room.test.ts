/**
 * The waiting room against the real PostgreSQL, Redis and RabbitMQ: the shuffled pre-queue, fifo and random order
 * after the start, the rate and the cap, abandoned tickets, admission tokens on the purchase path, two API nodes
 * and a restarted one, and sell-out closing the queue. No timing assertions: the rate is checked on the admission
 * times Redis recorded, not on how long anything took.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiServer } from '../api/main.ts';
import { createLogger } from '../core/logger.ts';
import { queueKeys } from '../core/waiting-room/scripts.ts';
import { shufflePrequeue } from '../core/waiting-room/shuffle.ts';
import { ADMIN_TOKEN, startSystem, type TestSystem } from './support/system.ts';

let sys: TestSystem;
beforeAll(async () => {
  sys = await startSystem({ QUEUE_ABANDON_SECONDS: '2', QUEUE_TICK_MS: '100' });
});
afterAll(() => sys?.stop());
afterEach(() => sys.assertInvariants());

const SESSION_S = 600;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const auth = async (u: string) => ({ Authorization: `Bearer ${await sys.token(u)}` });
const users = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}-${i}-${randomUUID().slice(0, 8)}`);

async function waitingSale(room: Record<string, unknown>, sale: Record<string, unknown> = {}) {
  return sys.createSale({ stock: 100, waitingRoom: { maxInside: 1000, sessionSeconds: SESSION_S, ...room }, ...sale });
}
async function join(saleId: string, u: string) {
  return sys.http.post(`/api/sales/${saleId}/queue`).set(await auth(u)).send({});
}
async function me(saleId: string, u: string) {
  return sys.http.get(`/api/sales/${saleId}/queue/me`).set(await auth(u));
}
/** Admission order as Redis recorded it: session ends grow with admission times. */
async function admittedOrder(saleId: string): Promise<string[]> {
  return sys.redis.zrange(queueKeys(sys.config.REDIS_KEY_PREFIX, saleId).inside, '0', '-1');
}
async function admissionTimes(saleId: string): Promise<number[]> {
  const flat = await sys.redis.zrange(queueKeys(sys.config.REDIS_KEY_PREFIX, saleId).inside, '0', '-1', 'WITHSCORES');
  return flat.filter((_, i) => i % 2 === 1).map((s) => Number(s) - SESSION_S * 1000);
}
/** Polls every shopper (one at a time, so every poll is a chance to admit) until `done` holds. */
async function pollUntil(saleId: string, who: string[], done: () => Promise<boolean>, onRound?: () => Promise<void>) {
  for (let round = 0; round < 2000; round++) {
    for (const u of who) await me(saleId, u);
    await onRound?.();
    if (await done()) return;
    await sleep(20);
  }
  throw new Error('the queue did not get there');
}
async function buy(saleId: string, u: string, admissionToken?: string) {
  const req = sys.http.post(`/api/sales/${saleId}/purchases`).set(await auth(u));
  if (admissionToken) req.set('Admission-Token', admissionToken);
  return req.send({ quantity: 1 });
}
async function admit(saleId: string, u: string): Promise<string> {
  let token: string | undefined;
  await pollUntil(saleId, [u], async () => {
    const r = await me(saleId, u);
    token = r.body.admissionToken;
    return r.body.state === 'admitted';
  });
  return token!;
}

describe('settings', () => {
  it('when a sale is created with a waiting room, then GET /api/sales/:id shows its settings; without, null', async () => {
    const saleId = await waitingSale({ admissionsPerMinute: 120, maxInside: 7, order: 'random' });
    const res = await sys.http.get(`/api/sales/${saleId}`);
    expect(res.body.waitingRoom).toMatchObject({ admissionsPerMinute: 120, maxInside: 7, sessionSeconds: SESSION_S, order: 'random', queueUrl: `/api/sales/${saleId}/queue` });
    const plain = await sys.createSale();
    expect((await sys.http.get(`/api/sales/${plain}`)).body.waitingRoom).toBeNull();
    expect((await join(plain, 'x')).body.type).toBe('/problems/no-waiting-room');
  });

  it('when the settings are bad, then 400 and no sale', async () => {
    const res = await sys.http
      .post('/api/admin/sales')
      .set('Authorization', `Bearer ${ADMIN_TOKEN}`)
      .send({ name: 'x', stock: 1, startsAt: new Date(Date.now() + 60_000).toISOString(), waitingRoom: { admissionsPerMinute: 0, maxInside: 1, opensAt: new Date(Date.now() + 120_000).toISOString() } });
    expect(res.status).toBe(400);
    expect(res.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['waitingRoom.admissionsPerMinute', 'waitingRoom.opensAt']);
  });
});

describe('order', () => {
  it('when shoppers join the pre-queue, then they are admitted in the recorded shuffle of their join order, and later ones after them in join order (fifo)', async () => {
    const startsAt = new Date(Date.now() + 1500).toISOString();
    const saleId = await waitingSale({ admissionsPerMinute: 6000 }, { startsAt });
    const early = users(12, 'early');
    for (const u of early) {
      const r = await join(saleId, u);
      expect(r.status).toBe(201);
      expect(r.body.state).toBe('prequeue');
    }
    const again = await join(saleId, early[0]!);
    expect(again.status).toBe(200);
    expect(again.body.ticket).toBe(1);
    while (Date.now() < Date.parse(startsAt)) await sleep(50);
    const late = users(4, 'late');
    for (const u of late) expect((await join(saleId, u)).status).toBe(201);
    await pollUntil(saleId, [...early, ...late], async () => (await admittedOrder(saleId)).length === 16);

    const audit = await sys.http.get(`/api/admin/sales/${saleId}/queue`).set('Authorization', `Bearer ${ADMIN_TOKEN}`);
    expect(audit.body.shuffle.prequeueJoinOrder).toEqual(early);
    const expected = shufflePrequeue(early, audit.body.shuffle.seed);
    expect(audit.body.shuffle.admissionOrder).toEqual(expected);
    expect(expected).not.toEqual(early); // 12! orders: the identity would mean no shuffle
    expect(await admittedOrder(saleId)).toEqual([...expected, ...late]);
  });

  it('when a random-order sale has started, then later arrivals are admitted by their draws', async () => {
    const saleId = await waitingSale({ admissionsPerMinute: 600, order: 'random' });
    const late = users(8, 'draw');
    for (const u of late) await join(saleId, u);
    // Those still in the draw pool now (joining may already have admitted some), lowest draw first.
    const byDraw = await sys.redis.zrange(queueKeys(sys.config.REDIS_KEY_PREFIX, saleId).pool, '0', '-1');
    expect(byDraw.length).toBeGreaterThan(1);
    await pollUntil(saleId, late, async () => (await admittedOrder(saleId)).length === 8);
    expect((await admittedOrder(saleId)).filter((u) => byDraw.includes(u))).toEqual(byDraw);
    expect(byDraw).not.toEqual(late.filter((u) => byDraw.includes(u))); // 8 joiners: join order would mean no draw
  });
});

describe('rate, cap, abandoned tickets', () => {
  it('when many wait, then admissions are at least one interval apart and never more than the cap are inside; a decided purchase frees a place', async () => {
    const saleId = await waitingSale({ admissionsPerMinute: 600, maxInside: 3 }); // one every 100 ms
    const crowd = users(6, 'cap');
    for (const u of crowd) await join(saleId, u);
    const k = queueKeys(sys.config.REDIS_KEY_PREFIX, saleId);
    let most = 0;
    const watch = async () => {
      most = Math.max(most, await sys.redis.zcard(k.inside));
    };
    await pollUntil(saleId, crowd, async () => (await sys.redis.zcard(k.inside)) === 3, watch);
    for (let i = 0; i < 10; i++) await pollUntil(saleId, crowd, async () => true, watch);
    expect(await sys.redis.zcard(k.inside)).toBe(3);
    const inside = await admittedOrder(saleId);
    const token = (await me(saleId, inside[0]!)).body.admissionToken;
    const bought = await buy(saleId, inside[0]!, token);
    expect(bought.status).toBe(202);
    await sys.waitForFinal(saleId, bought.body.requestId);
    await pollUntil(saleId, crowd, async () => (await sys.redis.hget(k.queue, 'admitted')) === '4', watch);
    expect(most).toBe(3);
    expect((await me(saleId, inside[0]!)).body.state).toBe('done');
    const times = await admissionTimes(saleId);
    const all = [...times].sort((a, b) => a - b);
    for (let i = 1; i < all.length; i++) expect(all[i]! - all[i - 1]!).toBeGreaterThanOrEqual(100);
  });

  it('when a ticket is abandoned (no poll for longer than the limit), then it drops out at the head and holds no place', async () => {
    const startsAt = new Date(Date.now() + 2500).toISOString();
    const saleId = await waitingSale({ admissionsPerMinute: 6000, maxInside: 1 }, { startsAt });
    const [gone, here] = users(2, 'abandon');
    await join(saleId, gone!);
    await join(saleId, here!);
    while (Date.now() < Date.parse(startsAt)) {
      await me(saleId, here!);
      await sleep(200);
    }
    const token = await admit(saleId, here!);
    // Whichever the shuffle put first, `gone` reaches the head once `here` is done.
    const r = await buy(saleId, here!, token);
    await sys.waitForFinal(saleId, r.body.requestId);
    const k = queueKeys(sys.config.REDIS_KEY_PREFIX, saleId);
    await pollUntil(saleId, [here!], async () => (await sys.redis.zcard(k.order)) === 0);
    expect((await me(saleId, gone!)).body.state).toBe('expired');
    expect((await me(saleId, here!)).body.state).toBe('done');
    expect(await sys.redis.hget(k.queue, 'admitted')).toBe('1');
    expect(await sys.redis.zcard(k.inside)).toBe(0);
  });
});

describe('admission tokens', () => {
  it('when a purchase comes without a valid admission token of its shopper and sale, then 403 not-admitted and nothing is queued', async () => {
    const saleId = await waitingSale({ admissionsPerMinute: 6000 });
    const other = await waitingSale({ admissionsPerMinute: 6000 });
    const [alice, bob] = users(2, 'token');
    await join(saleId, alice!);
    await join(other, alice!);
    await join(saleId, bob!);
    const aliceToken = await admit(saleId, alice!);
    const aliceOtherToken = await admit(other, alice!);
    for (const [u, t] of [[bob, undefined], [bob, aliceToken], [alice, aliceOtherToken], [alice, 'garbage']] as const) {
      const r = await buy(saleId, u!, t);
      expect(r.status).toBe(403);
      expect(r.body).toMatchObject({ type: '/problems/not-admitted', queueUrl: `/api/sales/${saleId}/queue` });
    }
    const s = await sys.stats(saleId);
    expect(s.pendingUnits + s.inflightRequests + s.ordersInDatabase).toBe(0);
    const ok = await buy(saleId, alice!, aliceToken);
    expect(ok.status).toBe(202);
    expect((await sys.waitForFinal(saleId, ok.body.requestId)).status).toBe('succeeded');
  });
});

describe('nodes', () => {
  let extra: ApiServer[] = [];
  afterEach(async () => {
    for (const a of extra) await a.stop();
    extra = [];
  });

  it('when two API nodes answer, then they give the same positions; a restarted node loses no ticket', async () => {
    const saleId = await waitingSale({ admissionsPerMinute: 1 });
    const crowd = users(5, 'node');
    for (const u of crowd) await join(saleId, u);
    const second = await startApi(sys.config, createLogger('test', 'silent'));
    extra.push(second);
    const view = async (url: string, u: string) => {
      const r = await fetch(`${url}/api/sales/${saleId}/queue/me`, { headers: await auth(u) });
      const b = (await r.json()) as { ticket: number; state: string; position: number };
      return [b.ticket, b.state, b.position];
    };
    const a = await Promise.all(crowd.map((u) => view(sys.url, u)));
    const b = await Promise.all(crowd.map((u) => view(`http://127.0.0.1:${second.port}`, u)));
    expect(b).toEqual(a);
    expect(a.slice(1).map((x) => x[2])).toEqual([1, 2, 3, 4]);
    await second.stop();
    extra = [];
    const third = await startApi(sys.config, createLogger('test', 'silent'));
    extra.push(third);
    expect(await Promise.all(crowd.map((u) => view(`http://127.0.0.1:${third.port}`, u)))).toEqual(a);
  });
});

describe('sell-out', () => {
  it('when the sale sells out, then every waiting stream gets sold_out and joining answers 409 sold-out', async () => {
    const saleId = await waitingSale({ admissionsPerMinute: 6000, maxInside: 1 }, { stock: 1 });
    const [buyer, ...waiting] = users(4, 'sold');
    await join(saleId, buyer!);
    for (const u of waiting) await join(saleId, u);
    const token = await admit(saleId, buyer!);
    const streams = await Promise.all(
      waiting.map(async (u) => {
        const res = await fetch(`${sys.url}/api/sales/${saleId}/queue/events`, { headers: await auth(u) });
        const reader = res.body!.getReader();
        const decoder = new TextDecoder();
        const done = (async () => {
          let text = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return 'closed';
            text += decoder.decode(value);
            const states = [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]!).state);
            if (states.includes('sold_out')) {
              await reader.cancel();
              return 'sold_out';
            }
          }
        })();
        return { done };
      }),
    );
    const r = await buy(saleId, buyer!, token);
    expect((await sys.waitForFinal(saleId, r.body.requestId)).status).toBe('succeeded');
    expect(await Promise.all(streams.map((s) => s.done))).toEqual(['sold_out', 'sold_out', 'sold_out']);
    const late = await join(saleId, 'late-' + randomUUID());
    expect(late.status).toBe(409);
    expect(late.body.type).toBe('/problems/sold-out');
  });
});
