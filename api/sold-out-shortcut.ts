/**
 * The sold-out shortcut: once a sale is known to be sold out, the crowd that keeps asking for it is answered here, in
 * front of Express, from this process's memory (see sold-out-cache.ts). After a sell-out every shopper gets the
 * same answer whoever they are and whatever they ask, so nothing of the request is needed but its path: no routing,
 * no token check, no body read. This is the answer a flash crowd gets 99 times in 100, and it costs a fraction of
 * a routed one (measured in `npm run bench`: the sold-out path against a bare Express app).
 *
 * The answer is the one Express gives (api/routes/purchases.ts, `knownSoldOut`): the same status, problem body,
 * security headers, request id, metrics and request-log line. Everything else goes on to Express untouched:
 *   - a request with an Idempotency-Key (it may be the retry of an accepted purchase, which only Redis can replay);
 *   - a request without an Authorization header (401: a state-changing request needs one, see csrf.ts);
 *   - a body Express would refuse before answering (not JSON, larger than the parser's limit, chunked): it gets the
 *     same 413 or 415 as on any other sale.
 * Rate limits are not consulted: they guard Redis, PostgreSQL and the broker, none of which this answer touches,
 * and the limiter's own Redis round trip would cost more than the answer.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { canonicalUuid } from '../core/ids.ts';
import type { ApiDeps } from './deps.ts';
import { problemBody, soldOutProblem } from './problem.ts';
import { levelOf, logAnswer, requestIdOf } from './request-log.ts';
import { securityHeaderList } from './security-headers.ts';

/** The purchase route's template, as the metrics and request logs name it. */
const ROUTE = '/api/sales/:saleId/purchases';
const PREFIX = '/api/sales/';
const SUFFIX = '/purchases';
const PATH_LENGTH = PREFIX.length + 36 + SUFFIX.length;
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/**
 * Puts the shortcut in front of `app`. @param bodyLimitBytes - the JSON parser's limit: a larger body goes to Express,
 * which refuses it with 413. @returns the server's request listener.
 */
export function withSoldOutShortcut(d: ApiDeps, app: RequestListener, bodyLimitBytes: number): RequestListener {
  const problem = soldOutProblem();
  const headers = securityHeaderList(d.config).flat();
  const sample = d.config.REQUEST_LOG_SAMPLE;

  const answered = (req: IncomingMessage, res: ServerResponse): boolean => {
    if (req.method !== 'POST') return false;
    const url = req.url!;
    if (url.length !== PATH_LENGTH || !url.startsWith(PREFIX) || !url.endsWith(SUFFIX)) return false;
    const h = req.headers;
    if (h.authorization === undefined || h['idempotency-key'] !== undefined) return false;
    const saleId = canonicalUuid(url.slice(PREFIX.length, PREFIX.length + 36));
    if (saleId === undefined || !d.soldOut.has(saleId)) return false;
    const length = Number(h['content-length'] ?? 0);
    if (h['transfer-encoding'] !== undefined || !(length <= bodyLimitBytes) || (length > 0 && !JSON_TYPE.test(h['content-type'] ?? ''))) return false;

    const startedAt = performance.now();
    const id = requestIdOf(h['x-request-id']);
    // The URL passed the checks above (hex digits and dashes in a fixed path): safe in the JSON as it is.
    const body = JSON.stringify(problemBody(problem, url));
    res.writeHead(409, [...headers, 'X-Request-Id', id, 'Content-Type', 'application/problem+json; charset=utf-8', 'Content-Length', String(Buffer.byteLength(body))]);
    res.end(body);
    // The body is dropped unread, so the connection can carry the shopper's next request.
    req.resume();
    d.metrics?.soldOutShortcut((performance.now() - startedAt) / 1000);
    logAnswer(d.logger, levelOf(ROUTE, 409, sample, Math.random), req, res, id, ROUTE, startedAt);
    return true;
  };

  return (req, res) => {
    if (!answered(req, res)) app(req, res);
  };
}
