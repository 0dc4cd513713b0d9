/**
 * Request logs: one pino line per answer (`request completed`, or `request aborted` when the client left first),
 * carrying a request id (the caller's `X-Request-Id` when it is a plain token of at most 128 characters, else a new
 * UUID), echoed in the response's `X-Request-Id`. Only the method, the path (no query string), the route template,
 * the status, the time taken, the client address and the user agent are logged: never a header, so never a token
 * or a cookie. The line has pino-http's shape (`req`, `res`, `responseTime`), so tools reading either agree.
 *
 * Quiet on the hot paths: the routine answers of the purchase routes (202, 304, and the expected 409s), of the
 * status reads and of the waiting room's ticket reads and streams are logged for a sample of REQUEST_LOG_SAMPLE of
 * them (a flash crowd would otherwise write a line per shopper); every 4xx elsewhere is logged at `info`, every 5xx
 * at `error`. Probes and scrapes (`/healthz`, `/readyz`, `/metrics`) are not logged.
 *
 * Why not pino-http, which this replaced: it builds a child logger (and serialises its bindings) for every request,
 * before anyone knows whether the answer will be logged; measured with `npm run bench`'s CPU profile, that was about
 * 8% of the accept path's CPU for lines written for 1% of its answers. Here an answer that is not logged costs one
 * header, one `close` listener and one sampling draw.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request, RequestHandler } from 'express';
import type { Logger } from '../core/logger.ts';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Route templates whose routine answers are sampled. */
export const HOT_ROUTES = new Set([
  '/api/sales/:saleId/purchases',
  '/api/sales/:saleId/purchases/:requestId',
  '/api/purchases/:requestId',
  // A waiting room's crowd reads its tickets and holds streams on these.
  '/api/sales/:saleId/queue/me',
  '/api/sales/:saleId/queue/events',
]);
const UNLOGGED = new Set(['/healthz', '/readyz', '/metrics']);

type Level = 'info' | 'error' | 'silent';

/** A caller's X-Request-Id if it is a plain token, else a new UUID. */
export function requestIdOf(header: string | string[] | undefined): string {
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID();
}

/**
 * The level of an answer's line. @param sample - share of routine hot-path answers logged, 0..1; `random` draws.
 */
export function levelOf(route: string, status: number, sample: number, random: () => number): Level {
  if (status >= 500) return 'error';
  if (HOT_ROUTES.has(route) && (status < 400 || status === 409)) return random() < sample ? 'info' : 'silent';
  return 'info';
}

/**
 * Writes one line for an answer. Used by the middleware below and by anything that answers outside Express
 * (api/sold-out-shortcut.ts), so both log the same line.
 * @param startedAt - performance.now() when the request arrived; `route` - its template, or "none"; `completed` -
 *   false when the client left before the answer was sent.
 */
export function logAnswer(logger: Logger, level: Level, req: IncomingMessage, res: ServerResponse, id: string, route: string, startedAt: number, completed = true): void {
  if (level === 'silent') return;
  logger[level](
    {
      req: { id, method: req.method, path: (req.url ?? '').split('?')[0], remoteAddress: req.socket.remoteAddress, userAgent: req.headers['user-agent'] },
      res: { statusCode: res.statusCode },
      responseTime: Math.round(performance.now() - startedAt),
      route,
    },
    completed ? 'request completed' : 'request aborted',
  );
}

/**
 * The request-log middleware. @param sample - share of routine hot-path answers logged, 0..1.
 * @param random - the sampler (tests pass their own).
 */
export function requestLog(logger: Logger, sample: number, random: () => number = Math.random): RequestHandler {
  return (req, res, next) => {
    const id = requestIdOf(req.headers['x-request-id']);
    res.setHeader('X-Request-Id', id);
    if (UNLOGGED.has(req.path)) return next();
    const startedAt = performance.now();
    // 'close' comes after 'finish', and alone when the client left first: one listener sees both.
    res.once('close', () => {
      const route = ((req as Request).route?.path as string | undefined) ?? 'none';
      logAnswer(logger, levelOf(route, res.statusCode, sample, random), req, res, id, route, startedAt, res.writableFinished);
    });
    next();
  };
}
