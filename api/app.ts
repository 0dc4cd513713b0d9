/**
 * Builds the Express application without listening, so tests drive it with supertest and `main.ts` wires the
 * real process. Express 5 forwards rejected promises from async handlers to the error handler.
 */
import express, { type Express } from 'express';
import { fileURLToPath } from 'node:url';
import type { ApiDeps } from './deps.ts';
import { requireAuthorizationHeader } from './csrf.ts';
import { AppError, errorHandler, problems } from './problem.ts';
import { requestLog } from './request-log.ts';
import { rateLimitsOf } from './rate-limit.ts';
import { adminRoutes } from './routes/admin.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { docsRoutes } from './routes/docs.ts';
import { healthRoutes } from './routes/health.ts';
import { orderRoutes } from './routes/orders.ts';
import { purchaseRoutes } from './routes/purchases.ts';
import { queueRoutes } from './routes/queue.ts';
import { saleRoutes } from './routes/sales.ts';
import { sessionRoutes } from './routes/session.ts';
import { securityHeaders } from './security-headers.ts';

/** Request bodies above this size are refused with 413 before parsing, bytes. */
export const BODY_LIMIT_BYTES = 16 * 1024;
const JSON_TYPES = ['application/json', 'application/*+json'];
const WEB_DIR = fileURLToPath(new URL('../web/', import.meta.url));

export function createApp(d: ApiDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', d.config.TRUST_PROXY);
  app.use(securityHeaders(d.config));
  if (d.metrics) app.use(d.metrics.middleware); // GET /metrics, and times every request
  app.use(requestLog(d.logger, d.config.REQUEST_LOG_SAMPLE));
  app.use(rateLimitsOf(d).ip);
  app.use(requireAuthorizationHeader);
  app.use(express.json({ limit: BODY_LIMIT_BYTES, type: JSON_TYPES }));
  app.use((req, _res, next) => {
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (hasBody && req.method !== 'GET' && !req.is(JSON_TYPES)) {
      return next(new AppError('unsupported-media-type', 415, 'Send the body as application/json.'));
    }
    next();
  });
  // The purchase routes first: they carry the flash crowd, and every router before them is walked per request.
  app.use(purchaseRoutes(d));
  app.use(queueRoutes(d));
  app.use(healthRoutes(d, d.draining));
  app.use(sessionRoutes(d));
  app.use(saleRoutes(d));
  app.use(orderRoutes(d));
  app.use(dashboardRoutes(d));
  app.use(adminRoutes(d));
  app.use(docsRoutes());
  app.use('/api', (req, _res, next) => next(problems.notFound(`No route ${req.method} ${req.originalUrl}.`)));
  app.use(express.static(WEB_DIR, { index: 'index.html', maxAge: 0 }));
  app.use((req, _res, next) => next(problems.notFound(`No route ${req.method} ${req.originalUrl}.`)));
  app.use(errorHandler(d.logger));
  return app;
}
