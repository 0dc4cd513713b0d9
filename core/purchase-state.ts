/**
 * The shopper-visible state of a purchase request, kept in Redis in its sale's slot and announced on its own
 * sharded pub/sub channel at each new version (the queued version is written by the admission script itself). PostgreSQL keeps the final decisions (table `purchases`) for when Redis
 * has lost them.
 */
import type { RedisClient } from './redis/client.ts';
import { purchaseChannel, purchaseKey } from './redis/keys.ts';
import { putState } from './redis/scripts.ts';

export type PurchaseStatus = 'queued' | 'succeeded' | 'sold_out' | 'rejected' | 'failed';

/** Stored state. `version` grows with each change (1 = queued, 2 = final); it is the SSE event id and the ETag. */
export interface PurchaseState {
  requestId: string;
  saleId: string;
  userId: string;
  status: PurchaseStatus;
  orderId?: string;
  /** On success: when the reservation expires unless paid (ISO 8601). */
  expiresAt?: string;
  reason?: string;
  /** When the API accepted the request (ISO 8601); absent in states rebuilt from PostgreSQL. */
  acceptedAt?: string;
  /** ISO 8601. */
  updatedAt: string;
  version: number;
}

/** What the owner sees: the state without the owner's id and version. */
export type PurchaseView = Omit<PurchaseState, 'userId' | 'version'>;

export const QUEUED_VERSION = 1;
export const FINAL_VERSION = 2;
/** Purchase states stay in Redis this long, s. */
export const STATE_TTL_S = 7 * 24 * 3600;

export function isFinal(status: PurchaseStatus): boolean {
  return status !== 'queued';
}

export function toView(s: PurchaseState): PurchaseView {
  const { userId: _u, version: _v, ...view } = s;
  return view;
}

/** Arguments of {@link putState} for a state: persist, then publish, atomically, only if newer. */
export function stateWrite(prefix: string, s: PurchaseState) {
  return {
    key: purchaseKey(prefix, s.saleId, s.requestId),
    args: { version: s.version, body: JSON.stringify(s), ttlS: STATE_TTL_S, channel: purchaseChannel(prefix, s.saleId, s.requestId) },
  };
}

/** Stores and announces a state. @returns true when stored, false when a newer version was there. */
export async function writeState(redis: RedisClient, prefix: string, s: PurchaseState): Promise<boolean> {
  const w = stateWrite(prefix, s);
  return (await putState(redis, w.key, w.args)) === 1;
}

/** Reads a state. @returns undefined when Redis has none. @throws on a stored body that is not a state. */
export async function readState(redis: RedisClient, prefix: string, saleId: string, requestId: string): Promise<PurchaseState | undefined> {
  const body = await redis.hget(purchaseKey(prefix, saleId, requestId), 'body');
  return body ? (JSON.parse(body) as PurchaseState) : undefined;
}
