/**
 * Admission tokens: what an admitted shopper shows the purchase endpoint of a waiting-room sale, in the
 * `Admission-Token` header. A JWT (HS256, fast-jwt) with `sub` = shopper, `sale` = sale id, `aud` = "admission" and
 * `exp` = the end of the shopper's session, signed with a key derived from JWT_SECRET (so a shopper token is never
 * an admission token, nor the reverse). No `iat`, so one session's token is always the same string (stable ETags).
 */
import { createHmac } from 'node:crypto';
import type { RequestHandler } from 'express';
import { createSigner, createVerifier } from 'fast-jwt';
import { findWaitingRoom, knownWaitingRoom } from '../core/waiting-room/settings.ts';
import type { ApiDeps } from './deps.ts';
import { AppError } from './problem.ts';
import { canonicalUuid } from './validate.ts';

const AUDIENCE = 'admission';
const MAX_TOKEN_CHARS = 1024;

function admissionKey(secret: string): string {
  return createHmac('sha256', secret).update('admission-token').digest('base64url');
}

/** Mints an admission token. @param expiresAtMs - the session's end, ms. */
export function mintAdmissionToken(secret: string, userId: string, saleId: string, expiresAtMs: number): string {
  const sign = createSigner({ key: admissionKey(secret), algorithm: 'HS256', noTimestamp: true });
  return sign({ sub: userId, sale: saleId, aud: AUDIENCE, exp: Math.floor(expiresAtMs / 1000) });
}

function notAdmitted(saleId: string, detail: string): AppError {
  const queueUrl = `/api/sales/${saleId}/queue`;
  return new AppError('not-admitted', 403, detail, { queueUrl }, { Link: `<${queueUrl}>; rel="queue"` });
}

/**
 * Requires a valid admission token on purchases of a waiting-room sale (after `requireShopper`). A sale without a
 * waiting room costs one map lookup once its settings are in memory.
 * @throws (to next) AppError 403 not-admitted naming the queue URL: missing, expired, or another shopper's or sale's.
 */
export function requireAdmission(d: ApiDeps): RequestHandler {
  const verify = createVerifier({ key: admissionKey(d.config.JWT_SECRET), algorithms: ['HS256'], allowedAud: AUDIENCE, requiredClaims: ['sub', 'sale', 'exp'], cache: 10_000 });
  const check = (saleId: string, userId: string, token: string | undefined): AppError | undefined => {
    if (!token) return notAdmitted(saleId, 'This sale has a waiting room: join the queue, then buy with the Admission-Token it gives you.');
    if (token.length > MAX_TOKEN_CHARS) return notAdmitted(saleId, 'The admission token is not valid.');
    let claims: { sub?: unknown; sale?: unknown };
    try {
      claims = verify(token);
    } catch {
      return notAdmitted(saleId, 'The admission token is invalid or your session ended: join the queue again.');
    }
    if (claims.sub !== userId || claims.sale !== saleId) return notAdmitted(saleId, 'The admission token was issued to another shopper or sale.');
    return undefined;
  };
  return (req, _res, next) => {
    const saleId = canonicalUuid(req.params.saleId);
    if (saleId === undefined) return next(); // the route answers 404
    const known = knownWaitingRoom(saleId);
    if (known === null) return next();
    if (known) return next(check(saleId, req.userId!, req.get('Admission-Token')));
    findWaitingRoom(d.db, saleId).then(
      (w) => next(w ? check(saleId, req.userId!, req.get('Admission-Token')) : undefined),
      next,
    );
  };
}
