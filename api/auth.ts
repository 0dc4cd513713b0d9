/**
 * Authentication. Shoppers send a JWT (HS256, signed with JWT_SECRET, `sub` = user id, `exp` required) as
 * `Authorization: Bearer <token>` or in the `session` cookie (EventSource cannot send headers). The shop's own
 * login can mint such tokens; the demo login does so here. Admins send `Authorization: Bearer <ADMIN_TOKEN>`.
 *
 * fast-jwt verifies with node:crypto synchronously (about 9 µs a token here, against about 85 µs through
 * WebCrypto) and caches verified tokens until they expire, so a shopper's polling costs no HMAC.
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

function tokenOf(req: Request): string | undefined {
  const header = req.headers.authorization;
  if (header) return header.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
  const cookies = req.headers.cookie;
  return cookies ? parseCookie(cookies)[SESSION_COOKIE] : undefined;
}

declare module 'express-serve-static-core' {
  interface Request {
    /** The authenticated shopper's id (set by requireShopper). */
    userId?: string;
  }
}

/** Verified tokens cached per process, count. */
const VERIFIED_CACHE_SIZE = 100_000;

/** Requires a valid shopper token; sets `req.userId`. Garbage, expired or foreign tokens get 401, never a 5xx. */
export function requireShopper(secret: string): RequestHandler {
  const verify = createVerifier({ key: secret, algorithms: ['HS256'], requiredClaims: ['sub', 'exp'], cache: VERIFIED_CACHE_SIZE });
  return (req, _res, next) => {
    const token = tokenOf(req);
    if (!token) return next(problems.unauthorized());
    let payload: { sub?: unknown };
    try {
      payload = verify(token);
    } catch {
      return next(problems.unauthorized('The token is invalid or expired.'));
    }
    const sub = userIdSchema.safeParse(payload.sub);
    if (!sub.success) return next(problems.unauthorized('The token subject is not a valid user id.'));
    req.userId = sub.data;
    next();
  };
}

/** Requires `Authorization: Bearer <ADMIN_TOKEN>` (compared in constant time). */
export function requireAdmin(adminToken: string): RequestHandler {
  const expected = createHash('sha256').update(adminToken).digest();
  return (req, _res, next) => {
    const header = req.headers.authorization ?? '';
    const given = createHash('sha256').update(header.startsWith('Bearer ') ? header.slice(7) : '').digest();
    next(timingSafeEqual(given, expected) ? undefined : problems.unauthorized('Admin token required.'));
  };
}
