/**
 * The head of every Server-Sent Events response (https://html.spec.whatwg.org/multipage/server-sent-events.html):
 * sent at once, never cached or transformed, and not buffered by a reverse proxy (`X-Accel-Buffering: no`).
 */
import type { Response } from 'express';

/** Answers 200 `text/event-stream` and flushes the head, so the client's EventSource opens now. */
export function openEventStream(res: Response): void {
  res.status(200).set({
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache, no-transform',
    Connection: 'keep-alive',
    'X-Accel-Buffering': 'no',
  });
  res.flushHeaders();
}
