/**
 * A lean Server-Sent Events client over raw TCP sockets, so one load generator can hold tens of thousands of real
 * streams: a socket and a short string per stream, none of fetch's machinery. It speaks just enough HTTP/1.1: a GET
 * with `Connection: close` (the server closes the socket when the stream ends), the status line, and the chunked
 * body Express writes, one chunk per event; each event's `data:` line is handed over as it arrives
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html).
 */
import net from 'node:net';

export interface SseOptions {
  port: number;
  path: string;
  token: string;
  /** A loopback source address (127.0.0.x): each holds its own range of ephemeral ports. */
  localAddress?: string;
  /** Called with each event's `data:` text and when it arrived (Date.now()). */
  onEvent(data: string, at: number): void;
  /** Called once when the server ends the stream or the socket fails. */
  onEnd?(): void;
}

export interface SseStream {
  /** The response's status; for a refusal, `body` holds the problem. */
  status: number;
  body: string;
  close(): void;
}

/** Opens a stream. Resolves once the response head arrived (and, when it is not 200, its body). */
export function openSse(o: SseOptions): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: o.port, ...(o.localAddress ? { localAddress: o.localAddress } : {}) });
    socket.setNoDelay(true);
    socket.setEncoding('utf8');
    let buf = '';
    let status = 0;
    let settled = false;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      if (!settled) {
        settled = true;
        if (status) resolve({ status, body: buf, close: () => undefined });
        else reject(new Error(`stream ${o.path}: the connection ended before the response head`));
      }
      o.onEnd?.();
    };
    socket.on('connect', () => {
      socket.write(`GET ${o.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${o.token}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n`);
    });
    socket.on('data', (chunk: string) => {
      buf += chunk;
      if (!status) {
        const head = buf.indexOf('\r\n\r\n');
        if (head < 0) return;
        status = Number(buf.slice(9, 12));
        buf = buf.slice(head + 4);
        if (status === 200) {
          settled = true;
          resolve({ status, body: '', close: () => socket.destroy() });
        }
      }
      if (status !== 200) return; // a refusal's body is read whole, until the server closes
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const d = block.lastIndexOf('data: ');
        if (d >= 0) o.onEvent(block.slice(d + 6), Date.now());
      }
    });
    socket.on('error', (err) => {
      if (!settled) {
        settled = true;
        reject(err);
      }
      end();
    });
    socket.on('close', end);
  });
}
