/**
 * Canonical identifiers. `z.uuid()` accepts any letter case and PostgreSQL compares UUIDs without it, but Redis
 * keys and in-memory maps do not: an id that reaches a key in another casing splits one sale into many (its own
 * Redis copy, its own epoch, its own per-shopper limit). So every UUID from outside (route params, bodies, queue
 * messages) goes through here once, at the edge, and only its lower-case form travels further (RFC 9562 §4: UUIDs
 * are output in lower case and compared case-insensitively).
 */
import { z } from 'zod';

/** The layout `z.uuid()` checks (versions 1 to 8, the RFC variant), plus the nil and max UUIDs. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const NIL = '00000000-0000-0000-0000-000000000000';
const MAX = 'ffffffff-ffff-ffff-ffff-ffffffffffff';

/**
 * The canonical (lower-case) form of a UUID. @param value - anything a client sent.
 * @returns the canonical id, or undefined when `value` is not a UUID (callers answer 404 or 400).
 */
export function canonicalUuid(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length !== 36) return undefined;
  const id = value.toLowerCase();
  return UUID.test(id) || id === NIL || id === MAX ? id : undefined;
}

/** A zod schema accepting a UUID in any case and producing its canonical form (checked and lowered once). */
export const uuidSchema = z.string().transform((v, ctx) => {
  const id = canonicalUuid(v);
  if (id !== undefined) return id;
  ctx.addIssue({ code: 'custom', message: 'must be a UUID', input: v });
  return z.NEVER;
});
