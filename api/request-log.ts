/**
 * Request logs with pino-http: one line per answer, carrying a request id (the caller's `X-Request-Id` when it is a
 * plain token of at most 128 characters, else a new UUID), echoed in the response's `X-Request-Id`. Only the method,
 * the path (no query string), the route template, the status, the time taken, the client address and the user
 * agent are logged: never a header, so never a token or a cookie.
 *
 * Quiet on the hot paths: the routine answers of the purchase routes (202, 304, and the expected 409s) and of the
 * status reads are logged for a sample of REQUEST_LOG_SAMPLE of them (a flash crowd would otherwise write a line
 * per shopper); every 4xx elsewhere is logged at `info`, every 5xx at `error`. Probes and scrapes (`/healthz`,
 * `/readyz`, `/metrics`) are not logged.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request, RequestHandler } from 'express';
import { pinoHttp } from 'pino-http';
import type { Logger } from '../core/logger.ts';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const HOT_ROUTES = new Set([
  '/api/sales/:saleId/purchases',
  '/api/sales/:saleId/purchases/:requestId',
  '/api/purchases/:requestId',
]);
const UNLOGGED = new Set(['/healthz', '/readyz', '/metrics']);

/** A caller's X-Request-Id if it is a plain token, else a new UUID. */
export function requestIdOf(header: string | string[] | undefined): string {
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID();
}

/**
 * The request-log middleware. @param sample - share of routine hot-path answers logged, 0..1.
 * @param random - the sampler (tests pass their own).
 */
export function requestLog(logger: Logger, sample: number, random: () => number = Math.random): RequestHandler {
  const route = (req: IncomingMessage) => ((req as Request).route?.path as string | undefined) ?? 'none';
  return pinoHttp({
    logger,
    quietReqLogger: true,
    genReqId: (req: IncomingMessage, res: ServerResponse) => {
      const id = requestIdOf(req.headers['x-request-id']);
      res.setHeader('X-Request-Id', id);
      return id;
    },
    autoLogging: { ignore: (req: IncomingMessage) => UNLOGGED.has((req.url ?? '').split('?')[0]!) },
    customLogLevel: (req: IncomingMessage, res: ServerResponse, err?: Error) => {
      if (err || res.statusCode >= 500) return 'error';
      if (HOT_ROUTES.has(route(req)) && (res.statusCode < 400 || res.statusCode === 409)) return random() < sample ? 'info' : 'silent';
      return 'info';
    },
    // The route template is known only once routing is done: added to the line at the end, not to the bindings.
    customSuccessObject: (req: IncomingMessage, _res: ServerResponse, val: object) => ({ ...val, route: route(req) }),
    customErrorObject: (req: IncomingMessage, _res: ServerResponse, _err: Error, val: object) => ({ ...val, route: route(req) }),
    serializers: {
      req: (req: { id: string; method: string; url: string; raw: IncomingMessage; remoteAddress?: string }) => ({
        id: req.id,
        method: req.method,
        path: req.url.split('?')[0],
        remoteAddress: req.remoteAddress,
        userAgent: req.raw.headers['user-agent'],
      }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
  });
}
