/**
 * The waiting-room use cases: join (take a ticket) and read a ticket (advancing the serving counter on the way).
 * Redis holds the queue; a Redis that lost it (it keeps nothing on disk) gets the settings again from PostgreSQL.
 */
import { randomInt } from 'node:crypto';
import { findSale } from '../core/sales.ts';
import { JoinCode, advanceOptionsOf, advanceQueue, joinQueue, queueKeys, type QueueSnapshot, type Ticket } from '../core/waiting-room/scripts.ts';
import { findWaitingRoom, loadWaitingRoom, type WaitingRoom } from '../core/waiting-room/settings.ts';
import { ticketView, type TicketView } from '../core/waiting-room/view.ts';
import { mintAdmissionToken } from './admission-token.ts';
import type { ApiDeps } from './deps.ts';
import { AppError, problems, soldOutProblem } from './problem.ts';

export type QueueAnswer = TicketView & { admissionToken?: string; queueUrl: string };

/** The sale's waiting room. @throws AppError 404 sale-not-found, 404 no-waiting-room. */
export async function roomOf(d: ApiDeps, saleId: string): Promise<WaitingRoom> {
  const w = await findWaitingRoom(d.db, saleId);
  if (w === undefined) throw problems.saleNotFound(saleId);
  if (w === null) throw new AppError('no-waiting-room', 404, `Sale ${saleId} has no waiting room: buy directly.`);
  return w;
}

async function reload(d: ApiDeps, w: WaitingRoom): Promise<void> {
  const sale = await findSale(d.db, w.saleId);
  if (sale) await loadWaitingRoom(d.redis, d.config.REDIS_KEY_PREFIX, w, sale);
}

/** Advances the queue and reads `userId`'s ticket ("" for none), loading the settings if Redis lost them. */
export async function advance(d: ApiDeps, w: WaitingRoom, userId: string): Promise<QueueSnapshot> {
  const keys = queueKeys(d.config.REDIS_KEY_PREFIX, w.saleId);
  let snap = await advanceQueue(d.redis, keys, userId, advanceOptionsOf(d.config));
  if (!snap.loaded) {
    await reload(d, w);
    snap = await advanceQueue(d.redis, keys, userId, advanceOptionsOf(d.config));
  }
  return snap;
}

/**
 * The answer for ticket `t` (by default the snapshot's own, which must then be set) under counter `snap`: its
 * view, plus the admission token once admitted.
 */
export function answerOf(d: ApiDeps, saleId: string, userId: string, snap: QueueSnapshot, t: Ticket = snap.ticket!): QueueAnswer {
  const view = ticketView(saleId, snap, t);
  return {
    ...view,
    ...(view.state === 'admitted' ? { admissionToken: mintAdmissionToken(d.config.JWT_SECRET, userId, saleId, t.sessionEnd) } : {}),
    queueUrl: `/api/sales/${saleId}/queue`,
  };
}

/**
 * Takes a ticket, or answers the shopper's ticket. @returns the answer and whether the ticket is new.
 * @throws AppError 404 (sale or waiting room), 409 queue-not-open (with opensAt) | sold-out | sale-not-active.
 */
export async function joinWaitingRoom(d: ApiDeps, saleId: string, userId: string): Promise<{ created: boolean; answer: QueueAnswer }> {
  const w = await roomOf(d, saleId);
  const keys = queueKeys(d.config.REDIS_KEY_PREFIX, saleId);
  let r = await joinQueue(d.redis, keys, userId, randomInt(0, 2 ** 47));
  if (r.code === JoinCode.NotLoaded) {
    await reload(d, w);
    r = await joinQueue(d.redis, keys, userId, randomInt(0, 2 ** 47));
  }
  switch (r.code) {
    case JoinCode.NotOpen:
      throw new AppError('queue-not-open', 409, `The queue opens at ${new Date(r.value).toISOString()}.`, { opensAt: new Date(r.value).toISOString() });
    case JoinCode.SoldOut:
      throw soldOutProblem();
    case JoinCode.Ended:
      throw new AppError('sale-not-active', 409, 'The sale has ended.', { state: 'ended' });
    case JoinCode.NotLoaded:
      throw problems.unavailable('The waiting room could not be loaded; retry shortly.');
  }
  const snap = await advance(d, w, userId);
  if (!snap.ticket) throw problems.unavailable('The ticket was lost by Redis; join again.');
  return { created: r.code === JoinCode.Joined, answer: answerOf(d, saleId, userId, snap) };
}

/** Reads the shopper's ticket. @throws AppError 404 not-found when they have none. */
export async function readTicket(d: ApiDeps, saleId: string, userId: string): Promise<QueueAnswer> {
  const w = await roomOf(d, saleId);
  const snap = await advance(d, w, userId);
  if (!snap.ticket) throw problems.notFound(`You have no ticket for sale ${saleId}: POST /api/sales/${saleId}/queue to join.`);
  return answerOf(d, saleId, userId, snap);
}
