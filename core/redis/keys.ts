/**
 * Redis key layout. Every key of a sale, and of every purchase request made in it, carries the sale's hash tag
 * `{saleId}`, so a Redis Cluster keeps them in one slot: the scripts stay atomic there, the admission script can
 * write the request's queued state in the same call, and a purchase's notifications go over sharded pub/sub to the
 * shard that holds them (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags).
 * The few keys that belong to no sale carry a tag of their own. The prefix carries a version (`fs:v2`) so that two
 * incompatible builds never read each other's data.
 *
 * The price of the layout: one hot sale lives on one shard (its slot), whatever the cluster's size.
 */
import { createHash } from 'node:crypto';

/** The keys of one sale's hot state. Field meanings are documented in `scripts/admit-7.lua`. */
export interface SaleKeys {
  /** The key prefix and sale these keys belong to. */
  prefix: string;
  saleId: string;
  /** Hash: stock, remaining, pending, limit, starts, ends, epoch. */
  sale: string;
  /** Hash: userId -> units held by live requests and active orders. */
  held: string;
  /** Hash: userId -> latest admitted requestId. */
  last: string;
  /** Sorted set: requestId -> admission time (ms), admitted and not yet decided. */
  inflight: string;
  /** Hash: requestId -> "quantity|userId" of each inflight request. */
  requests: string;
  /** Hash: requestId -> decision code. */
  decided: string;
}

/** Builds the keys of sale `saleId` under `prefix` (e.g. `fs:v2`). */
export function saleKeys(prefix: string, saleId: string): SaleKeys {
  const base = `${prefix}:sale:{${saleId}}`;
  return {
    prefix,
    saleId,
    sale: base,
    held: `${base}:held`,
    last: `${base}:last`,
    inflight: `${base}:inflight`,
    requests: `${base}:requests`,
    decided: `${base}:decided`,
  };
}

/**
 * String key remembering an Idempotency-Key of one shopper for one sale (`key` "" for a request without one). The
 * shopper and the key are hashed together with the shopper id's length in front, so no two different (shopper, key)
 * pairs can share a Redis key (`tenant` + `bob:K` and `tenant:bob` + `K` differ).
 */
export function idempotencyKey(prefix: string, saleId: string, userId: string, key: string): string {
  // No key (""): the scripts still need a key of the sale's slot in its place; this one is never written (no digest
  // is "-"), and most purchases skip the hash.
  if (key === '') return `${prefix}:sale:{${saleId}}:idem:-`;
  const digest = createHash('sha256').update(`${userId.length}:${userId}|${key}`).digest('base64url');
  return `${prefix}:sale:{${saleId}}:idem:${digest}`;
}

/** Hash holding the shopper-visible state of one purchase request, in its sale's slot. */
export function purchaseKey(prefix: string, saleId: string, requestId: string): string {
  return `${prefix}:sale:{${saleId}}:purchase:${requestId}`;
}

/**
 * Sharded pub/sub channel announcing each new version of a purchase's state (in its sale's slot): the state key's
 * own name, which lets put-states-n.lua announce each state it stores without a channel argument.
 */
export function purchaseChannel(prefix: string, saleId: string, requestId: string): string {
  return purchaseKey(prefix, saleId, requestId);
}

/** Set of the ids of every sale loaded into Redis, walked by the worker's sweeper. */
export function loadedSalesKey(prefix: string): string {
  return `${prefix}:{sales}:loaded`;
}

/**
 * Pub/sub channel announcing (message: the sale id) that units of a sale went back on sale. Plain pub/sub on
 * purpose: every API node wants every sale's notice, and it is rare.
 */
export function stockChannel(prefix: string): string {
  return `${prefix}:stock-returned`;
}

/**
 * Hash of the workers' latest one-second digests of accepted→final latency (field: worker id, value: JSON
 * `{ at, count, p50, p99 }`, ms), read by the operator dashboard. Its own slot: it belongs to no sale.
 */
export function latencyDigestKey(prefix: string): string {
  return `${prefix}:{ops}:latency`;
}

/**
 * String key marking one proof-of-work solution as spent at a sale's waiting-room door (see api/queue-door.ts), in
 * the sale's slot. `challenge` is the challenge's SHA-256 in hex: unique per challenge, and only the server can
 * sign one, so clients cannot choose what is stored.
 */
export function doorSolutionKey(prefix: string, saleId: string, challenge: string): string {
  return `${prefix}:sale:{${saleId}}:queue:door:${challenge}`;
}
