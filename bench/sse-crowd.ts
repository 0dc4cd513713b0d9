/**
 * A crowd of waiting-room streams in a process of its own (forked by bench/waiting-room.ts with an IPC channel):
 * each process holds as many real SSE connections as its open-file limit allows, and its own event loop times
 * their events, so the benchmark's measurements do not wait behind the crowd's traffic.
 *
 * Messages in: `{ type: 'open', port, path, opening, streams: [{ userId, token, localAddress }] }`, then
 * `{ type: 'report' }`, then `{ type: 'close' }`. Out: `{ type: 'opened', count, ended, seconds }` and
 * `{ type: 'report', events, admitted: [userId, receivedAtMs][] }`.
 */
import { openSse } from './sse-client.ts';

interface Open {
  type: 'open';
  port: number;
  path: string;
  opening: number;
  streams: { userId: string; token: string; localAddress: string }[];
}

const sockets: { close(): void }[] = [];
const admitted: [string, number][] = [];
let events = 0;
let ended = 0;

async function open(m: Open): Promise<void> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: m.opening }, async () => {
      while (next < m.streams.length) {
        const s = m.streams[next++]!;
        const stream = await openSse({
          port: m.port,
          path: m.path,
          token: s.token,
          localAddress: s.localAddress,
          onEvent: (data, at) => {
            events++;
            if (data.includes('"state":"admitted"')) admitted.push([s.userId, at]);
          },
          onEnd: () => ended++,
        });
        if (stream.status !== 200) throw new Error(`stream of ${s.userId}: ${stream.status} ${stream.body.slice(0, 200)}`);
        sockets.push(stream);
      }
    }),
  );
  process.send!({ type: 'opened', count: sockets.length, ended, seconds: (performance.now() - started) / 1000 });
}

process.on('message', (m: Open | { type: 'report' | 'close' }) => {
  if (m.type === 'open') {
    open(m).catch((err: Error) => {
      console.error(err.message);
      process.exit(1);
    });
  } else if (m.type === 'report') {
    process.send!({ type: 'report', events, admitted });
  } else {
    for (const s of sockets) s.close();
    process.exit(0);
  }
});
