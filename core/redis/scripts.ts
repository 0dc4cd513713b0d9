/**
 * Typed wrappers around the Lua scripts in `./scripts`: one atomic operation per file, named
 * `<verb>-<numberOfKeys>.lua` (the layout BullMQ uses). Scripts are registered with ioredis `defineCommand` under a
 * versioned name, so two builds sharing one Redis never run each other's bodies; ioredis does EVALSHA with the EVAL
 * fallback. Every script is safe to run twice, because ioredis re-sends in-flight commands after a reconnect.
 */
import { readFileSync } from 'node:fs';
import type { ChainableCommander, Cluster, Redis } from 'ioredis';
import { purchaseKey, stockChannel, type SaleKeys } from './keys.ts';

const SCRIPT_VERSION = 'v3';
/** Each script's number of keys; `n`: as many as the call passes (declared first, as Redis Cluster requires). */
const scripts = { admit: 8, decide: 6, release: 3, withdraw: 8, load: 6, 'put-state': 1, 'put-states': 'n', end: 1 } as const;
type ScriptName = keyof typeof scripts;
const commandName = (name: ScriptName) => `fs_${name.replace('-', '_')}_${SCRIPT_VERSION}`;

/** Outcome codes of `admit-8.lua`. */
export enum AdmitCode {
  Admitted = 0,
  Replayed = 1,
  IdempotencyKeyReused = 2,
  SaleNotLoaded = 3,
  SaleNotActive = 4,
  OverLimit = 5,
  Duplicate = 6,
  SoldOut = 7,
  /** The request has a decision already (it was withdrawn): never admitted again. */
  Decided = 8,
}

/** Decision codes of `decide-6.lua`, also stored per request in the sale's decided hash. */
export enum Decision {
  Succeeded = 0,
  SoldOut = 1,
  OverLimit = 2,
  Withdrawn = 3,
  SaleNotLoaded = 4,
  Expired = 5,
  Failed = 6,
}

export type AdmitResult =
  | {
      code: AdmitCode.Replayed;
      /** The request first admitted with this idempotency key. */
      value: string;
      /** What it was admitted with, to publish it again: units, the sale's epoch, admission time (ms). */
      original: { quantity: number; epoch: string; admittedAt: number };
      /** Its decision, when Redis has one. */
      decision: Decision | undefined;
    }
  | {
      code: Exclude<AdmitCode, AdmitCode.Replayed>;
      /** Epoch, "upcoming"/"ended", limit or duplicate requestId, depending on the code. */
      value: string;
    };

export interface DecideResult {
  decision: Decision;
  /** True when the request was decided before (a redelivery): nothing changed this time. */
  replayed: boolean;
}

/** Registers every script on a client. Call once per ioredis client before using the wrappers below. */
export function defineScripts(redis: Redis | Cluster): void {
  for (const [name, numberOfKeys] of Object.entries(scripts) as [ScriptName, number | 'n'][]) {
    const lua = readFileSync(new URL(`./scripts/${name}-${numberOfKeys}.lua`, import.meta.url), 'utf8');
    // Without numberOfKeys, ioredis takes the count as the call's first argument (see `run`).
    redis.defineCommand(commandName(name), numberOfKeys === 'n' ? { lua } : { numberOfKeys, lua });
  }
}

type Runner = Redis | Cluster | ChainableCommander;
function run(client: Runner, name: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
  const fn = (client as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[commandName(name)];
  if (!fn) throw new Error(`Redis script ${name} is not defined on this client: call defineScripts() first`);
  return scripts[name] === 'n' ? fn.call(client, keys.length, ...keys, ...args) : fn.call(client, ...keys, ...args);
}

/** Checks that a script replied with `[integer, string|integer]`; a surprise is an error, not a guess. */
function pair(reply: unknown, script: string): [number, string] {
  if (Array.isArray(reply) && reply.length === 2 && typeof reply[0] === 'number') {
    return [reply[0], String(reply[1])];
  }
  throw new Error(`Unexpected reply from ${script}: ${JSON.stringify(reply)}`);
}

function integer(reply: unknown, script: string): number {
  if (typeof reply === 'number') return reply;
  throw new Error(`Unexpected reply from ${script}: ${JSON.stringify(reply)}`);
}

/** The keys an admission and a withdrawal touch, in the order of `admit-8.lua`'s header. */
function admissionKeys(keys: SaleKeys, idemKey: string, requestId: string): string[] {
  return [keys.sale, keys.held, keys.last, keys.inflight, keys.requests, keys.decided, idemKey, purchaseKey(keys.prefix, keys.saleId, requestId)];
}

/**
 * Admits a purchase request and stores its queued state (see `admit-8.lua`).
 * @param idemKey - the idempotency key's Redis key (any key of the sale's slot when the request has none).
 * @param a - `bodyHash` is "" when the request has no Idempotency-Key; `nowMs` in ms; `idemTtlS` in s; `state` is
 *   the queued state to store (body JSON, version, TTL in s).
 * @throws Error on a reply of an unexpected shape.
 */
export async function admit(
  redis: Redis | Cluster,
  keys: SaleKeys,
  idemKey: string,
  a: {
    requestId: string;
    userId: string;
    quantity: number;
    nowMs: number;
    bodyHash: string;
    idemTtlS: number;
    state: { body: string; version: number; ttlS: number };
  },
): Promise<AdmitResult> {
  const reply = await run(redis, 'admit', admissionKeys(keys, idemKey, a.requestId), [
    a.requestId,
    a.userId,
    a.quantity,
    a.nowMs,
    a.bodyHash,
    a.idemTtlS,
    a.state.body,
    a.state.version,
    a.state.ttlS,
  ]);
  if (!Array.isArray(reply) || typeof reply[0] !== 'number' || reply.length < 2) throw unexpected('admit', reply);
  const code = reply[0] as AdmitCode;
  if (code !== AdmitCode.Replayed) return { code, value: String(reply[1]) };
  if (reply.length !== 6) throw unexpected('admit', reply);
  const [, requestId, quantity, epoch, admittedAt, decision] = reply.map(String);
  return {
    code,
    value: requestId!,
    original: { quantity: Number(quantity), epoch: epoch!, admittedAt: Number(admittedAt) },
    decision: decision === '' ? undefined : (Number(decision) as Decision),
  };
}

function unexpected(script: string, reply: unknown): Error {
  return new Error(`Unexpected reply from ${script}: ${JSON.stringify(reply)}`);
}

/** Arguments of one decision: the purchase message's fields. */
export interface DecideArgs {
  requestId: string;
  userId: string;
  quantity: number;
  epoch: string;
}

/**
 * Decides purchases of one sale in one atomic call (see `decide-6.lua`), in order.
 * @returns the sale's epoch the decisions were taken under ("0" when the sale is not loaded), and one result per
 *   purchase in the order given. @throws Error on a reply of an unexpected shape.
 */
export async function decide(redis: Runner, keys: SaleKeys, purchases: DecideArgs[]): Promise<{ epoch: string; results: DecideResult[] }> {
  const args = purchases.flatMap((a) => [a.requestId, a.userId, a.quantity, a.epoch]);
  const reply = await run(redis, 'decide', [keys.sale, keys.held, keys.inflight, keys.requests, keys.decided, keys.last], args);
  if (!Array.isArray(reply) || reply.length !== 1 + purchases.length * 2 || !reply.slice(1).every((v) => typeof v === 'number')) {
    throw new Error(`Unexpected reply from decide: ${JSON.stringify(reply)}`);
  }
  return {
    epoch: String(reply[0]),
    results: purchases.map((_, i) => ({ decision: reply[1 + 2 * i] as Decision, replayed: reply[2 + 2 * i] === 1 })),
  };
}

/**
 * Returns a succeeded purchase's units to stock (see `release-3.lua`).
 * @param as - the decision to record instead: SoldOut, Expired or Failed.
 * @returns true when units went back to stock, false when there was nothing to release.
 */
export async function release(
  redis: Redis | Cluster,
  keys: SaleKeys,
  a: { requestId: string; userId: string; quantity: number; as: Decision },
): Promise<boolean> {
  const reply = await run(redis, 'release', [keys.sale, keys.held, keys.decided], [
    a.requestId,
    a.userId,
    a.quantity,
    a.as,
    stockChannel(keys.prefix),
    keys.saleId,
  ]);
  return integer(reply, 'release') === 1;
}

/** Outcomes of `withdraw-8.lua`. */
export enum WithdrawCode {
  /** The request had been decided before; see `decision`. */
  Decided = 0,
  /** It was inflight; everything it held is released and it is marked withdrawn. */
  Withdrawn = 1,
  /** It was not inflight (Redis was rebuilt since its admission): it is marked withdrawn. */
  Marked = 2,
}

/**
 * Withdraws an admission the API could not confirm in the queue (see `withdraw-8.lua`).
 * @returns the outcome and the decision Redis now holds for the request (Decision.Withdrawn unless decided before).
 * @throws Error on a reply of an unexpected shape, or when Redis is unavailable.
 */
export async function withdraw(
  redis: Redis | Cluster,
  keys: SaleKeys,
  idemKey: string,
  a: { requestId: string; userId: string; quantity: number },
): Promise<{ code: WithdrawCode; decision: Decision }> {
  const [code, decision] = pair(await run(redis, 'withdraw', admissionKeys(keys, idemKey, a.requestId), [a.requestId, a.userId, a.quantity]), 'withdraw');
  return { code: code as WithdrawCode, decision: Number(decision) as Decision };
}

/** A sale's state as PostgreSQL holds it, to load into Redis. */
export interface SaleSnapshot {
  stock: number;
  remaining: number;
  perUserLimit: number;
  startsAtMs: number;
  /** 0 when the sale has no end. */
  endsAtMs: number;
  /** PostgreSQL's `sales.epoch` for this load (a growing integer). */
  epoch: string;
  /** userId, units held by active orders, requestId of the latest of those orders. */
  buyers: [string, number, string][];
  /** requestId -> decision code, for every decision PostgreSQL holds. */
  decisions: [string, Decision][];
}

/** Loads a sale unless it is loaded with this epoch or a newer one (see `load-6.lua`). @returns true when loaded. */
export async function load(redis: Redis | Cluster, keys: SaleKeys, s: SaleSnapshot): Promise<boolean> {
  const reply = await run(redis, 'load', [keys.sale, keys.held, keys.last, keys.inflight, keys.requests, keys.decided], [
    s.stock,
    s.remaining,
    s.perUserLimit,
    s.startsAtMs,
    s.endsAtMs,
    s.epoch,
    s.buyers.length,
    ...s.buyers.flat(),
    ...s.decisions.flat(),
  ]);
  return integer(reply, 'load') === 1;
}

/**
 * Stores a purchase state version and publishes it (see `put-state-1.lua`); queue it on a pipeline or run it.
 * @returns (when run) true when stored, false when a newer version was there.
 */
export function putState(
  client: Runner,
  key: string,
  a: { version: number; body: string; ttlS: number; channel: string },
): Promise<unknown> {
  return run(client, 'put-state', [key], [a.version, a.body, a.ttlS, a.channel]);
}

/**
 * Stores and announces new versions of several purchase states of one sale in one call (see `put-states-n.lua`):
 * each as `putState` would. @param states - key (all of one sale's slot), version and body of each.
 * @param ttlS - their lifetime, s. @returns how many were stored (the others had a version as new or newer).
 */
export async function putStates(client: Runner, states: { key: string; version: number; body: string }[], ttlS: number): Promise<number> {
  if (states.length === 0) return 0;
  const args: (string | number)[] = [ttlS];
  for (const st of states) args.push(st.version, st.body);
  return integer(await run(client, 'put-states', states.map((st) => st.key), args), 'put-states');
}

/** Ends a loaded sale at `endsAtMs` unless it ends earlier (see `end-1.lua`). @returns true when the end was set. */
export async function endAt(redis: Redis | Cluster, keys: SaleKeys, endsAtMs: number): Promise<boolean> {
  return integer(await run(redis, 'end', [keys.sale], [endsAtMs]), 'end') === 1;
}
