/**
 * Demo login: `POST /api/session {userId}` mints a shopper token and sets it as the `session` cookie. On when
 * DEMO_LOGIN=true (the default outside production); in production tokens come from the shop's own login.
 */
import { Router } from 'express';
import { z } from 'zod';
import { userIdSchema } from '../../core/messages.ts';
import { mintToken, SESSION_COOKIE } from '../auth.ts';
import type { ApiDeps } from '../deps.ts';
import { problems } from '../problem.ts';
import { rateLimitsOf } from '../rate-limit.ts';
import { parse } from '../validate.ts';

export const sessionBody = z.strictObject({ userId: userIdSchema });

export function sessionRoutes(d: ApiDeps): Router {
  const r = Router();
  r.post('/api/session', rateLimitsOf(d).login, async (req, res) => {
    if (!d.config.DEMO_LOGIN) throw problems.notFound('The demo login is off; use the shop login.');
    const { userId } = parse(sessionBody, req.body ?? {}, 'body');
    const { token, expiresAt } = await mintToken(d.config.JWT_SECRET, userId, d.config.SESSION_TTL_SECONDS);
    res.cookie(SESSION_COOKIE, token, {
      httpOnly: true,
      sameSite: 'lax',
      secure: d.config.NODE_ENV === 'production',
      path: '/',
      expires: expiresAt,
    });
    res.json({ token, userId, expiresAt: expiresAt.toISOString() });
  });
  return r;
}
