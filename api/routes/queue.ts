/**
 * Waiting-room routes: the door's proof-of-work challenge (`GET /api/sales/:saleId/queue/challenge`), join
 * (`POST /api/sales/:saleId/queue`), read one's ticket (`GET …/queue/me`, ETag) and follow it
 * (`GET …/queue/events`, SSE), and the operator's audit of the pre-queue shuffle (`GET /api/admin/sales/:saleId/queue`).
 */
import { liveStream } from '../event-stream.ts';
import { createHash } from 'node:crypto';
import { Router } from 'express';
import { queueKeys } from '../../core/waiting-room/scripts.ts';
import { shufflePrequeue } from '../../core/waiting-room/shuffle.ts';
import { isFinalTicket } from '../../core/waiting-room/view.ts';
import { requireAdmin, requireShopper } from '../auth.ts';
import type { ApiDeps } from '../deps.ts';
import { answering, problems } from '../problem.ts';
import { issueChallenge, joinBody, joinThroughDoor } from '../queue-door.ts';
import { advance, readTicket, roomOf, type QueueAnswer } from '../queue-service.ts';
import { queueStreamsOf, type OpenedStream } from '../queue-streams.ts';
import { rateLimitsOf } from '../rate-limit.ts';
import { StreamSlots, streamSlot } from '../stream-slots.ts';
import { parse, uuidParam } from '../validate.ts';

function saleIdOf(params: Record<string, unknown>): string {
  return uuidParam(params.saleId, problems.saleNotFound);
}

export function queueRoutes(d: ApiDeps): Router {
  const r = Router();
  const shopper = requireShopper(d.config.JWT_SECRET);
  const streams = queueStreamsOf(d);
  const limits = rateLimitsOf(d);
  const slot = streamSlot(new StreamSlots(d.config.SSE_STREAMS_PER_SHOPPER), d.config.SSE_RETRY_MS);

  // Stateless and bounded like every route by the per-IP limit: see api/queue-door.ts for its cost.
  r.get('/api/sales/:saleId/queue/challenge', shopper, answering(async (req, res) => {
    const room = await roomOf(d, saleIdOf(req.params));
    res.set('Cache-Control', 'no-store').json(await issueChallenge(d.config.JWT_SECRET, room, req.userId!));
  }));

  r.post('/api/sales/:saleId/queue', shopper, answering(async (req, res) => {
    const room = await roomOf(d, saleIdOf(req.params));
    const { altcha } = parse(joinBody, req.body ?? {}, 'body');
    const { created, answer } = await joinThroughDoor(d, room, req.userId!, altcha);
    res.status(created ? 201 : 200).location(`${answer.queueUrl}/me`).set('Cache-Control', 'no-store').json(answer);
  }));

  r.get('/api/sales/:saleId/queue/me', shopper, limits.poll, answering(async (req, res) => {
    const answer = await readTicket(d, saleIdOf(req.params), req.userId!);
    const etag = `"${createHash('sha1').update(JSON.stringify(answer)).digest('base64url')}"`;
    res.set({ ETag: etag, 'Cache-Control': 'private, no-cache' });
    if (req.get('If-None-Match')?.split(/\s*,\s*/).includes(etag)) {
      res.status(304).end();
      return;
    }
    res.json(answer);
  }));

  // Like the purchase streams: a `retry:` field, a lifetime, a cap per shopper, the poll limit on each open, and a
  // clean end at shutdown; the view itself comes from the node's one subscription per sale (queue-streams.ts).
  r.get('/api/sales/:saleId/queue/events', shopper, limits.poll, slot, answering(async (req, res) => {
    const saleId = saleIdOf(req.params);
    const userId = req.userId!;
    const room = await roomOf(d, saleId);
    let last = '';
    let opened: OpenedStream | undefined;
    const stream = liveStream(d, res, () => opened?.close()); // the client may leave while the ticket is read
    const send = (a: QueueAnswer) => {
      const json = JSON.stringify(a);
      if (json !== last) stream.write(`event: queue\ndata: ${json}`);
      last = json;
      if (isFinalTicket(a.state) || a.state === 'admitted') stream.close();
    };
    opened = await streams.open(room, userId);
    if (!opened) {
      stream.close();
      throw problems.notFound(`You have no ticket for sale ${saleId}: POST /api/sales/${saleId}/queue to join.`);
    }
    if (stream.closed) return opened.close();
    stream.open();
    send(opened.first);
    if (!stream.closed) opened.start(send, stream.close);
  }));

  r.get('/api/admin/sales/:saleId/queue', requireAdmin(d.config.ADMIN_TOKEN), answering(async (req, res) => {
    const saleId = saleIdOf(req.params);
    const room = await roomOf(d, saleId);
    const snap = await advance(d, room, '');
    const k = queueKeys(d.config.REDIS_KEY_PREFIX, saleId);
    const [joinOrder, counters] = await Promise.all([d.redis.lrange(k.pre, 0, -1), d.redis.hmget(k.queue, 'tickets', 'admitted')]);
    res.set('Cache-Control', 'no-store').json({
      saleId,
      shuffle: {
        algorithm: 'Fisher-Yates driven by Park-Miller (x = x * 48271 mod 2^31-1) seeded with seed; see core/waiting-room/shuffle.ts',
        seed: room.shuffleSeed,
        prequeueJoinOrder: joinOrder,
        admissionOrder: shufflePrequeue(joinOrder, room.shuffleSeed),
      },
      tickets: Number(counters[0] ?? 0),
      admitted: Number(counters[1] ?? 0),
      serving: snap.serving,
      waiting: snap.waitingPlaced + snap.waitingPool,
      inside: snap.inside,
      soldOut: snap.soldOut,
    });
  }));

  return r;
}
