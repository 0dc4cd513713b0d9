/**
 * A sale's optional waiting room: its settings at creation (stored in PostgreSQL's `waiting_rooms`, created with
 * the sale in one statement), their public view, and loading them into Redis. Settings never change once created,
 * so a process keeps what it read, including "this sale has none" (the purchase path's one branch).
 */
import { randomInt } from 'node:crypto';
import type { RedisClient as Redis } from '../redis/client.ts';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { loadQueue, queueKeys } from './scripts.ts';
import { saleExists } from '../sales.ts';

/** The admin API's `waitingRoom` member of a new sale. */
export const waitingRoomInput = z.strictObject({
  /** When the pre-queue opens (ISO 8601, at or before startsAt); default: now. */
  opensAt: z.iso.datetime({ offset: true }).optional(),
  admissionsPerMinute: z.int().min(1).max(600_000),
  /** Most shoppers admitted and not yet done at once, count. */
  maxInside: z.int().min(1).max(1_000_000),
  /** Time an admitted shopper has to buy, s. */
  sessionSeconds: z.int().min(10).max(86_400).default(300),
  order: z.enum(['fifo', 'random']).default('fifo'),
  /**
   * Proof of work to join (ALTCHA, see api/queue-door.ts): each challenge hides a number in 1..maxNumber that the
   * shopper's browser finds by trying SHA-256 hashes, maxNumber / 2 of them on average (maxNumber at worst).
   * Absent: joining needs none.
   */
  proofOfWork: z.strictObject({ maxNumber: z.int().min(1).max(10_000_000) }).optional(),
});
export type WaitingRoomInput = z.output<typeof waitingRoomInput>;

export interface WaitingRoom {
  saleId: string;
  opensAt: Date;
  admissionsPerMinute: number;
  maxInside: number;
  sessionSeconds: number;
  order: 'fifo' | 'random';
  shuffleSeed: number;
  /** ALTCHA's maxnumber of the door's challenges (see waitingRoomInput), null: no proof of work. */
  powMaxNumber: number | null;
}

/** The Prisma nested create of a sale's waiting room (a fresh shuffle seed in 1..2^31-2). */
export function waitingRoomCreate(w: WaitingRoomInput, startsAt: Date) {
  return {
    create: {
      opensAt: w.opensAt ? new Date(w.opensAt) : new Date(Math.min(Date.now(), startsAt.getTime())),
      admissionsPerMinute: w.admissionsPerMinute,
      maxInside: w.maxInside,
      sessionSeconds: w.sessionSeconds,
      order: w.order,
      shuffleSeed: randomInt(1, 2147483646),
      powMaxNumber: w.proofOfWork?.maxNumber ?? null,
    },
  };
}

const known = new Map<string, WaitingRoom | null>();
const KNOWN_MAX = 10_000;

/** This process's memory of a sale's waiting room: the room, null (none), or undefined (not read yet). */
export function knownWaitingRoom(saleId: string): WaitingRoom | null | undefined {
  return known.get(saleId);
}

/** Remembers what was read with a sale (see core/sales.ts). */
export function rememberWaitingRoom(saleId: string, w: WaitingRoom | null): void {
  if (known.size >= KNOWN_MAX) known.clear();
  known.set(saleId, w);
}

/**
 * Reads a sale's waiting room (from memory once read). @returns null when the sale has none, undefined when there
 * is no such sale.
 */
export async function findWaitingRoom(db: Db, saleId: string): Promise<WaitingRoom | null | undefined> {
  const k = known.get(saleId);
  if (k !== undefined) return k;
  if (!(await saleExists(db, saleId))) return undefined; // a flood of unknown ids costs no query each
  const sale = await db.sale.findUnique({ where: { id: saleId }, select: { id: true, waitingRoom: true } });
  if (!sale) return undefined;
  const w = sale.waitingRoom ? (sale.waitingRoom as WaitingRoom) : null;
  rememberWaitingRoom(saleId, w);
  return w;
}

/** The public view, in GET /api/sales/:id. */
export function waitingRoomView(w: WaitingRoom | null) {
  if (!w) return null;
  return {
    opensAt: w.opensAt.toISOString(),
    admissionsPerMinute: w.admissionsPerMinute,
    maxInside: w.maxInside,
    sessionSeconds: w.sessionSeconds,
    order: w.order,
    proofOfWork: w.powMaxNumber ? { maxNumber: w.powMaxNumber, challengeUrl: `/api/sales/${w.saleId}/queue/challenge` } : null,
  };
}

/** Loads a waiting room's settings into Redis unless there (a Redis that lost them starts an empty queue). */
export async function loadWaitingRoom(
  redis: Redis,
  prefix: string,
  w: WaitingRoom,
  sale: { startsAt: Date; endsAt: Date | null },
): Promise<void> {
  await loadQueue(redis, queueKeys(prefix, w.saleId), {
    opensMs: w.opensAt.getTime(),
    startsMs: sale.startsAt.getTime(),
    endsMs: sale.endsAt?.getTime() ?? 0,
    admissionsPerMinute: w.admissionsPerMinute,
    cap: w.maxInside,
    sessionMs: w.sessionSeconds * 1000,
    order: w.order,
    seed: w.shuffleSeed,
  });
}
