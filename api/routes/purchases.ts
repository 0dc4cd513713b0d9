/**
 * Purchase routes: request a purchase (202), read its state (ETag, 304), follow it over Server-Sent Events.
 * A purchase lives under its sale (`/api/sales/:saleId/purchases/:requestId`): its state is in the sale's Redis
 * slot. Links without the sale id (`/api/purchases/:requestId`, from older builds) are still answered for decided
 * purchases, whose sale PostgreSQL knows.
 */
import { liveStream } from '../event-stream.ts';
import { Router, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import { isFinal, toView, type PurchaseState } from '../../core/purchase-state.ts';
import { requireAdmission } from '../admission-token.ts';
import { requireShopper } from '../auth.ts';
import type { ApiDeps } from '../deps.ts';
import { answering, problems, sendProblem, soldOutProblem } from '../problem.ts';
import { rateLimitsOf } from '../rate-limit.ts';
import { StreamSlots, streamSlot } from '../stream-slots.ts';
import { getPurchase, requestPurchase, saleOfDecidedPurchase } from '../purchase-service.ts';
import { canonicalUuid, parse, uuidParam } from '../validate.ts';

/** One instance serves every sold-out answer: an AppError is immutable. */
const SOLD_OUT = soldOutProblem();
export const purchaseBody = z.strictObject({ quantity: z.int().min(1).max(10_000).default(1) });
export const idempotencyKeyHeader = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');

function etagOf(s: PurchaseState): string {
  return `"${s.requestId}.${s.version}"`;
}

export function purchaseRoutes(d: ApiDeps): Router {
  const r = Router();
  const shopper = requireShopper(d.config.JWT_SECRET);
  const limits = rateLimitsOf(d);
  const slot = streamSlot(new StreamSlots(d.config.SSE_STREAMS_PER_SHOPPER), d.config.SSE_RETRY_MS);

  // After a sell-out, every shopper gets the same answer whoever they are: answer it before the token is verified
  // and the body parsed, from this process's memory (see sold-out-cache.ts). A request with an Idempotency-Key may be the
  // retry of an accepted one, which only Redis can replay.
  const knownSoldOut: RequestHandler = (req, res, next) => {
    if (req.headers['idempotency-key'] === undefined && d.soldOut.has(canonicalUuid(req.params.saleId) ?? '')) {
      return sendProblem(res, SOLD_OUT, req.originalUrl);
    }
    next();
  };

  r.post('/api/sales/:saleId/purchases', knownSoldOut, shopper, limits.purchase, requireAdmission(d), answering(async (req, res) => {
    const saleId = uuidParam(req.params.saleId, problems.saleNotFound);
    const body = parse(purchaseBody, req.body ?? {}, 'body');
    const keyHeader = req.get('Idempotency-Key');
    const idempotencyKey = keyHeader === undefined ? undefined : parse(idempotencyKeyHeader, keyHeader, 'header');
    const accepted = await requestPurchase(d, { saleId, userId: req.userId!, quantity: body.quantity, idempotencyKey });
    const statusUrl = `/api/sales/${saleId}/purchases/${accepted.requestId}`;
    if (accepted.replayed) res.set('Idempotent-Replayed', 'true');
    res.status(202).location(statusUrl).json({
      requestId: accepted.requestId,
      saleId,
      status: 'queued',
      statusUrl,
      eventsUrl: `${statusUrl}/events`,
    });
  }));

  const read: RequestHandler = answering(async (req, res) => {
    const { saleId, requestId } = await purchaseParams(d, req.params);
    const state = await getPurchase(d, saleId, requestId, req.userId!);
    const etag = etagOf(state);
    res.set({ ETag: etag, 'Cache-Control': 'private, no-cache' });
    if (req.get('If-None-Match')?.split(/\s*,\s*/).includes(etag)) {
      res.status(304).end();
      return;
    }
    res.json(toView(state));
  });
  const follow: RequestHandler = answering(async (req, res) => {
    const { saleId, requestId } = await purchaseParams(d, req.params);
    await streamPurchase(d, saleId, requestId, req.userId!, lastEventId(req.get('Last-Event-ID') ?? req.query.lastEventId), res);
  });
  r.get('/api/sales/:saleId/purchases/:requestId', shopper, limits.poll, read);
  r.get('/api/sales/:saleId/purchases/:requestId/events', shopper, limits.poll, slot, follow);
  r.get('/api/purchases/:requestId', shopper, limits.poll, read);
  r.get('/api/purchases/:requestId/events', shopper, limits.poll, slot, follow);

  return r;
}

/** The purchase a route names; without a sale id, the sale of a decided purchase. @throws AppError 404. */
async function purchaseParams(d: ApiDeps, params: Record<string, unknown>): Promise<{ saleId: string; requestId: string }> {
  const notFound = () => problems.notFound(`No purchase request ${String(params.requestId)}.`);
  const requestId = uuidParam(params.requestId, notFound);
  if (params.saleId === undefined) {
    const saleId = await saleOfDecidedPurchase(d, requestId);
    if (!saleId) throw notFound();
    return { saleId, requestId };
  }
  const saleId = uuidParam(params.saleId, notFound);
  return { saleId, requestId };
}

function lastEventId(value: unknown): number {
  const n = Number(typeof value === 'string' ? value : 0);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/**
 * Streams a purchase's states as `event: status` (id = version): the current state first, then each change,
 * closing after a final state. Subscribes before reading, so a result written before the connection is never
 * missed; versions at or below Last-Event-ID are not sent again. Changes that arrive before the stream is open
 * (its owner not yet checked, its headers not yet sent) are held back and the newest is sent first. Source of the
 * protocol: https://html.spec.whatwg.org/multipage/server-sent-events.html
 */
async function streamPurchase(d: ApiDeps, saleId: string, requestId: string, userId: string, after: number, res: Response): Promise<void> {
  let sent = after;
  let early: PurchaseState | undefined;
  let unsubscribe: (() => void) | undefined;
  const stream = liveStream(d, res, () => unsubscribe?.()); // the client may leave while we subscribe and read
  const send = (s: PurchaseState) => {
    if (!stream.opened) {
      if (!early || s.version > early.version) early = s;
      return;
    }
    if (stream.closed || s.version <= sent) return;
    sent = s.version;
    stream.write(`event: status\nid: ${s.version}\ndata: ${JSON.stringify(toView(s))}`);
    if (isFinal(s.status)) stream.close();
  };
  const refresh = () => {
    getPurchase(d, saleId, requestId, userId).then(send, () => undefined);
  };

  unsubscribe = await d.events.subscribe(saleId, requestId, (s) => (s === 'resync' ? refresh() : s.requestId === requestId && send(s)));
  if (stream.closed) return unsubscribe();
  let state: PurchaseState;
  try {
    state = await getPurchase(d, saleId, requestId, userId);
  } catch (err) {
    stream.close();
    throw err;
  }
  if (stream.closed) return;
  stream.open();
  const first = early && early.version > state.version ? early : state;
  if (first.version <= sent && isFinal(first.status)) return stream.close();
  send(first);
}
