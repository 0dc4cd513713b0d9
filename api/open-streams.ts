/**
 * The SSE streams this node holds, so a shutdown can end each one cleanly: a last `retry:` field (the delay, ms,
 * after which an EventSource reconnects: https://html.spec.whatwg.org/multipage/server-sent-events.html) and the
 * end of the response, instead of a TCP reset. The client reconnects through the load balancer to another node and
 * resumes with Last-Event-ID.
 */
import type { Response } from 'express';

export class OpenStreams {
  private readonly streams = new Map<Response, () => void>();

  /** Registers an open stream with the function that closes it (unsubscribes, ends). @returns its removal. */
  add(res: Response, close: () => void): () => void {
    this.streams.set(res, close);
    return () => this.streams.delete(res);
  }

  /** Sends `retry: <retryMs>` on every stream and ends it. @returns how many were ended, count. */
  endAll(retryMs: number): number {
    const all = [...this.streams];
    this.streams.clear();
    for (const [res, close] of all) {
      if (!res.writableEnded) res.write(`retry: ${retryMs}\n\n`);
      close();
    }
    return all.length;
  }

  /** Streams open, count. */
  get size(): number {
    return this.streams.size;
  }
}
