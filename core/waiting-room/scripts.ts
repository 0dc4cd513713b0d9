/**
 * Keys and typed wrappers of the waiting-room scripts (`core/redis/scripts/queue-*.lua`, headers there). Every key
 * is under the sale's hash tag, next to the sale's own keys, so a script can read the sale's stock and decisions.
 */
import { readFileSync } from 'node:fs';
import type { RedisClient as Redis } from '../redis/client.ts';
import { saleKeys } from '../redis/keys.ts';

const VERSION = 'v1';
const scripts = { 'queue-join': 7, 'queue-advance': 10, 'queue-load': 1 } as const;
type Name = keyof typeof scripts;
const commandName = (name: Name) => `fs_${name.replace('-', '_')}_${VERSION}`;
const defined = new WeakSet<Redis>();

/** The keys of one sale's waiting room. */
export interface QueueKeys {
  queue: string;
  tickets: string;
  pre: string;
  order: string;
  pool: string;
  seen: string;
  inside: string;
  sale: string;
  last: string;
  decided: string;
}

/** Builds the waiting-room keys of sale `saleId` under `prefix`. */
export function queueKeys(prefix: string, saleId: string): QueueKeys {
  const s = saleKeys(prefix, saleId);
  const base = `${s.sale}:queue`;
  return {
    queue: base,
    tickets: `${base}:tickets`,
    pre: `${base}:pre`,
    order: `${base}:order`,
    pool: `${base}:pool`,
    seen: `${base}:seen`,
    inside: `${base}:inside`,
    sale: s.sale,
    last: s.last,
    decided: s.decided,
  };
}

function run(redis: Redis, name: Name, keys: string[], args: (string | number)[]): Promise<unknown> {
  if (!defined.has(redis)) {
    for (const [n, numberOfKeys] of Object.entries(scripts) as [Name, number][]) {
      const lua = readFileSync(new URL(`../redis/scripts/${n}-${numberOfKeys}.lua`, import.meta.url), 'utf8');
      redis.defineCommand(commandName(n), { numberOfKeys, lua });
    }
    defined.add(redis);
  }
  const fn = (redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[commandName(name)]!;
  return fn.call(redis, ...keys, ...args);
}

function unexpected(script: string, reply: unknown): Error {
  return new Error(`Unexpected reply from ${script}: ${JSON.stringify(reply)}`);
}

/** Codes of `queue-join-7.lua`. */
export enum JoinCode {
  Joined = 0,
  Existing = 1,
  NotLoaded = 2,
  NotOpen = 3,
  SoldOut = 4,
  Ended = 5,
}

/**
 * Takes (or finds) the shopper's ticket. @param draw - a random integer, the ticket's draw in a random-order sale.
 * @returns the code and the ticket number (for NotOpen: when the pre-queue opens, ms). @throws Error on a bad reply.
 */
export async function joinQueue(redis: Redis, k: QueueKeys, userId: string, draw: number): Promise<{ code: JoinCode; value: number }> {
  const reply = await run(redis, 'queue-join', [k.queue, k.tickets, k.pre, k.order, k.pool, k.seen, k.sale], [userId, draw]);
  if (!Array.isArray(reply) || reply.length !== 2 || typeof reply[0] !== 'number') throw unexpected('queue-join', reply);
  return { code: reply[0] as JoinCode, value: Number(reply[1]) };
}

/** The queue after an advance, and one shopper's ticket. Times in ms (Redis's clock). */
export interface QueueSnapshot {
  loaded: boolean;
  now: number;
  /** The place of the latest ticket served (admitted or dropped) from the placed queue. */
  serving: number;
  waitingPlaced: number;
  waitingPool: number;
  inside: number;
  soldOut: boolean;
  started: boolean;
  /** Time between two admissions, ms. */
  intervalMs: number;
  ticket?: { number: number; place: number; status: 'w' | 'a' | 'd' | 'x'; sessionEnd: number; poolRank: number };
}

/**
 * Advances the serving counter (see `queue-advance-10.lua`) and reads `userId`'s ticket ("" for none).
 * @param present - users whose streams this node holds (marked seen). @param abandonMs - ms without a poll.
 */
export async function advanceQueue(redis: Redis, k: QueueKeys, userId: string, abandonMs: number, present: string[] = []): Promise<QueueSnapshot> {
  const reply = await run(redis, 'queue-advance', [k.queue, k.tickets, k.pre, k.order, k.pool, k.seen, k.inside, k.sale, k.last, k.decided], [
    userId,
    abandonMs,
    ...present,
  ]);
  if (!Array.isArray(reply) || reply.length !== 14 || typeof reply[0] !== 'number') throw unexpected('queue-advance', reply);
  const [code, now, serving, placed, pool, inside, soldOut, started, interval, no, place, status, ends, rank] = reply;
  return {
    loaded: code === 0,
    now: Number(now),
    serving: Number(serving),
    waitingPlaced: Number(placed),
    waitingPool: Number(pool),
    inside: Number(inside),
    soldOut: soldOut === 1,
    started: started === 1,
    intervalMs: Number(interval),
    ticket: Number(no) > 0 ? { number: Number(no), place: Number(place), status: String(status) as 'w', sessionEnd: Number(ends), poolRank: Number(rank) } : undefined,
  };
}

/** Settings as loaded into Redis. Times in ms. */
export interface QueueLoad {
  opensMs: number;
  startsMs: number;
  endsMs: number;
  intervalMs: number;
  cap: number;
  sessionMs: number;
  order: 'fifo' | 'random';
  seed: number;
}

/** Loads a waiting room's settings unless Redis has them (see `queue-load-1.lua`). @returns true when loaded. */
export async function loadQueue(redis: Redis, k: QueueKeys, s: QueueLoad): Promise<boolean> {
  const reply = await run(redis, 'queue-load', [k.queue], [s.opensMs, s.startsMs, s.endsMs, s.intervalMs, s.cap, s.sessionMs, s.order, s.seed]);
  return reply === 1;
}
