/**
 * The OpenAPI 3.1 document of the HTTP API, generated with @asteasolutions/zod-to-openapi from the zod schemas the
 * routes validate with (request bodies, query and headers are imported from the routes themselves); the answers'
 * shapes are described here in zod too. Each route lists its problem responses with the slugs it can answer, so a
 * client can switch on `type`. test/openapi.test.ts sends real requests through every documented route and
 * validates the answers against this document, so it cannot drift from what the API serves.
 */
import { OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { userIdSchema } from '../core/messages.ts';
import type { ProblemSlug } from './problem.ts';
import { createSaleBody, dlqQuery, replayBody } from './routes/admin.ts';
import { joinBody } from './queue-door.ts';
import { idempotencyKeyHeader, purchaseBody } from './routes/purchases.ts';
import { sessionBody } from './routes/session.ts';

const uuid = z.uuid();
const isoTime = z.iso.datetime({ offset: true });

const Problem = (slugs: ProblemSlug[]) =>
  z.looseObject({
    type: z.enum(slugs.map((s) => `/problems/${s}`) as [string, ...string[]]),
    title: z.string(),
    status: z.int(),
    detail: z.string(),
    instance: z.string().optional(),
  });

const SaleView = z
  .object({
    id: uuid,
    name: z.string(),
    stock: z.int(),
    remaining: z.int(),
    startsAt: isoTime,
    endsAt: isoTime.nullable(),
    perUserLimit: z.int(),
    state: z.enum(['upcoming', 'live', 'sold_out', 'ended']),
  })
  .meta({ id: 'Sale' });

const WaitingRoomView = z
  .object({
    opensAt: isoTime,
    admissionsPerMinute: z.int(),
    maxInside: z.int(),
    sessionSeconds: z.int(),
    order: z.enum(['fifo', 'random']),
    proofOfWork: z
      .object({
        maxNumber: z.int().meta({ description: 'ALTCHA maxnumber: a joining browser tries maxNumber / 2 SHA-256 hashes on average' }),
        challengeUrl: z.string(),
      })
      .nullable(),
    queueUrl: z.string(),
  })
  .meta({ id: 'WaitingRoom' });

const QueueTicket = z
  .object({
    saleId: uuid,
    ticket: z.int(),
    state: z.enum(['prequeue', 'waiting', 'admitted', 'done', 'sold_out', 'expired']),
    position: z.int().nullable(),
    ahead: z.int().nullable(),
    estimatedWaitSeconds: z.int().nullable(),
    queueUrl: z.string(),
    admissionToken: z.string().optional().meta({ description: 'When admitted: send it as Admission-Token when buying' }),
    sessionExpiresAt: isoTime.optional(),
  })
  .meta({ id: 'QueueTicket' });

const DoorChallenge = z
  .object({
    algorithm: z.literal('SHA-256'),
    challenge: z.string(),
    maxnumber: z.int(),
    salt: z.string(),
    signature: z.string(),
    expiresAt: isoTime,
  })
  .meta({ id: 'ProofOfWorkChallenge', description: 'An ALTCHA (v1) challenge: find number in 0..maxnumber with SHA-256(salt + number) = challenge' });

const PurchaseView = z
  .object({
    requestId: uuid,
    saleId: uuid,
    status: z.enum(['queued', 'succeeded', 'sold_out', 'rejected', 'failed']),
    orderId: uuid.optional(),
    expiresAt: isoTime.optional().meta({ description: 'On success: when the reservation expires unless paid' }),
    reason: z.string().optional(),
    acceptedAt: isoTime.optional().meta({ description: 'Absent in states rebuilt from PostgreSQL' }),
    updatedAt: isoTime,
  })
  .meta({ id: 'Purchase' });

const OrderView = z
  .object({
    orderId: uuid,
    requestId: uuid,
    saleId: uuid,
    quantity: z.int(),
    status: z.enum(['pending_payment', 'paid', 'expired']),
    expiresAt: isoTime,
    paidAt: isoTime.nullable(),
    expiredAt: isoTime.nullable(),
    createdAt: isoTime,
  })
  .meta({ id: 'Order' });

const Accepted = z
  .object({
    requestId: uuid,
    saleId: uuid,
    status: z.literal('queued'),
    statusUrl: z.string(),
    eventsUrl: z.string(),
  })
  .meta({ id: 'Accepted' });

const SaleStats = z
  .object({
    saleId: uuid,
    stock: z.int(),
    remaining: z.int(),
    pendingUnits: z.int(),
    inflightRequests: z.int(),
    ordersInDatabase: z.int(),
    unitsInDatabase: z.int(),
    ordersByStatus: z.object({ pending_payment: z.int(), paid: z.int(), expired: z.int() }),
    decisions: z.record(z.string(), z.int()),
  })
  .meta({ id: 'SaleStats' });

const DeadLetters = z.object({
  queue: z.enum(['purchases', 'reservations']),
  count: z.int(),
  messages: z.array(z.object({ messageId: z.string().nullable(), reason: z.string(), body: z.unknown() })),
});

const Checks = z.record(z.string(), z.enum(['up', 'down']));

type Responses = Parameters<OpenAPIRegistry['registerPath']>[0]['responses'];

const json = (schema: z.ZodType) => ({ 'application/json': { schema } });
const problem = (description: string, slugs: ProblemSlug[], headers?: Record<string, { schema: { type: 'string' }; required?: boolean; description?: string }>) => ({
  description: `${description} (${slugs.map((s) => `\`${s}\``).join(', ')})`,
  content: { 'application/problem+json': { schema: Problem(slugs) } },
  ...(headers ? { headers } : {}),
});
const str = { schema: { type: 'string' as const }, required: true };

const unauthorized = { 401: problem('No valid token', ['unauthorized'], { 'WWW-Authenticate': str }) };
const unavailable = { 503: problem('A backing service is unavailable; nothing was changed', ['service-unavailable'], { 'Retry-After': str }) };
const badBody = {
  400: problem('Invalid body', ['validation-error']),
  413: problem('Body above 16 KiB', ['payload-too-large']),
  415: problem('Body not JSON', ['unsupported-media-type']),
};

/**
 * The answer of a rate limit or a stream cap (api/rate-limit.ts, api/stream-slots.ts), which any route behind them
 * may give: every route but /metrics, which is answered before the limits.
 */
const rateLimited = {
  429: problem('Too many requests from this address or shopper; retry after `Retry-After` seconds', ['rate-limited'], {
    'Retry-After': str,
    RateLimit: { schema: { type: 'string' }, description: 'Remaining quota and reset (draft-ietf-httpapi-ratelimit-headers), on a rate limit' },
    'RateLimit-Policy': { schema: { type: 'string' }, description: 'The limit\'s quota and window, on a rate limit' },
  }),
};

const shopperAuth: Record<string, string[]>[] = [{ bearer: [] }, { session: [] }];
const adminAuth: Record<string, string[]>[] = [{ admin: [] }];

function purchaseReads(registry: OpenAPIRegistry, base: string, params: z.ZodObject, deprecated: boolean): void {
  const notFound = { 404: problem('No such purchase, or not yours', ['not-found']) };
  registry.registerPath({
    method: 'get',
    path: base,
    summary: deprecated ? 'A purchase by its request id alone (links of older builds; decided purchases only)' : 'A purchase request\'s state',
    deprecated,
    tags: ['purchases'],
    security: shopperAuth,
    request: { params, headers: z.object({ 'If-None-Match': z.string().optional() }) },
    responses: {
      200: { description: 'The state', headers: { ETag: str }, content: json(PurchaseView) },
      304: { description: 'Unchanged since the ETag sent in If-None-Match' },
      ...unauthorized,
      ...notFound,
      ...unavailable,
    } satisfies Responses,
  });
  registry.registerPath({
    method: 'get',
    path: `${base}/events`,
    summary: 'Follow a purchase over Server-Sent Events: the current state, then each change; closes after a final state',
    deprecated,
    tags: ['purchases'],
    security: shopperAuth,
    request: {
      params,
      query: z.object({ lastEventId: z.string().optional() }),
      headers: z.object({ 'Last-Event-ID': z.string().optional() }),
    },
    responses: {
      200: {
        description: '`event: status`, `id: <version>`, `data: <Purchase JSON>`; `: heartbeat` comments',
        content: { 'text/event-stream': { schema: z.string() } },
      },
      ...unauthorized,
      ...notFound,
      ...unavailable,
    },
  });
}

/** Builds the document. @param serverUrl - the `servers[0].url`, `/` by default (same origin). */
export function openApiDocument(serverUrl = '/'): ReturnType<OpenApiGeneratorV31['generateDocument']> {
  const registry = new OpenAPIRegistry();
  registry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Shopper token (HS256, `sub` = user id)' });
  registry.registerComponent('securitySchemes', 'session', { type: 'apiKey', in: 'cookie', name: 'session', description: 'The shopper token as a cookie (EventSource cannot send headers)' });
  registry.registerComponent('securitySchemes', 'admin', { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN' });

  const saleParams = z.object({ saleId: z.string().meta({ description: 'Sale id (UUID)' }) });
  const purchaseParams = saleParams.extend({ requestId: z.string().meta({ description: 'Request id (UUID)' }) });
  const orderParams = z.object({ orderId: z.string().meta({ description: 'Order id (UUID)' }) });

  registry.registerPath({
    method: 'post',
    path: '/api/session',
    summary: 'Demo login (DEMO_LOGIN=true): mints a shopper token and sets the session cookie',
    tags: ['session'],
    request: { body: { content: json(sessionBody), required: true } },
    responses: {
      200: { description: 'The token', headers: { 'Set-Cookie': str }, content: json(z.object({ token: z.string(), userId: userIdSchema, expiresAt: isoTime })) },
      ...badBody,
      404: problem('The demo login is off', ['not-found']),
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/api/sales',
    summary: 'Every sale, newest first, with live remaining stock',
    tags: ['sales'],
    responses: { 200: { description: 'The sales', content: json(z.object({ sales: z.array(SaleView) })) }, ...unavailable },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/sales/{saleId}',
    summary: 'One sale with live remaining stock',
    tags: ['sales'],
    request: { params: saleParams },
    responses: {
      200: { description: 'The sale', content: json(SaleView.extend({ waitingRoom: WaitingRoomView.nullable() })) },
      404: problem('No such sale', ['sale-not-found']),
      ...unavailable,
    },
  });

  registry.registerPath({
    method: 'post',
    path: '/api/sales/{saleId}/purchases',
    summary: 'Request a purchase: 202 once the request is in the queue (publisher confirm), decided by a worker',
    tags: ['purchases'],
    security: shopperAuth,
    request: {
      params: saleParams,
      headers: z.object({ 'Idempotency-Key': idempotencyKeyHeader.optional() }),
      body: { content: json(purchaseBody), required: false },
    },
    responses: {
      202: {
        description: 'Accepted: follow statusUrl or eventsUrl for the decision',
        headers: { Location: str, 'Idempotent-Replayed': { schema: { type: 'string' }, required: false, description: '`true` when an earlier answer is replayed' } },
        content: json(Accepted),
      },
      ...badBody,
      ...unauthorized,
      404: problem('No such sale', ['sale-not-found']),
      409: problem('Refused', ['sold-out', 'duplicate-purchase', 'sale-not-active']),
      422: problem('The Idempotency-Key was used with another body', ['idempotency-key-reused']),
      ...unavailable,
    },
  });
  purchaseReads(registry, '/api/sales/{saleId}/purchases/{requestId}', purchaseParams, false);

  registry.registerPath({
    method: 'get',
    path: '/api/sales/{saleId}/queue/challenge',
    summary: 'A proof-of-work challenge for joining a waiting room that asks for one (bound to the sale and the shopper; expires in 5 minutes)',
    tags: ['waiting room'],
    security: shopperAuth,
    request: { params: saleParams },
    responses: {
      200: { description: 'The challenge', content: json(DoorChallenge) },
      ...unauthorized,
      404: problem('No such sale, no waiting room, or no proof of work asked', ['sale-not-found', 'no-waiting-room', 'not-found']),
      ...unavailable,
    },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/sales/{saleId}/queue',
    summary: 'Join the waiting room: a new ticket (201), or the shopper\'s ticket again (200, no proof of work needed)',
    tags: ['waiting room'],
    security: shopperAuth,
    request: { params: saleParams, body: { content: json(joinBody), required: false } },
    responses: {
      201: { description: 'A new ticket', headers: { Location: str }, content: json(QueueTicket) },
      200: { description: 'The ticket the shopper already holds', headers: { Location: str }, content: json(QueueTicket) },
      ...badBody,
      ...unauthorized,
      403: problem(
        'Proof of work missing, not ours, for another sale or shopper, expired, or already used: nothing changed; solve a new challenge (`challengeUrl`)',
        ['proof-of-work-required', 'proof-of-work-invalid', 'proof-of-work-expired', 'proof-of-work-replayed'],
      ),
      404: problem('No such sale, or it has no waiting room', ['sale-not-found', 'no-waiting-room']),
      409: problem('The queue is not open yet (`opensAt`), or closed', ['queue-not-open', 'sold-out', 'sale-not-active']),
      ...unavailable,
    },
  });
  purchaseReads(registry, '/api/purchases/{requestId}', z.object({ requestId: z.string() }), true);

  registry.registerPath({
    method: 'get',
    path: '/api/orders/{orderId}',
    summary: 'An order of the shopper',
    tags: ['orders'],
    security: shopperAuth,
    request: { params: orderParams },
    responses: { 200: { description: 'The order', content: json(OrderView) }, ...unauthorized, 404: problem('No such order, or not yours', ['not-found']), ...unavailable },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/orders/{orderId}/pay',
    summary: 'Pay a reservation (simulated payment; idempotent)',
    tags: ['orders'],
    security: shopperAuth,
    request: { params: orderParams },
    responses: {
      200: { description: 'The paid order', content: json(OrderView) },
      ...unauthorized,
      404: problem('No such order, or not yours', ['not-found']),
      409: problem('The payment window closed', ['order-expired']),
      ...unavailable,
    },
  });

  registry.registerPath({
    method: 'post',
    path: '/api/admin/sales',
    summary: 'Create a sale (startsAt defaults to now)',
    tags: ['admin'],
    security: adminAuth,
    request: { body: { content: json(createSaleBody), required: true } },
    responses: { 201: { description: 'The sale', headers: { Location: str }, content: json(SaleView) }, ...badBody, ...unauthorized, ...unavailable },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/admin/sales/{saleId}/end',
    summary: 'End a sale now (an earlier end is kept): admission stops at once on every node',
    tags: ['admin'],
    security: adminAuth,
    request: { params: saleParams },
    responses: { 200: { description: 'The ended sale', content: json(SaleView) }, ...unauthorized, 404: problem('No such sale', ['sale-not-found']), ...unavailable },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/admin/sales/{saleId}/stats',
    summary: 'Stock, held units, in-flight requests, orders and decisions of a sale',
    tags: ['admin'],
    security: adminAuth,
    request: { params: saleParams },
    responses: { 200: { description: 'The stats', content: json(SaleStats) }, ...unauthorized, 404: problem('No such sale', ['sale-not-found']), ...unavailable },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/admin/stats/events',
    summary: 'The operator dashboard\'s stream: `event: stats` once a second (live sales, rates, latency, queues), computed once per node',
    tags: ['admin'],
    security: adminAuth,
    responses: {
      200: { description: '`event: stats`, `id: <ms>`, `data: <snapshot JSON>` (see api/admin-stats.ts)', content: { 'text/event-stream': { schema: z.string() } } },
      ...unauthorized,
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/admin/dlq',
    summary: 'Count a dead-letter queue and describe its first messages (left in place)',
    tags: ['admin'],
    security: adminAuth,
    request: { query: dlqQuery },
    responses: { 200: { description: 'The dead letters', content: json(DeadLetters) }, 400: problem('Invalid query', ['validation-error']), ...unauthorized, ...unavailable },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/admin/dlq/replay',
    summary: 'Move dead letters back to their queue (safe: processing is idempotent)',
    tags: ['admin'],
    security: adminAuth,
    request: { body: { content: json(replayBody), required: false } },
    responses: {
      200: { description: 'How many were moved', content: json(z.object({ queue: z.enum(['purchases', 'reservations']), replayed: z.int() })) },
      ...badBody,
      ...unauthorized,
      ...unavailable,
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/healthz',
    summary: 'Liveness: 200 while the process runs',
    tags: ['operations'],
    responses: { 200: { description: 'Alive', content: json(z.object({ status: z.literal('ok') })) } },
  });
  registry.registerPath({
    method: 'get',
    path: '/readyz',
    summary: 'Readiness: 200 when PostgreSQL, Redis and RabbitMQ answer',
    tags: ['operations'],
    responses: {
      200: { description: 'Ready', content: json(z.object({ status: z.literal('ready'), checks: Checks })) },
      503: {
        description: 'A dependency does not answer (`service-unavailable`, with `checks`)',
        headers: { 'Retry-After': str },
        content: { 'application/problem+json': { schema: Problem(['service-unavailable']).extend({ checks: Checks }) } },
      },
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics of this node (METRICS=true)',
    tags: ['operations'],
    responses: { 200: { description: 'Prometheus text format', content: { 'text/plain': { schema: z.string() } } } },
  });
  registry.registerPath({
    method: 'get',
    path: '/openapi.json',
    summary: 'This document',
    tags: ['operations'],
    responses: { 200: { description: 'OpenAPI 3.1', content: json(z.looseObject({ openapi: z.string() })) } },
  });

  for (const d of registry.definitions) {
    if (d.type === 'route' && d.route.path !== '/metrics') d.route.responses = { ...d.route.responses, ...rateLimited };
  }
  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'Flash sale',
      version: '1',
      description:
        'Purchase backend for limited-stock drops. Errors are RFC 9457 problems (`application/problem+json`) whose `type` is `/problems/<slug>`.',
    },
    servers: [{ url: serverUrl }],
  });
}
