/**
 * Authentication. Shoppers send a JWT (HS256, signed with JWT_SECRET, `sub` = user id, `exp` required) as
 * `Authorization: Bearer <token>` or in the `session` cookie (EventSource cannot send headers). The shop's own
 * login can mint such tokens; the demo login does so here. Admins send `Authorization: Bearer <ADMIN_TOKEN>`.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import { parse as parseCookie } from 'cookie';
import type { RequestHandler, Request } from 'express';
import { jwtVerify, SignJWT } from 'jose';
import { userIdSchema } from '../core/messages.ts';
import { problems } from './problem.ts';

export const SESSION_COOKIE = 'session';

/** Mints a shopper token. @returns the token and its expiry. */
export async function mintToken(secret: string, userId: string, ttlS: number): Promise<{ token: string; expiresAt: Date }> {
  const expiresAt = new Date(Math.floor(Date.now() / 1000 + ttlS) * 1000);
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
    .sign(new TextEncoder().encode(secret));
  return { token, expiresAt };
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

/**
 * Requires a valid shopper token; sets `req.userId`. Garbage, expired or foreign tokens get 401, never a 5xx.
 */
export function requireShopper(secret: string): RequestHandler {
  const key = new TextEncoder().encode(secret);
  return async (req, _res, next) => {
    const token = tokenOf(req);
    if (!token) return next(problems.unauthorized());
    try {
      const { payload } = await jwtVerify(token, key, { algorithms: ['HS256'], requiredClaims: ['sub', 'exp'] });
      const sub = userIdSchema.safeParse(payload.sub);
      if (!sub.success) return next(problems.unauthorized('The token subject is not a valid user id.'));
      req.userId = sub.data;
      next();
    } catch {
      next(problems.unauthorized('The token is invalid or expired.'));
    }
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
