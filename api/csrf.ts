/**
 * CSRF defence: a browser attaches the `session` cookie to any cross-site form or fetch (SameSite=Lax does not cover
 * sibling subdomains), but it never lets another site set `Authorization`. So a state-changing request (anything
 * but GET, HEAD, OPTIONS) must carry `Authorization`; the cookie only authenticates reads and EventSource. The demo
 * login is the one exception: it creates a session and needs none. Checked before the body is looked at, so a
 * cookie-only form post gets 401 whatever its content type.
 */
import type { RequestHandler } from 'express';
import { problems } from './problem.ts';

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);
const OPEN_PATHS = new Set(['/api/session']);

export const requireAuthorizationHeader: RequestHandler = (req, _res, next) => {
  if (SAFE.has(req.method) || req.headers.authorization !== undefined || OPEN_PATHS.has(req.path)) return next();
  next(problems.unauthorized('State-changing requests need Authorization: Bearer <token>; the session cookie is not enough.'));
};
