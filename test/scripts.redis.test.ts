/**
 * The Lua scripts against a real Redis (the scripts are the product's core; a mock would prove nothing): sold out,
 * idempotent replay, per-user limit, withdraw, rebuild epochs. Each test uses its own key prefix and removes it.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idempotencyKey, purchaseKey, saleKeys } from '../core/redis/keys.ts';
import { AdmitCode, Decision, WithdrawCode, admit, decide, defineScripts, load, putStates, release, withdraw } from '../core/redis/scripts.ts';

const prefix = `fs:test-${randomBytes(4).toString('hex')}`;
let redis: Redis;

beforeAll(() => {
  redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  defineScripts(redis);
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

async function newSale(stock: number, perUserLimit = 1, o: { startsAtMs?: number; endsAtMs?: number } = {}) {
  const saleId = randomUUID();
  const keys = saleKeys(prefix, saleId);
  const epoch = '1';
  await load(redis, keys, { stock, remaining: stock, perUserLimit, startsAtMs: o.startsAtMs ?? 0, endsAtMs: o.endsAtMs ?? 0, epoch, buyers: [], decisions: [] });
  return { saleId, keys, epoch };
}

function admitArgs(userId: string, quantity = 1, o: { requestId?: string; bodyHash?: string } = {}) {
  const requestId = o.requestId ?? randomUUID();
  const state = { body: JSON.stringify({ requestId, userId, status: 'queued' }), version: 1, ttlS: 60 };
  return { requestId, userId, quantity, nowMs: Date.now(), bodyHash: o.bodyHash ?? '', idemTtlS: 60, state };
}

describe('admit-8.lua', () => {
  it('when every unit is held by queued requests, then admission answers sold out and changes nothing', async () => {
    const { keys, saleId } = await newSale(2);
    const idem = idempotencyKey(prefix, saleId, '-', '');
    expect((await admit(redis, keys, idem, admitArgs('a'))).code).toBe(AdmitCode.Admitted);
    expect((await admit(redis, keys, idem, admitArgs('b'))).code).toBe(AdmitCode.Admitted);
    const before = await redis.hgetall(keys.sale);
    expect((await admit(redis, keys, idem, admitArgs('c'))).code).toBe(AdmitCode.SoldOut);
    expect(await redis.hgetall(keys.sale)).toEqual(before);
    expect(await redis.hget(keys.held, 'c')).toBeNull();
  });

  it('when a shopper holds the per-user limit, then a second request is a duplicate naming the first', async () => {
    const { keys, saleId } = await newSale(10, 1);
    const idem = idempotencyKey(prefix, saleId, '-', '');
    const first = admitArgs('alice');
    await admit(redis, keys, idem, first);
    const second = await admit(redis, keys, idem, admitArgs('alice'));
    expect(second).toEqual({ code: AdmitCode.Duplicate, value: first.requestId });
  });

  it('when the same request runs twice (ioredis re-send), then it is admitted once', async () => {
    const { keys, saleId } = await newSale(10, 2);
    const idem = idempotencyKey(prefix, saleId, '-', '');
    const args = admitArgs('bob');
    await admit(redis, keys, idem, args);
    expect((await admit(redis, keys, idem, args)).code).toBe(AdmitCode.Admitted);
    expect(await redis.hget(keys.sale, 'pending')).toBe('1');
    expect(await redis.hget(keys.held, 'bob')).toBe('1');
  });

  it('when an idempotency key comes back, then the same body replays and another body is refused', async () => {
    const { keys, saleId } = await newSale(10, 5);
    const idem = idempotencyKey(prefix, saleId, 'carol', 'key-1');
    const first = admitArgs('carol', 1, { bodyHash: 'h1' });
    await admit(redis, keys, idem, first);
    expect(await admit(redis, keys, idem, admitArgs('carol', 1, { bodyHash: 'h1' }))).toEqual({
      code: AdmitCode.Replayed,
      value: first.requestId,
      original: { quantity: 1, epoch: '1', admittedAt: first.nowMs },
      decision: undefined,
    });
    await decide(redis, keys, [{ requestId: first.requestId, userId: 'carol', quantity: 1, epoch: '1' }]);
    expect(await admit(redis, keys, idem, admitArgs('carol', 1, { bodyHash: 'h1' }))).toMatchObject({ code: AdmitCode.Replayed, decision: Decision.Succeeded });
    expect((await admit(redis, keys, idem, admitArgs('carol', 2, { bodyHash: 'h2' }))).code).toBe(AdmitCode.IdempotencyKeyReused);
    expect(await redis.hget(keys.held, 'carol')).toBe('1');
  });

  it('when a request is admitted, then its queued state is stored in the same call, in the sale\'s slot', async () => {
    const { keys, saleId } = await newSale(3);
    const a = admitArgs('q');
    await admit(redis, keys, idempotencyKey(prefix, saleId, 'q', ''), a);
    expect(await redis.hgetall(purchaseKey(prefix, saleId, a.requestId))).toEqual({ version: '1', body: a.state.body });
    const refused = admitArgs('q');
    expect((await admit(redis, keys, idempotencyKey(prefix, saleId, 'q', ''), refused)).code).toBe(AdmitCode.Duplicate);
    expect(await redis.exists(purchaseKey(prefix, saleId, refused.requestId))).toBe(0);
  });

  it('when an idempotency key names a withdrawn request, then the key is free again and the request is admitted afresh', async () => {
    const { keys, saleId } = await newSale(3, 2);
    const idem = idempotencyKey(prefix, saleId, 'wd', 'key');
    const first = admitArgs('wd', 1, { bodyHash: 'h' });
    await admit(redis, keys, idem, first);
    await redis.hset(keys.decided, first.requestId, Decision.Withdrawn); // as a rebuild from PostgreSQL leaves it
    const again = admitArgs('wd', 1, { bodyHash: 'h' });
    expect(await admit(redis, keys, idem, again)).toEqual({ code: AdmitCode.Admitted, value: '1' });
    expect((await redis.get(idem))?.split('|')[1]).toBe(again.requestId);
  });

  it('when the sale has not started or has ended, then admission says which', async () => {
    const upcoming = await newSale(5, 1, { startsAtMs: Date.now() + 60_000 });
    const ended = await newSale(5, 1, { startsAtMs: 1, endsAtMs: Date.now() - 1 });
    expect(await admit(redis, upcoming.keys, `${upcoming.keys.sale}:idem:-`, admitArgs('d'))).toEqual({ code: AdmitCode.SaleNotActive, value: 'upcoming' });
    expect(await admit(redis, ended.keys, `${ended.keys.sale}:idem:-`, admitArgs('d'))).toEqual({ code: AdmitCode.SaleNotActive, value: 'ended' });
  });

  it('when the sale is not in Redis, then admission says so', async () => {
    const keys = saleKeys(prefix, randomUUID());
    expect((await admit(redis, keys, `${keys.sale}:idem:-`, admitArgs('e'))).code).toBe(AdmitCode.SaleNotLoaded);
  });

  it('when quantity exceeds the per-user limit, then admission refuses it with the limit', async () => {
    const { keys } = await newSale(10, 2);
    expect(await admit(redis, keys, `${keys.sale}:idem:-`, admitArgs('f', 3))).toEqual({ code: AdmitCode.OverLimit, value: '2' });
  });
});

describe('decide-6.lua', () => {
  it('when decided twice, then stock is taken once and the replay returns the first decision', async () => {
    const { keys, saleId, epoch } = await newSale(3);
    const a = admitArgs('u1');
    await admit(redis, keys, idempotencyKey(prefix, saleId, '-', ''), a);
    const m = { requestId: a.requestId, userId: 'u1', quantity: 1, epoch };
    expect((await decide(redis, keys, [m])).results).toEqual([{ decision: Decision.Succeeded, replayed: false }]);
    expect((await decide(redis, keys, [m])).results).toEqual([{ decision: Decision.Succeeded, replayed: true }]);
    expect(await redis.hmget(keys.sale, 'remaining', 'pending')).toEqual(['2', '0']);
  });

  it('when one call decides a batch, then each request is decided in order against the stock left by the ones before', async () => {
    const { keys, saleId, epoch } = await newSale(2, 1);
    const idem = idempotencyKey(prefix, saleId, '-', '');
    const batch = [];
    for (const userId of ['b1', 'b2']) {
      const a = admitArgs(userId);
      await admit(redis, keys, idem, a);
      batch.push({ requestId: a.requestId, userId, quantity: 1, epoch });
    }
    const stranger = { requestId: randomUUID(), userId: 'b3', quantity: 1, epoch: 'before-a-rebuild' };
    const { epoch: decidedUnder, results } = await decide(redis, keys, [batch[0]!, batch[0]!, batch[1]!, stranger]);
    expect(decidedUnder).toBe(epoch);
    expect(results).toEqual([
      { decision: Decision.Succeeded, replayed: false },
      { decision: Decision.Succeeded, replayed: true },
      { decision: Decision.Succeeded, replayed: false },
      { decision: Decision.SoldOut, replayed: false },
    ]);
    expect(await redis.hmget(keys.sale, 'remaining', 'pending')).toEqual(['0', '0']);
  });

  it('when stock ran out, then the decision is sold out and the shopper holds nothing', async () => {
    const { keys } = await newSale(1, 1);
    const m = { requestId: randomUUID(), userId: 'v', quantity: 1, epoch: 'an-older-epoch' };
    await redis.hset(keys.sale, 'remaining', 0);
    expect((await decide(redis, keys, [m])).results[0]!.decision).toBe(Decision.SoldOut);
    expect(await redis.hget(keys.held, 'v')).toBeNull();
  });

  it('when the admission was withdrawn, then the message is dropped without taking stock', async () => {
    const { keys, saleId, epoch } = await newSale(5);
    const a = admitArgs('w');
    const idem = idempotencyKey(prefix, saleId, '-', '');
    await admit(redis, keys, idem, a);
    expect(await withdraw(redis, keys, idem, { requestId: a.requestId, userId: 'w', quantity: 1 })).toEqual({ code: WithdrawCode.Withdrawn, decision: Decision.Withdrawn });
    expect(await withdraw(redis, keys, idem, { requestId: a.requestId, userId: 'w', quantity: 1 })).toEqual({ code: WithdrawCode.Decided, decision: Decision.Withdrawn });
    expect(await redis.hget(keys.last, 'w')).toBeNull();
    expect(await redis.exists(purchaseKey(prefix, saleId, a.requestId))).toBe(0);
    expect((await decide(redis, keys, [{ requestId: a.requestId, userId: 'w', quantity: 1, epoch }])).results[0]!.decision).toBe(Decision.Withdrawn);
    expect(await redis.hmget(keys.sale, 'remaining', 'pending')).toEqual(['5', '0']);
    expect(await redis.hget(keys.held, 'w')).toBeNull();
  });

  it('when a request admitted before a rebuild comes in, then it is checked against the rebuilt buyers', async () => {
    const saleId = randomUUID();
    const keys = saleKeys(prefix, saleId);
    await load(redis, keys, { stock: 5, remaining: 4, perUserLimit: 1, startsAtMs: 0, endsAtMs: 0, epoch: '2', buyers: [['x', 1, randomUUID()]], decisions: [] });
    expect((await decide(redis, keys, [{ requestId: randomUUID(), userId: 'x', quantity: 1, epoch: 'old' }])).results[0]!.decision).toBe(Decision.OverLimit);
    const y = randomUUID();
    expect((await decide(redis, keys, [{ requestId: y, userId: 'y', quantity: 1, epoch: 'old' }])).results[0]!.decision).toBe(Decision.Succeeded);
    expect(await redis.hget(keys.sale, 'remaining')).toBe('3');
    // What holds y's place now is that request: a second request of y's is told so.
    expect(await admit(redis, keys, idempotencyKey(prefix, saleId, 'y', ''), admitArgs('y'))).toEqual({ code: AdmitCode.Duplicate, value: y });
  });

  it('when the sale was rebuilt with a decision PostgreSQL holds, then a redelivery replays it', async () => {
    const saleId = randomUUID();
    const keys = saleKeys(prefix, saleId);
    const requestId = randomUUID();
    await load(redis, keys, { stock: 5, remaining: 4, perUserLimit: 1, startsAtMs: 0, endsAtMs: 0, epoch: '2', buyers: [['z', 1, randomUUID()]], decisions: [[requestId, Decision.Succeeded]] });
    expect((await decide(redis, keys, [{ requestId, userId: 'z', quantity: 1, epoch: 'e1' }])).results).toEqual([{ decision: Decision.Succeeded, replayed: true }]);
    expect(await redis.hget(keys.sale, 'remaining')).toBe('4');
  });
});

describe('release-3.lua and load-6.lua', () => {
  it('when a success is released twice, then its units return once', async () => {
    const { keys, saleId, epoch } = await newSale(2);
    const a = admitArgs('r');
    await admit(redis, keys, idempotencyKey(prefix, saleId, '-', ''), a);
    await decide(redis, keys, [{ requestId: a.requestId, userId: 'r', quantity: 1, epoch }]);
    const args = { requestId: a.requestId, userId: 'r', quantity: 1, as: Decision.Expired };
    expect(await release(redis, keys, args)).toBe(true);
    expect(await release(redis, keys, args)).toBe(false);
    expect(await redis.hget(keys.sale, 'remaining')).toBe('2');
    expect(await redis.hget(keys.held, 'r')).toBeNull();
  });

  it('when a sale is loaded again with the same or an older epoch, then nothing changes; a newer epoch replaces it', async () => {
    const { keys } = await newSale(7);
    await redis.hset(keys.sale, 'remaining', 3);
    const snapshot = { stock: 7, remaining: 6, perUserLimit: 1, startsAtMs: 0, endsAtMs: 0, buyers: [] as [string, number, string][], decisions: [] };
    expect(await load(redis, keys, { ...snapshot, epoch: '1' })).toBe(false);
    expect(await load(redis, keys, { ...snapshot, epoch: '0' })).toBe(false);
    expect(await redis.hget(keys.sale, 'remaining')).toBe('3');
    expect(await load(redis, keys, { ...snapshot, epoch: '10' })).toBe(true);
    expect(await redis.hmget(keys.sale, 'remaining', 'epoch')).toEqual(['6', '10']);
  });

  it('when a sale is rebuilt, then each buyer\'s latest order is what a duplicate request is told', async () => {
    const saleId = randomUUID();
    const keys = saleKeys(prefix, saleId);
    const order = randomUUID();
    await load(redis, keys, { stock: 5, remaining: 4, perUserLimit: 1, startsAtMs: 0, endsAtMs: 0, epoch: '3', buyers: [['dup', 1, order]], decisions: [] });
    expect(await admit(redis, keys, idempotencyKey(prefix, saleId, 'dup', ''), admitArgs('dup'))).toEqual({ code: AdmitCode.Duplicate, value: order });
  });

  it('when a request is decided before its withdrawal arrives, then the withdrawal changes nothing and says so', async () => {
    const { keys, saleId, epoch } = await newSale(2);
    const a = admitArgs('late');
    const idem = idempotencyKey(prefix, saleId, 'late', '');
    await admit(redis, keys, idem, a);
    await decide(redis, keys, [{ requestId: a.requestId, userId: 'late', quantity: 1, epoch }]);
    expect(await withdraw(redis, keys, idem, a)).toEqual({ code: WithdrawCode.Decided, decision: Decision.Succeeded });
    expect(await redis.hmget(keys.sale, 'remaining', 'pending')).toEqual(['1', '0']);
    expect(await redis.hget(keys.held, 'late')).toBe('1');
  });

  it('when a request admitted before a rebuild is withdrawn, then its message is dropped by the rebuilt Redis', async () => {
    const { keys, saleId } = await newSale(2);
    const m = { requestId: randomUUID(), userId: 'old', quantity: 1 };
    expect(await withdraw(redis, keys, idempotencyKey(prefix, saleId, 'old', ''), m)).toEqual({ code: WithdrawCode.Marked, decision: Decision.Withdrawn });
    expect((await decide(redis, keys, [{ ...m, epoch: 'before-the-rebuild' }])).results[0]).toEqual({ decision: Decision.Withdrawn, replayed: true });
    expect(await redis.hget(keys.sale, 'remaining')).toBe('2');
  });

  it('never lets two different (shopper, key) pairs share an idempotency key', () => {
    expect(idempotencyKey(prefix, 'abc', 'tenant', 'bob:K')).not.toBe(idempotencyKey(prefix, 'abc', 'tenant:bob', 'K'));
    expect(idempotencyKey(prefix, 'abc', 'a', 'b|c')).not.toBe(idempotencyKey(prefix, 'abc', 'a|b', 'c'));
  });

  it('keeps every key of one sale in one cluster slot (hash tag {saleId})', () => {
    const { prefix: _p, saleId: _s, ...keys } = saleKeys(prefix, 'abc');
    expect(Object.keys(keys)).toHaveLength(6);
    for (const k of [...Object.values(keys), idempotencyKey(prefix, 'abc', 'u', 'k'), purchaseKey(prefix, 'abc', randomUUID())]) {
      expect(k).toMatch(/^[^{]*\{abc\}/);
    }
  });
});

describe('put-states-n.lua', () => {
  it('when a batch of states is written twice, or over a newer version, then each is stored and announced once, never going back', async () => {
    const { saleId } = await newSale(10);
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    const keyOf = (id: string) => purchaseKey(prefix, saleId, id);
    // One of them already holds a newer version than the batch brings.
    await putStates(redis, [{ key: keyOf(ids[2]!), version: 3, body: '{"v":3}' }], 60);
    const sub = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const heard: string[] = [];
    sub.on('smessage', (channel: string) => heard.push(channel));
    await sub.ssubscribe(...ids.map(keyOf));
    const batch = ids.map((id) => ({ key: keyOf(id), version: 2, body: JSON.stringify({ requestId: id, version: 2 }) }));
    expect(await putStates(redis, batch, 60)).toBe(2);
    expect(await putStates(redis, batch, 60)).toBe(0);
    await redis.ping(); // every announcement of the calls above has left Redis before this answer
    await new Promise((r) => setTimeout(r, 50));
    expect(heard.sort()).toEqual([keyOf(ids[0]!), keyOf(ids[1]!)].sort());
    expect(await redis.hget(keyOf(ids[0]!), 'body')).toBe(batch[0]!.body);
    expect(await redis.hmget(keyOf(ids[2]!), 'version', 'body')).toEqual(['3', '{"v":3}']);
    expect(await redis.ttl(keyOf(ids[1]!))).toBeGreaterThan(0);
    sub.disconnect();
  });
});
