/**
 * Waiting-room event streams of this API node, kept current by the sale's announcements rather than by one message
 * or one read per shopper.
 *
 * - Every call of the advance script that changes the serving counter (admissions, places freed, sell-out, stock
 *   back, the shuffle done) announces the new counter with one SPUBLISH on the sale's channel, in the sale's slot.
 *   This node subscribes once per sale it holds streams for, so a change costs one message per node.
 * - From that one message the node recomputes every stream's view: the message names the shoppers it admitted, and
 *   a waiting ticket's place against the counter gives its position, both without a read. Only the tickets the
 *   counter may have reached otherwise (dropped, or admitted by a change this node missed; the pre-queue once
 *   shuffled) are read, in one call per chunk of TOUCH_CHUNK.
 * - State changes (admitted, expired, sold out, started) are sent at once; mere positions at most every
 *   POSITION_EVERY_MS, in passes paced at POSITION_SENDS_PER_S (chunks of SEND_CHUNK per event-loop turn), since
 *   every admission moves everyone behind: a node's cost per change is bounded, not one write per stream.
 * - Ticks stay the lazy driver of admission: each QUEUE_TICK_MS the node advances each sale it streams for (again
 *   while the script says a per-call bound stopped it, e.g. a shuffle chunk), so no scheduler can die. The same
 *   tick marks the node's shoppers present, each about every third of QUEUE_ABANDON_SECONDS (jittered), in calls
 *   of TOUCH_CHUNK: a tick's cost is bounded by the streams due, not by every stream on the node.
 * - Missed messages (a reconnect) cost nothing but time: the next tick's own reply carries the counter, and
 *   announcements are ordered by (loadedAt, version), so an older one never overwrites a newer one.
 */
import { performance } from 'node:perf_hooks';
import { QuietWarnings } from '../core/quiet-log.ts';
import { isNewer, parseQueueChange, queueKeys, touchTickets, type QueueSnapshot, type Ticket } from '../core/waiting-room/scripts.ts';
import type { WaitingRoom } from '../core/waiting-room/settings.ts';
import type { ApiDeps } from './deps.ts';
import type { ShardChannels } from './shard-channels.ts';
import { advance, answerOf, type QueueAnswer } from './queue-service.ts';

/** Shoppers marked and read in one touch call, count: bounds each call's time in Redis. */
const TOUCH_CHUNK = 500;
/** Streams whose views are recomputed per event-loop turn, count: the node keeps answering between chunks. */
const SEND_CHUNK = 500;
/** Positions (not states) are sent to a stream at most this often, ms: every admission moves every position. */
export const POSITION_EVERY_MS = 1000;
/**
 * Views one node recomputes per second and sale in a positions-only pass, count: bounds the pass's cost whatever
 * the streams (50,000 streams on a node: a position every 5 s). A state change (sold out, started) is not paced.
 */
export const POSITION_SENDS_PER_S = 10_000;
/** Most advance calls one tick makes for one sale while the script reports more to do (a 100,000 shuffle: ~300). */
const MAX_CALLS_PER_TICK = 500;

interface Stream {
  userId: string;
  ticket: Ticket;
  /** The sale's poolServed when `ticket.poolRank` was read. */
  poolServedAt: number;
  /** When this node next marks the shopper present, ms (this node's clock). */
  touchAt: number;
  /** A pass skipped it while its ticket was being read: the read sends its view. */
  skipped: boolean;
  send(answer: QueueAnswer): void;
  end(): void;
}

interface Sale {
  room: WaitingRoom;
  channel: string;
  streams: Set<Stream>;
  /** Opens under way: the subscription stays while any. */
  opening: number;
  /** The subscription to the sale's channel: resolves with its removal once Redis confirmed it. */
  subscribed: Promise<() => void>;
  /** The newest counter seen (never holding a ticket). */
  snap?: QueueSnapshot;
  /** Streams with a touch in flight. */
  reading: Set<Stream>;
  refreshTimer?: NodeJS.Timeout;
  refreshing: boolean;
  /** A state change (sold out, started) waits for a pass: run it unpaced. */
  urgent: boolean;
  lastRefresh: number;
}

/** A stream being opened: its first answer, then `start` to follow the ticket, `close` to leave (once). */
export interface OpenedStream {
  first: QueueAnswer;
  /** @param send - called with each new answer. @param end - called when the ticket is gone. */
  start(send: (a: QueueAnswer) => void, end: () => void): void;
  close(): void;
}

/** One pass over a sale's streams, for the logs (debug) and the benchmark. */
export interface PassStats {
  saleId: string;
  streams: number;
  /** Wall time of the pass (paced or not), ms. */
  ms: number;
  /** Event-loop time the pass itself took, ms. */
  busyMs: number;
  paced: boolean;
}

const noop = () => undefined;

export class QueueStreams {
  private readonly sales = new Map<string, Sale>();
  private readonly quiet: QuietWarnings;
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;

  constructor(private readonly d: ApiDeps) {
    this.quiet = new QuietWarnings(d.logger);
    // Stock came back (an expired reservation or a failure): restart the counter now rather than at the next tick.
    d.soldOut.on('returned', (saleId: string) => {
      const sale = this.sales.get(saleId);
      if (sale) this.advanceSale(sale).catch((err: Error) => this.quiet.warn({ err: err.message }, 'waiting-room advance failed'));
    });
  }

  /**
   * Opens a stream of `userId`'s ticket: subscribes to the sale's changes (once per sale and node) before reading
   * the ticket, so no change after the read is missed. @returns undefined when the shopper has no ticket.
   * @throws when Redis fails.
   */
  async open(room: WaitingRoom, userId: string): Promise<OpenedStream | undefined> {
    const sale = this.hold(room);
    const release = () => {
      sale.opening--;
      this.leave(sale);
    };
    let snap: QueueSnapshot;
    try {
      await sale.subscribed;
      snap = await advance(this.d, room, userId);
    } catch (err) {
      release();
      throw err;
    }
    if (!snap.ticket) {
      release();
      return undefined;
    }
    this.apply(sale, snap);
    const s: Stream = { userId, ticket: snap.ticket, poolServedAt: snap.poolServed, touchAt: this.nextTouch(), skipped: false, send: noop, end: noop };
    let state: 'opened' | 'started' | 'closed' = 'opened';
    return {
      first: answerOf(this.d, room.saleId, userId, snap),
      start: (send, end) => {
        if (state !== 'opened') return;
        state = 'started';
        s.send = send;
        s.end = end;
        sale.opening--;
        sale.streams.add(s);
        this.startTimer();
        if (this.mayHaveMoved(sale, s)) void this.touch(sale, [s]);
      },
      close: () => {
        if (state === 'closed') return;
        const was = state;
        state = 'closed';
        if (was === 'opened') return release();
        sale.streams.delete(s);
        this.leave(sale);
      },
    };
  }

  private hold(room: WaitingRoom): Sale {
    let sale = this.sales.get(room.saleId);
    if (!sale) {
      const channel = queueKeys(this.d.config.REDIS_KEY_PREFIX, room.saleId).channel;
      const created: Sale = { room, channel, streams: new Set(), opening: 0, subscribed: Promise.resolve(noop), reading: new Set(), refreshing: false, urgent: false, lastRefresh: 0 };
      // A missed message (a reconnect's `resync`) costs nothing but time: the next tick's reply carries the counter.
      created.subscribed = this.d.channels
        .subscribe(channel, (message) => message !== 'resync' && this.announced(created, message))
        .catch((err: unknown) => {
          this.forget(created); // the next open subscribes again
          throw err;
        });
      this.sales.set(room.saleId, created);
      sale = created;
    }
    sale.opening++;
    return sale;
  }

  private leave(sale: Sale): void {
    if (sale.streams.size > 0 || sale.opening > 0) return;
    if (this.forget(sale)) sale.subscribed.then((unsubscribe) => unsubscribe(), noop);
  }

  private announced(sale: Sale, message: string): void {
    const snap = parseQueueChange(message);
    if (snap) this.apply(sale, snap);
    else this.quiet.warn({ channel: sale.channel }, 'ignoring a malformed waiting-room change');
  }

  /** Drops a sale's entry. @returns false when it was already gone. */
  private forget(sale: Sale): boolean {
    if (this.sales.get(sale.room.saleId) !== sale) return false;
    this.sales.delete(sale.room.saleId);
    clearTimeout(sale.refreshTimer);
    if (this.sales.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    return true;
  }

  /**
   * Takes a counter: tells the shoppers it admitted at once (an announcement names them), and if it is newer than
   * the last, reads the tickets it may have reached and sends positions soon.
   */
  private apply(sale: Sale, snap: QueueSnapshot): void {
    if (snap.admitted) this.admit(sale, snap.admitted);
    if (!isNewer(snap, sale.snap)) return;
    const prev = sale.snap;
    sale.snap = snap.ticket || snap.admitted ? { ...snap, ticket: undefined, admitted: undefined } : snap;
    const due: Stream[] = [];
    for (const s of sale.streams) if (this.mayHaveMoved(sale, s)) due.push(s);
    if (due.length) void this.touch(sale, due);
    this.scheduleRefresh(sale, !prev || prev.soldOut !== snap.soldOut || prev.started !== snap.started);
  }

  private admit(sale: Sale, admitted: NonNullable<QueueSnapshot['admitted']>): void {
    if (!sale.snap) return; // the first counter of a sale comes from a read, which holds the tickets' states
    const users = new Set(admitted.users);
    for (const s of sale.streams) {
      if (s.ticket.status !== 'w' || !users.has(s.userId)) continue;
      s.ticket = { ...s.ticket, status: 'a', sessionEnd: admitted.sessionEnd };
      s.send(this.answer(sale, s));
    }
  }

  /** True when the counter may have reached the stream's ticket, so only a read can tell its state. */
  private mayHaveMoved(sale: Sale, s: Stream): boolean {
    const snap = sale.snap;
    const t = s.ticket;
    if (!snap || t.status !== 'w' || sale.reading.has(s)) return false;
    if (t.place > 0) return t.place <= snap.serving;
    if (t.place === 0) return snap.started;
    return snap.poolServed - s.poolServedAt > t.poolRank;
  }

  /** Marks the streams' shoppers present and reads their tickets, TOUCH_CHUNK per call; sends what changed. */
  private async touch(sale: Sale, streams: Stream[]): Promise<void> {
    for (const s of streams) sale.reading.add(s);
    const k = queueKeys(this.d.config.REDIS_KEY_PREFIX, sale.room.saleId);
    const before = sale.snap;
    try {
      for (let i = 0; i < streams.length; i += TOUCH_CHUNK) {
        const chunk = streams.slice(i, i + TOUCH_CHUNK);
        const { poolServed, tickets } = await touchTickets(this.d.redis, k, chunk.map((s) => s.userId));
        const next = this.nextTouch();
        chunk.forEach((s, j) => {
          sale.reading.delete(s);
          s.touchAt = next;
          const t = tickets[j];
          if (!sale.streams.has(s)) return;
          if (!t) return s.end(); // the queue was lost with Redis: the client reconnects, reads 404 and joins again
          // Only a new state or place is sent from here (or a view a pass skipped); positions go out with the passes.
          const moved = t.status !== s.ticket.status || t.place !== s.ticket.place || s.skipped;
          s.ticket = t;
          s.poolServedAt = poolServed;
          s.skipped = false;
          if (moved) s.send(this.answer(sale, s));
        });
      }
    } catch (err) {
      this.quiet.warn({ err: (err as Error).message }, 'waiting-room touch failed');
    } finally {
      for (const s of streams) sale.reading.delete(s);
    }
    // A change announced while reading may have reached tickets the read saw before it.
    if (sale.snap !== before) {
      const again = streams.filter((s) => sale.streams.has(s) && this.mayHaveMoved(sale, s));
      if (again.length) void this.touch(sale, again);
    }
  }

  private answer(sale: Sale, s: Stream): QueueAnswer {
    const snap = sale.snap!;
    const t = s.ticket;
    const rank = t.place === -1 && t.status === 'w' ? { ...t, poolRank: Math.max(0, t.poolRank - (snap.poolServed - s.poolServedAt)) } : t;
    return answerOf(this.d, sale.room.saleId, s.userId, snap, rank);
  }

  private scheduleRefresh(sale: Sale, urgent: boolean): void {
    sale.urgent ||= urgent;
    if (sale.refreshing) return;
    if (sale.refreshTimer && !urgent) return;
    clearTimeout(sale.refreshTimer);
    const wait = sale.urgent ? 0 : Math.max(0, sale.lastRefresh + POSITION_EVERY_MS - Date.now());
    sale.refreshTimer = setTimeout(() => void this.refresh(sale), wait);
    sale.refreshTimer.unref();
  }

  /**
   * Sends every stream its view under the newest counter (the route does not send an unchanged view again), in
   * chunks: back to back for a state change, else paced at POSITION_SENDS_PER_S.
   */
  private async refresh(sale: Sale): Promise<void> {
    sale.refreshTimer = undefined;
    sale.refreshing = true;
    const started = performance.now();
    const paced = !sale.urgent;
    sale.urgent = false;
    const snap = sale.snap;
    const list = [...sale.streams];
    let busy = 0;
    for (let i = 0; i < list.length; i += SEND_CHUNK) {
      const t0 = performance.now();
      for (let j = i; j < Math.min(i + SEND_CHUNK, list.length); j++) {
        const s = list[j]!;
        // A stream being read gets its view from the read (a ticket just placed or reached); the rest from here.
        if (!sale.streams.has(s)) continue;
        if (sale.reading.has(s)) s.skipped = true;
        else s.send(this.answer(sale, s));
      }
      const spent = performance.now() - t0;
      busy += spent;
      if (i + SEND_CHUNK >= list.length) break;
      const pause = paced && !sale.urgent ? (SEND_CHUNK * 1000) / POSITION_SENDS_PER_S - spent : 0;
      await new Promise((r) => (pause > 0 ? setTimeout(r, pause) : setImmediate(r)));
    }
    sale.refreshing = false;
    sale.lastRefresh = Date.now();
    const stats: PassStats = { saleId: sale.room.saleId, streams: list.length, ms: performance.now() - started, busyMs: busy, paced };
    this.d.logger.debug(stats, 'waiting-room views sent');
    if ((sale.snap !== snap || sale.urgent) && this.sales.get(sale.room.saleId) === sale) this.scheduleRefresh(sale, false);
  }

  private startTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.d.config.QUEUE_TICK_MS);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      await Promise.all(
        [...this.sales.values()].map(async (sale) => {
          await this.advanceSale(sale);
          await this.touchDue(sale);
        }),
      );
    } catch (err) {
      this.quiet.warn({ err: (err as Error).message }, 'waiting-room tick failed');
    } finally {
      this.ticking = false;
    }
  }

  /** Advances the sale's counter, again while the script reports a per-call bound stopped it. */
  private async advanceSale(sale: Sale): Promise<void> {
    for (let i = 0; i < MAX_CALLS_PER_TICK; i++) {
      const snap = await advance(this.d, sale.room, '');
      this.apply(sale, snap);
      if (!snap.more) return;
    }
  }

  private async touchDue(sale: Sale): Promise<void> {
    const now = Date.now();
    const due: Stream[] = [];
    for (const s of sale.streams) if (s.touchAt <= now && !sale.reading.has(s)) due.push(s);
    if (due.length) await this.touch(sale, due);
  }

  /** When a shopper just marked present is due again: a third of the abandon time, jittered down to a sixth. */
  private nextTouch(): number {
    const every = (this.d.config.QUEUE_ABANDON_SECONDS * 1000) / 3;
    return Date.now() + every * (0.5 + Math.random() / 2);
  }
}

const byChannels = new WeakMap<ShardChannels, QueueStreams>();

/** The waiting-room streams of a node: one instance per node's subscriptions, whatever app shares them. */
export function queueStreamsOf(d: ApiDeps): QueueStreams {
  let q = byChannels.get(d.channels);
  if (!q) byChannels.set(d.channels, (q = new QueueStreams(d)));
  return q;
}
