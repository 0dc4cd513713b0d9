/**
 * What a shopper sees of their ticket, computed from one advance of the queue (see scripts.ts). Every node computes
 * it from the same Redis state, so two nodes give the same positions.
 *
 * `ahead` counts the tickets with a smaller place that were not served yet (served = admitted or dropped): for a
 * placed ticket, place - serving - 1 (an upper bound: abandoned tickets ahead still count until the head reaches
 * them and drops them); for a ticket in a random sale's draw pool, every placed ticket still waiting plus its rank
 * among the draws. `estimatedWaitSeconds` = ahead × the admission interval (ahead ÷ rate): it assumes the cap inside
 * does not stop admissions, so it is a lower bound when the cap is reached.
 */
import type { QueueSnapshot, Ticket } from './scripts.ts';

export type TicketState = 'prequeue' | 'waiting' | 'admitted' | 'done' | 'sold_out' | 'expired';

export interface TicketView {
  saleId: string;
  ticket: number;
  state: TicketState;
  /** 1-based place in line; null in the pre-queue (before the shuffle) and once admitted or out. */
  position: number | null;
  ahead: number | null;
  estimatedWaitSeconds: number | null;
  /** ISO 8601 end of the session, when admitted. */
  sessionExpiresAt?: string;
}

/** The shopper-visible view of ticket `t` (by default `snap.ticket`, which must then be set) under counter `snap`. */
export function ticketView(saleId: string, snap: QueueSnapshot, t: Ticket = snap.ticket!): TicketView {
  let state: TicketState;
  if (t.status === 'd') state = 'done';
  else if (t.status === 'x') state = 'expired';
  else if (t.status === 'a') state = t.sessionEnd > snap.now ? 'admitted' : 'expired';
  else if (snap.soldOut) state = 'sold_out';
  else if (!snap.started) state = 'prequeue';
  else state = 'waiting';
  let ahead: number | null = null;
  if (state === 'waiting' || (state === 'sold_out' && snap.started)) {
    ahead = t.place > 0 ? Math.max(0, t.place - snap.serving - 1) : t.place === -1 ? snap.waitingPlaced + Math.max(0, t.poolRank) : null;
  }
  return {
    saleId,
    ticket: t.number,
    state,
    position: ahead === null ? null : ahead + 1,
    ahead,
    estimatedWaitSeconds: ahead === null ? null : Math.ceil((ahead * snap.intervalUs) / 1_000_000),
    ...(state === 'admitted' ? { sessionExpiresAt: new Date(t.sessionEnd).toISOString() } : {}),
  };
}

/** True for states after which a ticket never changes. */
export function isFinalTicket(state: TicketState): boolean {
  return state === 'done' || state === 'expired';
}
