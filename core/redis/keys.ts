/**
 * Redis key layout. Every key one script touches carries the sale's hash tag `{saleId}`, so a Redis Cluster keeps
 * them in one slot and the scripts stay atomic there (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags).
 * The prefix carries a version (`fs:v1`) so that two incompatible builds never read each other's data.
 */

/** The keys of one sale's hot state. Field meanings are documented in `scripts/admit-6.lua`. */
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

/** Builds the keys of sale `saleId` under `prefix` (e.g. `fs:v1`). */
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

/** String key remembering an Idempotency-Key of one shopper for one sale. */
export function idempotencyKey(prefix: string, saleId: string, userId: string, key: string): string {
  return `${prefix}:sale:{${saleId}}:idem:${userId}:${key}`;
}

/** Hash holding the shopper-visible state of one purchase request (its own slot: it is read by requestId alone). */
export function purchaseKey(prefix: string, requestId: string): string {
  return `${prefix}:purchase:{${requestId}}`;
}

/** Pub/sub channel announcing each new version of a purchase's state, to every API node. */
export function purchaseChannel(prefix: string, requestId: string): string {
  return `${prefix}:purchase:{${requestId}}:events`;
}

/** Set of the ids of every sale loaded into Redis, walked by the worker's sweeper. */
export function loadedSalesKey(prefix: string): string {
  return `${prefix}:sales`;
}

/** Pub/sub channel announcing (message: the sale id) that units of a sale went back on sale. */
export function stockChannel(prefix: string): string {
  return `${prefix}:stock-returned`;
}
