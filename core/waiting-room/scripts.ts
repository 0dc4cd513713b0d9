/**
 * Keys and typed wrappers of the waiting-room scripts (`core/redis/scripts/queue-*.lua`, headers there). Every key
 * is under the sale's hash tag, next to the sale's own keys, so a script can read the sale's stock and decisions;
 * the sale's channel (sharded pub/sub) is in the same slot, so on a cluster only the shard holding it carries it.
 */
import { readFileSync } from 'node:fs';
import type { Config } from '../config.ts';
import type { RedisClient as Redis } from '../redis/client.ts';
import { saleKeys } from '../redis/keys.ts';

const VERSION = 'v2';
const scripts = { 'queue-join': 7, 'queue-advance': 11, 'queue-load': 1, 'queue-touch': 4 } as const;
type Name = keyof typeof scripts;
const commandName = (name: Name) => `fs_${name.replace('-', '_')}_${VERSION}`;
const defined = new WeakSet<Redis>();

/** The keys of one sale's waiting room, and its channel. */
export interface QueueKeys {
  queue: string;
  tickets: string;
  pre: string;
  order: string;
  pool: string;
  seen: string;
  inside: string;
  /** The pre-queue being shuffled (exists only while the shuffle runs). */
  shuffle: string;
  sale: string;
  last: string;
  decided: string;
  /** Sharded pub/sub channel announcing each change of the serving counter. */
  channel: string;
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
    shuffle: `${base}:shuffle`,
    sale: s.sale,
    last: s.last,
    decided: s.decided,
    channel: `${base}:changes`,
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

/** One shopper's ticket. place: > 0 a place in line, 0 in the pre-queue before the shuffle, -1 in the draw pool. */
export interface Ticket {
  number: number;
  place: number;
  status: 'w' | 'a' | 'd' | 'x';
  /** End of the session once admitted, ms (Redis's clock). */
  sessionEnd: number;
  /** 0-based rank in the draw pool, -1 when not in it. */
  poolRank: number;
}

/** The serving counter as announced or read, and maybe one shopper's ticket. Times in ms (Redis's clock). */
export interface QueueSnapshot {
  loaded: boolean;
  now: number;
  /** The place of the latest ticket served (admitted or dropped) from the placed queue. */
  serving: number;
  waitingPlaced: number;
  waitingPool: number;
  inside: number;
  soldOut: boolean;
  /** The sale has started and its pre-queue is shuffled: admissions may run. */
  started: boolean;
  /** Time between two admissions, µs. */
  intervalUs: number;
  /** When these settings were loaded into Redis (ms): with `version`, orders snapshots across a Redis that lost them. */
  loadedAt: number;
  /** Count of announced changes since the load. */
  version: number;
  /** Draw-pool tickets served so far, count: a pool rank read at poolServed p has moved up by poolServed - p since. */
  poolServed: number;
  /** A per-call bound stopped the script's work (a shuffle chunk, admissions): call again. */
  more: boolean;
  ticket?: Ticket;
  /** In an announcement: the shoppers this change admitted, and when their sessions end (ms). */
  admitted?: { users: string[]; sessionEnd: number };
}

/** True when snapshot `a` describes a later state of the counter than `b`. */
export function isNewer(a: QueueSnapshot, b: QueueSnapshot | undefined): boolean {
  return !b || a.loadedAt > b.loadedAt || (a.loadedAt === b.loadedAt && a.version > b.version);
}

function ticketOf(no: unknown, place: unknown, status: unknown, ends: unknown, rank: unknown): Ticket | undefined {
  return Number(no) > 0 ? { number: Number(no), place: Number(place), status: String(status) as Ticket['status'], sessionEnd: Number(ends), poolRank: Number(rank) } : undefined;
}

/** Options of an advance: what counts as abandoned and how much burst the rate tolerates. */
export interface AdvanceOptions {
  /** A waiting ticket without a poll or stream for this long is dropped at the head, ms. */
  abandonMs: number;
  /** The rate's burst tolerance tau, ms (see queue-advance-11.lua: at most floor((W + tau) / T) + 1 in any W). */
  burstMs: number;
}

/**
 * The options every node's advances use: QUEUE_ABANDON_SECONDS, and a burst tolerance of two ticks (QUEUE_TICK_MS),
 * so that ticks of nodes that drift apart keep the schedule without losing a slot (see README, Waiting room).
 */
export function advanceOptionsOf(config: Pick<Config, 'QUEUE_ABANDON_SECONDS' | 'QUEUE_TICK_MS'>): AdvanceOptions {
  return { abandonMs: config.QUEUE_ABANDON_SECONDS * 1000, burstMs: 2 * config.QUEUE_TICK_MS };
}

/**
 * Advances the serving counter (see `queue-advance-11.lua`; a change is announced on `k.channel`) and reads
 * `userId`'s ticket ("" for none). @throws Error on a bad reply.
 */
export async function advanceQueue(redis: Redis, k: QueueKeys, userId: string, o: AdvanceOptions): Promise<QueueSnapshot> {
  const reply = await run(
    redis,
    'queue-advance',
    [k.queue, k.tickets, k.pre, k.order, k.pool, k.seen, k.inside, k.sale, k.last, k.decided, k.shuffle],
    [userId, o.abandonMs, o.burstMs, k.channel],
  );
  if (!Array.isArray(reply) || reply.length !== 18 || typeof reply[0] !== 'number') throw unexpected('queue-advance', reply);
  const [code, now, serving, placed, pool, inside, soldOut, started, interval, loaded, version, poolServed, more, no, place, status, ends, rank] = reply;
  return {
    loaded: code === 0,
    now: Number(now),
    serving: Number(serving),
    waitingPlaced: Number(placed),
    waitingPool: Number(pool),
    inside: Number(inside),
    soldOut: soldOut === 1,
    started: started === 1,
    intervalUs: Number(interval),
    loadedAt: Number(loaded),
    version: Number(version),
    poolServed: Number(poolServed),
    more: more === 1,
    ticket: ticketOf(no, place, status, ends, rank),
  };
}

/** Reads a change announced on a sale's channel (see queue-advance-11.lua). @returns undefined when malformed. */
export function parseQueueChange(message: string): QueueSnapshot | undefined {
  const [head, ...users] = message.split(' ');
  const f = head!.split('|').map(Number);
  if (f.length !== 12 || f.some((n) => !Number.isFinite(n))) return undefined;
  const [loadedAt, version, now, serving, waitingPlaced, waitingPool, inside, soldOut, started, intervalUs, poolServed, sessionEnd] = f as [number, ...number[]];
  return {
    loaded: true,
    loadedAt,
    version: version!,
    now: now!,
    serving: serving!,
    waitingPlaced: waitingPlaced!,
    waitingPool: waitingPool!,
    inside: inside!,
    soldOut: soldOut === 1,
    started: started === 1,
    intervalUs: intervalUs!,
    poolServed: poolServed!,
    more: false,
    ...(users.length ? { admitted: { users, sessionEnd: sessionEnd! } } : {}),
  };
}

/**
 * Marks shoppers with open streams as present and reads their tickets (see `queue-touch-4.lua`).
 * @returns poolServed at the read, and each shopper's ticket (undefined when they have none), in `userIds` order.
 */
export async function touchTickets(redis: Redis, k: QueueKeys, userIds: string[]): Promise<{ poolServed: number; tickets: (Ticket | undefined)[] }> {
  const reply = await run(redis, 'queue-touch', [k.queue, k.tickets, k.seen, k.pool], userIds);
  if (!Array.isArray(reply) || reply.length !== 1 + 2 * userIds.length) throw unexpected('queue-touch', reply);
  const tickets: (Ticket | undefined)[] = [];
  for (let i = 1; i < reply.length; i += 2) {
    const m = /^(\d+)\|(-?\d+)\|([a-z])\|(\d+)$/.exec(String(reply[i]));
    tickets.push(m ? ticketOf(m[1], m[2], m[3], m[4], reply[i + 1]) : undefined);
  }
  return { poolServed: Number(reply[0]), tickets };
}

/** Settings as loaded into Redis. Times in ms. */
export interface QueueLoad {
  opensMs: number;
  startsMs: number;
  endsMs: number;
  admissionsPerMinute: number;
  cap: number;
  sessionMs: number;
  order: 'fifo' | 'random';
  seed: number;
}

/**
 * Loads a waiting room's settings unless Redis has them (see `queue-load-1.lua`). The admission interval is
 * rounded up to a whole µs, so admissions never exceed the configured rate (600,000 a minute is 100 µs exactly).
 * @returns true when loaded.
 */
export async function loadQueue(redis: Redis, k: QueueKeys, s: QueueLoad): Promise<boolean> {
  const intervalUs = Math.ceil(60_000_000 / s.admissionsPerMinute);
  const reply = await run(redis, 'queue-load', [k.queue], [s.opensMs, s.startsMs, s.endsMs, intervalUs, s.cap, s.sessionMs, s.order, s.seed]);
  return reply === 1;
}
