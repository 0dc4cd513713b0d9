/**
 * Proof of work at a waiting room's door: a sale whose waiting room asks for it (`proofOfWork.maxNumber`) takes a
 * new ticket only from a shopper who solved an ALTCHA challenge, self-hosted with altcha-lib's v1 API
 * (`altcha-lib/v1`, https://altcha.org/docs/proof-of-work/). The challenge hides a number in 1..maxNumber behind
 * SHA-256(salt + number); the browser tries numbers until the hash matches, maxNumber / 2 hashes on average. The
 * server pays one SHA-256 and one HMAC to issue or to check one, whatever the difficulty (v2's key-derivation
 * puzzles would make it pay the derivation too).
 *
 * - A challenge is stateless: its salt carries `expires`, `sale` and `sub` (the shopper), and it is signed with a
 *   key derived from JWT_SECRET. Issuing one writes nothing anywhere.
 * - A solution is spent once: SET NX of the challenge's hash under the sale's hash tag, kept until the challenge
 *   expires plus the clock skew allowed between API nodes (each node judges expiry by its own clock). A join that
 *   creates no ticket (queue not open, sold out, ended, an outage) gives the solution back.
 * - A shopper who already holds a ticket needs no solution: joining again answers the same ticket and creates
 *   nothing, like `GET …/queue/me`, and the solution that made the ticket was spent with it (a client whose 201
 *   was lost would otherwise be asked to work again for what it has).
 */
import { createHmac } from 'node:crypto';
import { createChallenge, extractParams, verifySolution } from 'altcha-lib/v1';
import type { Challenge } from 'altcha-lib/v1/types';
import { z } from 'zod';
import { doorSolutionKey } from '../core/redis/keys.ts';
import { queueKeys } from '../core/waiting-room/scripts.ts';
import type { WaitingRoom } from '../core/waiting-room/settings.ts';
import type { ApiDeps } from './deps.ts';
import { AppError, type ProblemSlug } from './problem.ts';
import { joinWaitingRoom, type QueueAnswer } from './queue-service.ts';

/** How long a challenge may be solved and used, ms: minutes of work at the largest maxNumber on a slow phone. */
export const CHALLENGE_TTL_MS = 5 * 60_000;
/** Clock skew allowed between API nodes, ms: a spent solution is remembered this much longer than it is valid. */
const CLOCK_SKEW_MS = 60_000;
/** Longest `altcha` member taken, chars: ours are about 500 (a 128-character shopper id, percent-encoded, included). */
export const MAX_SOLUTION_CHARS = 2048;

/** The join body: `altcha`, the solution as ALTCHA's widget sends it (base64 of the JSON payload). */
export const joinBody = z.strictObject({
  altcha: z.string().min(1).max(MAX_SOLUTION_CHARS).optional().meta({
    description: 'Proof of work, when the sale asks for it: base64 of {algorithm, challenge, number, salt, signature}',
  }),
});

/** The payload ALTCHA's v1 widget submits; other members (its `took`) are ignored. */
const solutionPayload = z.object({
  algorithm: z.literal('SHA-256'),
  challenge: z.string().regex(/^[0-9a-f]{64}$/),
  number: z.int().min(0),
  salt: z.string().max(MAX_SOLUTION_CHARS),
  signature: z.string().regex(/^[0-9a-f]{64}$/),
});

/** A challenge as altcha-lib makes it (what ALTCHA's widget reads), with its expiry in ISO 8601. */
export type DoorChallenge = Challenge & { expiresAt: string };

/** A solution spent on a join: `refund` gives it back when the join created no ticket. */
interface Spent {
  refund(): Promise<void>;
}

/** The HMAC key of challenges: derived from JWT_SECRET, so it signs nothing else and needs no variable of its own. */
export function doorKey(jwtSecret: string): string {
  return createHmac('sha256', jwtSecret).update('queue-door').digest('base64url');
}

const challengeUrlOf = (saleId: string) => `/api/sales/${saleId}/queue/challenge`;

function refused(slug: ProblemSlug, saleId: string, detail: string): AppError {
  const challengeUrl = challengeUrlOf(saleId);
  return new AppError(slug, 403, detail, { challengeUrl }, { Link: `<${challengeUrl}>; rel="challenge"` });
}

/**
 * Issues a challenge for `userId` at sale `w`'s door. Costs one random salt, one SHA-256 and one HMAC (about 0.1 ms
 * of CPU through WebCrypto); stores nothing.
 * @param now - ms since the epoch. @returns the challenge, expiring CHALLENGE_TTL_MS from now.
 * @throws AppError 404 not-found when the sale asks for no proof of work.
 */
export async function issueChallenge(jwtSecret: string, w: WaitingRoom, userId: string, now = Date.now()): Promise<DoorChallenge> {
  if (!w.powMaxNumber) throw new AppError('not-found', 404, `Sale ${w.saleId} asks for no proof of work: join directly.`);
  const expires = new Date(now + CHALLENGE_TTL_MS);
  const challenge = await createChallenge({ hmacKey: doorKey(jwtSecret), maxNumber: w.powMaxNumber, expires, params: { sale: w.saleId, sub: userId } });
  // altcha-lib writes `expires` in whole seconds: say what it checks.
  return { ...challenge, expiresAt: new Date(Math.floor(expires.getTime() / 1000) * 1000).toISOString() };
}

/** Decodes the `altcha` member. @returns the payload, or undefined for anything that is not one. */
function decode(altcha: string): z.output<typeof solutionPayload> | undefined {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(altcha, 'base64').toString('utf8'));
  } catch {
    return undefined;
  }
  const r = solutionPayload.safeParse(json);
  return r.success ? r.data : undefined;
}

/**
 * Checks and spends a solution at sale `w`'s door for `userId`.
 * @returns undefined when none is needed (the sale asks for none, or the shopper holds a ticket), else the spent
 *   solution. @throws AppError 403 proof-of-work-required (none sent), proof-of-work-invalid (not a payload, not
 *   signed by us, another sale's or shopper's), proof-of-work-expired, proof-of-work-replayed (spent already), each
 *   naming `challengeUrl`; Redis errors (503 by the central handler).
 */
async function spendSolution(d: ApiDeps, w: WaitingRoom, userId: string, altcha: string | undefined): Promise<Spent | undefined> {
  if (!w.powMaxNumber) return undefined;
  const prefix = d.config.REDIS_KEY_PREFIX;
  if (await d.redis.hexists(queueKeys(prefix, w.saleId).tickets, userId)) return undefined;
  const saleId = w.saleId;
  if (altcha === undefined) {
    throw refused('proof-of-work-required', saleId, `This sale asks for proof of work: GET ${challengeUrlOf(saleId)}, solve it, and send the solution as "altcha".`);
  }
  const payload = decode(altcha);
  if (!payload || !(await verifySolution(payload, doorKey(d.config.JWT_SECRET), false))) {
    throw refused('proof-of-work-invalid', saleId, 'The solution does not solve a challenge of ours: fetch a new challenge and solve it.');
  }
  const params = extractParams(payload);
  if (params.sale !== saleId || params.sub !== userId) {
    throw refused('proof-of-work-invalid', saleId, 'The solution belongs to another sale or shopper: fetch a challenge of your own for this sale.');
  }
  const expiresMs = Number(params.expires) * 1000;
  const now = Date.now();
  if (!Number.isFinite(expiresMs)) throw refused('proof-of-work-invalid', saleId, 'The challenge carries no expiry: fetch a new one.');
  if (expiresMs <= now) throw refused('proof-of-work-expired', saleId, 'The challenge expired before it was used: fetch a new one and solve it.');
  const key = doorSolutionKey(prefix, saleId, payload.challenge);
  const set = await d.redis.set(key, userId, 'PX', expiresMs - now + CLOCK_SKEW_MS, 'NX');
  if (set !== 'OK') throw refused('proof-of-work-replayed', saleId, 'This solution was used already: fetch a new challenge and solve it.');
  return {
    async refund() {
      await d.redis.del(key).catch(() => undefined); // Redis gone: the solution stays spent, the shopper solves again
    },
  };
}

/**
 * Joins sale `w`'s waiting room through its door: the proof of work first when the sale asks for it and the shopper
 * holds no ticket, then the join itself (api/queue-service.ts). A join that created no ticket refunds the solution.
 * @returns what joinWaitingRoom returns. @throws the door's AppErrors (see spendSolution), then the join's.
 */
export async function joinThroughDoor(d: ApiDeps, w: WaitingRoom, userId: string, altcha: string | undefined): Promise<{ created: boolean; answer: QueueAnswer }> {
  const spent = await spendSolution(d, w, userId, altcha);
  let joined: { created: boolean; answer: QueueAnswer };
  try {
    joined = await joinWaitingRoom(d, w.saleId, userId);
  } catch (err) {
    await spent?.refund();
    throw err;
  }
  if (!joined.created) await spent?.refund();
  return joined;
}
