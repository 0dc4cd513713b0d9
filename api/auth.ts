/**
 * Authentication. Shoppers send a JWT (HS256, signed with JWT_SECRET, `sub` = user id, `exp` required) as
 * `Authorization: Bearer <token>` or in the `session` cookie (EventSource cannot send headers). The shop's own
 * login can mint such tokens; the demo login does so here. Admins send `Authorization: Bearer <ADMIN_TOKEN>`.
 *
 * fast-jwt verifies with node:crypto synchronously (about 9 µs a token here, against about 85 µs through
 * WebCrypto); verified tokens are cached until they expire, so a shopper's polling costs no HMAC.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import { parse as parseCookie } from 'cookie';
import type { RequestHandler, Request } from 'express';
import { createSigner, createVerifier } from 'fast-jwt';
import { userIdSchema } from '../core/messages.ts';
import { problems } from './problem.ts';

export const SESSION_COOKIE = 'session';

/** Mints a shopper token (HS256, `sub`, `iat`, `exp`). @param ttlS - lifetime, s. @returns the token and its expiry. */
export async function mintToken(secret: string, userId: string, ttlS: number): Promise<{ token: string; expiresAt: Date }> {
  const exp = Math.floor(Date.now() / 1000 + ttlS);
  const token = createSigner({ key: secret, algorithm: 'HS256' })({ sub: userId, exp });
  return { token, expiresAt: new Date(exp * 1000) };
}

/** Tokens above this size are refused before any verification or caching, bytes (ours are about 200). */
export const MAX_TOKEN_BYTES = 4096;
const BEARER = /^bearer[ \t]+(\S+)[ \t]*$/i;

/**
 * The bearer token of a request: from `Authorization` (the scheme is case-insensitive, RFC 9110 §11.1), or from
 * the `session` cookie on reads only (GET, HEAD: what EventSource and the demo page's reads need). A cookie is sent
 * by the browser on any cross-site form or fetch, so it never authenticates a state-changing request (CSRF).
 */
function tokenOf(req: Request): string | undefined {
  const header = req.headers.authorization;
  if (header) return BEARER.exec(header)?.[1];
  if (req.method !== 'GET' && req.method !== 'HEAD') return undefined;
  const cookies = req.headers.cookie;
  return cookies ? parseCookie(cookies)[SESSION_COOKIE] : undefined; // Node caps all headers at 16 KiB
}

declare module 'express-serve-static-core' {
  interface Request {
    /** The authenticated shopper's id (set by requireShopper). */
    userId?: string;
  }
}

/** Verified tokens cached per process, count: at most about 2 MB of ~200-byte tokens with their user ids. */
const VERIFIED_CACHE_SIZE = 10_000;

/**
 * Successful verifications only, until the token's `exp`, least recently used first out. fast-jwt's own cache
 * also keeps failed verifications (with an already expired TTL, but they take a slot): forged tokens would fill
 * it with what an attacker chose. Here an entry exists only for a token our secret signed.
 */
class VerifiedTokens {
  private readonly entries = new Map<string, { userId: string; expMs: number }>();
  constructor(private readonly max: number) {}

  get(token: string, now: number): string | undefined {
    const e = this.entries.get(token);
    if (!e) return undefined;
    this.entries.delete(token);
    if (e.expMs <= now) return undefined;
    this.entries.set(token, e); // most recently used last
    return e.userId;
  }

  set(token: string, userId: string, expMs: number): void {
    this.entries.delete(token);
    if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(token, { userId, expMs });
  }

  get size(): number {
    return this.entries.size;
  }
}

const verifiers = new Map<string, { verify: (token: string) => { sub?: unknown; exp?: unknown }; cache: VerifiedTokens }>();

/** One verifier and cache per secret, shared by every router of the process. */
function verifierFor(secret: string) {
  let v = verifiers.get(secret);
  if (!v) {
    v = { verify: createVerifier({ key: secret, algorithms: ['HS256'], requiredClaims: ['sub', 'exp'] }), cache: new VerifiedTokens(VERIFIED_CACHE_SIZE) };
    verifiers.set(secret, v);
  }
  return v;
}

/** Tokens in the verified-token cache of `secret`, count (for tests and metrics). */
export function verifiedTokenCacheSize(secret: string): number {
  return verifiers.get(secret)?.cache.size ?? 0;
}

/**
 * Requires a valid shopper token; sets `req.userId`. Garbage, oversized, expired or foreign tokens get 401, never a
 * 5xx; a state-changing request must carry the token in `Authorization` (the cookie alone gets 401).
 */
export function requireShopper(secret: string): RequestHandler {
  const { verify, cache } = verifierFor(secret);
  return (req, _res, next) => {
    const token = tokenOf(req);
    if (!token) return next(problems.unauthorized());
    if (token.length > MAX_TOKEN_BYTES) return next(problems.unauthorized('The token is too large.'));
    const now = Date.now();
    const cached = cache.get(token, now);
    if (cached !== undefined) {
      req.userId = cached;
      return next();
    }
    let payload: { sub?: unknown; exp?: unknown };
    try {
      payload = verify(token);
    } catch {
      return next(problems.unauthorized('The token is invalid or expired.'));
    }
    const sub = userIdSchema.safeParse(payload.sub);
    if (!sub.success) return next(problems.unauthorized('The token subject is not a valid user id.'));
    cache.set(token, sub.data, Number(payload.exp) * 1000);
    req.userId = sub.data;
    next();
  };
}

/**
 * Requires `Authorization: Bearer <ADMIN_TOKEN>` (compared in constant time). @param onFailure - told of each wrong
 * token before the 401 (the failure budget of rate-limit.ts).
 */
export function requireAdmin(adminToken: string, onFailure: (req: Request) => Promise<void> = async () => undefined): RequestHandler {
  const expected = createHash('sha256').update(adminToken).digest();
  return (req, _res, next) => {
    const given = createHash('sha256').update(BEARER.exec(req.headers.authorization ?? '')?.[1] ?? '').digest();
    if (timingSafeEqual(given, expected)) return next();
    onFailure(req).then(() => next(problems.unauthorized('Admin token required.')), next);
  };
}
