/**
 * Server-Sent Events responses (https://html.spec.whatwg.org/multipage/server-sent-events.html): the head every
 * stream sends, and the lifecycle of a live one (the purchase and waiting-room streams).
 */
import type { Response } from 'express';
import type { ApiDeps } from './deps.ts';

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

/** A live stream: opened once its first answer is known, closed once however it ends. */
export interface LiveStream {
  /** True once `open` has sent the head. */
  readonly opened: boolean;
  /** True once closed: the client left, the stream ended, its lifetime ran out or the node shuts down. */
  readonly closed: boolean;
  /**
   * Sends the head, registers the stream for a clean end at shutdown (api/open-streams.ts), and starts its
   * heartbeat (`: heartbeat` every SSE_HEARTBEAT_MS) and its lifetime (closed after SSE_MAX_LIFETIME_MS, so no
   * connection is held forever: the client comes back with Last-Event-ID, maybe to another node).
   */
  open(): void;
  /** Writes one event (its lines, without the blank line); the first is preceded by `retry: SSE_RETRY_MS`. */
  write(event: string): void;
  /**
   * Closes the stream, once: runs the `onClose` given at creation, then ends the response if it was opened (before
   * that, the route still answers, e.g. with a problem).
   */
  close(): void;
}

/**
 * Starts the lifecycle of a stream on `res`: a client that leaves at any point (even before `open`) closes it.
 * @param onClose - releases what the stream holds (a subscription), called once.
 */
export function liveStream(d: Pick<ApiDeps, 'config' | 'streams'>, res: Response, onClose: () => void): LiveStream {
  let opened = false;
  let closed = false;
  let written = false;
  let heartbeat: NodeJS.Timeout | undefined;
  let lifetime: NodeJS.Timeout | undefined;
  let unregister: (() => void) | undefined;
  const stream: LiveStream = {
    get opened() {
      return opened;
    },
    get closed() {
      return closed;
    },
    open() {
      if (opened || closed) return;
      opened = true;
      openEventStream(res);
      unregister = d.streams.add(res, stream.close);
      heartbeat = setInterval(() => res.write(': heartbeat\n\n'), d.config.SSE_HEARTBEAT_MS);
      lifetime = setTimeout(stream.close, d.config.SSE_MAX_LIFETIME_MS);
    },
    write(event) {
      if (!opened || closed) return;
      // Every stream tells EventSource when to reconnect, before its first event (never on one with nothing to send).
      if (!written) res.write(`retry: ${d.config.SSE_RETRY_MS}\n\n`);
      written = true;
      res.write(`${event}\n\n`);
    },
    close() {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      clearTimeout(lifetime);
      onClose();
      unregister?.();
      if (opened) res.end();
    },
  };
  res.on('close', stream.close);
  return stream;
}
