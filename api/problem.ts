/**
 * One error type for every failure the API answers on purpose, and one handler that turns any thrown value into
 * an RFC 9457 problem response (`application/problem+json`: type, title, status, detail, plus extension members).
 * Bad input is always a 4xx; a dependency outage is a 503 with Retry-After; anything else is a 500 and is logged.
 */
import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import { quietFor } from '../core/quiet-log.ts';
import type { Logger } from 'pino';
import type { ZodError } from 'zod';
import { PublishError } from '../core/amqp/broker.ts';

export type ProblemSlug =
  | 'validation-error'
  | 'sold-out'
  | 'duplicate-purchase'
  | 'sale-not-active'
  | 'sale-not-found'
  | 'idempotency-key-reused'
  | 'unauthorized'
  | 'service-unavailable'
  | 'not-found'
  | 'payload-too-large'
  | 'unsupported-media-type'
  | 'order-expired'
  | 'internal-error'
  | 'rate-limited'
  | 'not-admitted'
  | 'queue-not-open'
  | 'no-waiting-room'
  | 'proof-of-work-required'
  | 'proof-of-work-invalid'
  | 'proof-of-work-expired'
  | 'proof-of-work-replayed';

const TITLES: Record<ProblemSlug, string> = {
  'validation-error': 'Your request is not valid',
  'sold-out': 'Sold out',
  'duplicate-purchase': 'You already have a purchase for this sale',
  'sale-not-active': 'The sale is not open',
  'sale-not-found': 'No such sale',
  'idempotency-key-reused': 'Idempotency-Key reused with another request',
  unauthorized: 'Authentication required',
  'service-unavailable': 'Service temporarily unavailable',
  'not-found': 'Not found',
  'payload-too-large': 'Request body too large',
  'unsupported-media-type': 'Unsupported media type',
  'order-expired': 'The reservation expired',
  'rate-limited': 'Too many requests',
  'internal-error': 'Internal error',
  'not-admitted': 'Wait for your turn in the queue',
  'queue-not-open': 'The queue is not open yet',
  'no-waiting-room': 'This sale has no waiting room',
  'proof-of-work-required': 'Solve a proof-of-work challenge to join',
  'proof-of-work-invalid': 'The proof of work is not valid',
  'proof-of-work-expired': 'The proof-of-work challenge expired',
  'proof-of-work-replayed': 'The proof of work was already used',
};

/**
 * A failure with its HTTP status and problem type; `extra` members are added to the problem body. These are
 * expected outcomes (sold out, duplicate, bad input), thousands a second in a flash crowd: they carry no stack
 * trace, whose capture would cost more than the answer.
 */
export class AppError extends Error {
  override name = 'AppError';
  constructor(
    readonly slug: ProblemSlug,
    readonly status: number,
    detail: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(detail);
    Error.stackTraceLimit = limit;
  }
}

export const problems = {
  validation: (detail: string, errors: { field: string; message: string }[] = []) =>
    new AppError('validation-error', 400, detail, { errors }),
  fromZod: (err: ZodError, where: 'body' | 'query' | 'params' | 'header') =>
    problems.validation(
      `Invalid ${where}: ${err.issues.map((i) => `${i.path.join('.') || where} ${i.message}`).join('; ')}`,
      err.issues.map((i) => ({ field: i.path.join('.') || where, message: i.message })),
    ),
  unauthorized: (detail = 'Send a valid token: Authorization: Bearer <token>, or the session cookie.') =>
    new AppError('unauthorized', 401, detail, {}, { 'WWW-Authenticate': 'Bearer' }),
  notFound: (detail: string) => new AppError('not-found', 404, detail),
  saleNotFound: (saleId: string) => new AppError('sale-not-found', 404, `No sale with id ${saleId}.`),
  unavailable: (detail: string, retryAfterS = 1) =>
    new AppError('service-unavailable', 503, detail, {}, { 'Retry-After': String(retryAfterS) }),
};

export function soldOutProblem(): AppError {
  return new AppError('sold-out', 409, 'Every unit is sold or reserved.');
}

const DEPENDENCY_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'P1001', 'P1002', 'P1017', 'P2024']);
const DEPENDENCY_ERROR_NAMES = new Set(['PublishError', 'MaxRetriesPerRequestError', 'DriverAdapterError', 'PrismaClientInitializationError', 'ClusterAllFailedError']);
// The last line: what a Redis Cluster answers while a master fails over (a slot uncovered, a replica promoting,
// the slot map being re-read), https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/.
const DEPENDENCY_MESSAGES =
  /Connection is closed|Stream isn't writeable|Command timed out|enableOfflineQueue|Connection terminated|connect ECONNREFUSED|timeout exceeded when trying to connect|^(CLUSTERDOWN|TRYAGAIN|MASTERDOWN|LOADING|READONLY)|Too many Cluster redirections|Failed to refresh slots cache|None of startup nodes is available|Cluster isn't ready/;

/** True when an error means a dependency (PostgreSQL, Redis, RabbitMQ) is unreachable or too slow. */
export function isDependencyError(err: unknown): boolean {
  if (err instanceof PublishError) return true;
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  return (
    (typeof code === 'string' && DEPENDENCY_ERROR_CODES.has(code)) ||
    DEPENDENCY_ERROR_NAMES.has(err.name) ||
    DEPENDENCY_MESSAGES.test(err.message) ||
    (err.cause !== undefined && isDependencyError(err.cause))
  );
}

/**
 * Wraps a route handler so that an AppError is answered right there: passing it to `next` would walk every
 * remaining layer of every router looking for an error handler, on the hottest answers (sold out, duplicate).
 */
export function answering(handler: RequestHandler): RequestHandler {
  return async (req, res, next) => {
    try {
      await handler(req, res, next);
    } catch (err) {
      if (err instanceof AppError && !res.headersSent) sendProblem(res, err, req.originalUrl);
      else next(err);
    }
  };
}

/** The RFC 9457 body of a problem. */
export function problemBody(e: AppError, instance?: string): Record<string, unknown> {
  return {
    type: `/problems/${e.slug}`,
    title: TITLES[e.slug],
    status: e.status,
    detail: e.message,
    ...(instance ? { instance } : {}),
    ...e.extra,
  };
}

/** Sends a problem response. */
export function sendProblem(res: Response, e: AppError, instance?: string): void {
  res.locals.problem = e.slug; // read by the metrics (api/metrics.ts)
  res.status(e.status).set(e.headers).type('application/problem+json').json(problemBody(e, instance));
}

/** Maps errors raised by Express's body parser (status and `type` set by body-parser) to problems. */
function fromHttpError(err: { status?: number; type?: string; message: string; limit?: number }): AppError | undefined {
  if (err.type === 'entity.parse.failed') return problems.validation('The body is not valid JSON.', [{ field: 'body', message: 'malformed JSON' }]);
  if (err.type === 'entity.too.large') return new AppError('payload-too-large', 413, `The body must be at most ${err.limit ?? '?'} bytes.`);
  if (err.type === 'encoding.unsupported' || err.type === 'charset.unsupported')
    return new AppError('unsupported-media-type', 415, err.message);
  if (typeof err.status === 'number' && err.status >= 400 && err.status < 500)
    return problems.validation(err.message);
  return undefined;
}

/** The central error handler: every thrown value ends here. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  const quiet = quietFor(logger);
  return (err, req, res, _next) => {
    let problem: AppError;
    if (err instanceof AppError) problem = err;
    else if (isDependencyError(err)) {
      quiet.warn({ err: (err as Error).message, path: req.path }, 'dependency unavailable');
      problem = problems.unavailable('A backing service is unavailable; nothing was changed. Retry shortly.');
    } else {
      problem = fromHttpError(err) ?? new AppError('internal-error', 500, 'Something went wrong on our side.');
      if (problem.status >= 500) logger.error({ err, path: req.path }, 'unhandled error');
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    sendProblem(res, problem, req.originalUrl);
  };
}
