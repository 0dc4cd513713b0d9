/**
 * Waiting-room event streams of this API node. Instead of one message per shopper, the node advances each sale's
 * serving counter once per tick (QUEUE_TICK_MS) with one script call that also marks every shopper it streams for
 * as present, and recomputes each stream's view from that one reply; only a stream whose ticket may have changed
 * state (it reached the head, or sits in a random sale's draw pool) costs a read of its own. A sell-out, a place
 * coming free or stock coming back therefore reaches every stream within one tick, whichever node changed it.
 */
import type { QueueSnapshot } from '../core/waiting-room/scripts.ts';
import type { WaitingRoom } from '../core/waiting-room/settings.ts';
import type { ApiDeps } from './deps.ts';
import { advance, answerOf, type QueueAnswer } from './queue-service.ts';

export interface QueueStream {
  userId: string;
  /** The ticket as last read. */
  ticket: NonNullable<QueueSnapshot['ticket']>;
  send(answer: QueueAnswer): void;
}

export class QueueStreams {
  private readonly sales = new Map<string, { room: WaitingRoom; streams: Set<QueueStream> }>();
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;

  constructor(private readonly d: ApiDeps) {}

  /** Adds a stream. @returns a function that removes it. */
  add(room: WaitingRoom, s: QueueStream): () => void {
    let entry = this.sales.get(room.saleId);
    if (!entry) this.sales.set(room.saleId, (entry = { room, streams: new Set() }));
    entry.streams.add(s);
    if (!this.timer) {
      this.timer = setInterval(() => void this.tick(), this.d.config.QUEUE_TICK_MS);
      this.timer.unref();
    }
    return () => {
      entry.streams.delete(s);
      if (entry.streams.size === 0) this.sales.delete(room.saleId);
      if (this.sales.size === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      await Promise.all([...this.sales.values()].map((e) => this.tickSale(e.room, e.streams)));
    } catch (err) {
      this.d.logger.warn({ err: (err as Error).message }, 'queue tick failed');
    } finally {
      this.ticking = false;
    }
  }

  private async tickSale(room: WaitingRoom, streams: Set<QueueStream>): Promise<void> {
    const list = [...streams];
    const snap = await advance(this.d, room, '', list.map((s) => s.userId));
    await Promise.all(
      list.map(async (s) => {
        const t = s.ticket;
        const settled = t.status === 'w' && t.place > snap.serving && snap.started;
        const own = settled ? { ...snap, ticket: t } : await advance(this.d, room, s.userId);
        if (!own.ticket) return;
        s.ticket = own.ticket;
        s.send(answerOf(this.d, room.saleId, s.userId, own));
      }),
    );
  }
}
