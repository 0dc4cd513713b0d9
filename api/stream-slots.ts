/**
 * Caps the event streams one shopper holds open on this API process: each stream holds a Redis subscription and
 * memory, so a shopper opening thousands of them on one purchase must be refused (429), not served.
 */
import type { RequestHandler } from 'express';
import { AppError } from './problem.ts';

export class StreamSlots {
  private readonly open = new Map<string, number>();
  constructor(private readonly perShopper: number) {}

  /** Takes a slot for `userId`. @returns the function giving it back (call once), or undefined when all are taken. */
  acquire(userId: string): (() => void) | undefined {
    const n = this.open.get(userId) ?? 0;
    if (n >= this.perShopper) return undefined;
    this.open.set(userId, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(userId) ?? 1) - 1;
      if (left > 0) this.open.set(userId, left);
      else this.open.delete(userId); // the map holds only shoppers with a stream open
    };
  }

  /** Shoppers with at least one stream open, count. */
  get size(): number {
    return this.open.size;
  }
}

/**
 * Middleware: takes a stream slot for `req.userId` until the connection closes; a shopper already at
 * `perShopper` streams gets 429 `rate-limited`.
 */
export function streamSlot(slots: StreamSlots, retryMs: number): RequestHandler {
  return (req, res, next) => {
    const release = slots.acquire(req.userId!);
    if (!release) {
      const s = String(Math.max(1, Math.ceil(retryMs / 1000)));
      return next(new AppError('rate-limited', 429, 'Too many event streams open; close one first.', { limit: 'streams' }, { 'Retry-After': s }));
    }
    res.on('close', release);
    next();
  };
}
