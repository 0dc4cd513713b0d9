/**
 * A TCP proxy in front of a real service that a test can cut and restore: an outage of PostgreSQL (or any
 * dependency) for one process under test, without stopping the service the other test files share. It can also
 * go deaf one way (`muteReplies`): what the client sends still arrives, the service's answers are dropped, as when
 * a connection dies after a frame left (a publish stored by the broker whose confirm never comes back).
 *
 * Given several ports, it balances: each new connection goes to the next port in turn (round robin per connection,
 * as a layer-4 load balancer does), so clients that open a connection per request (supertest) reach every node.
 */
import net from 'node:net';

export interface TcpProxy {
  port: number;
  /** Drops every open connection and refuses new ones. */
  cut(): void;
  /** From now on drops what the service sends back on open connections (the client's bytes still arrive). */
  muteReplies(): void;
  restore(): void;
  close(): Promise<void>;
}

/** Starts a proxy on a free port of 127.0.0.1 in front of `targetPort` (or each of several, in turn) on `targetHost`. */
export async function startTcpProxy(targetPort: number | readonly number[], targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const ports = typeof targetPort === 'number' ? [targetPort] : targetPort;
  let next = 0;
  let up = true;
  let muted = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (!up) return client.destroy();
    const upstream = net.connect(ports[next++ % ports.length]!, targetHost);
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => muted || client.write(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      up = false;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    muteReplies() {
      muted = true;
    },
    restore() {
      up = true;
      muted = false;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const DEFAULT_PORTS: Record<string, number> = { 'amqp:': 5672, 'redis:': 6379, 'postgresql:': 5432, 'postgres:': 5432 };

/**
 * A proxy in front of the service a URL names. @returns the proxy and the same URL pointing at it (credentials,
 * path and query kept).
 */
export async function proxyFor(serviceUrl: string): Promise<{ proxy: TcpProxy; url: string }> {
  const u = new URL(serviceUrl);
  const proxy = await startTcpProxy(Number(u.port || DEFAULT_PORTS[u.protocol]), u.hostname);
  u.port = String(proxy.port);
  return { proxy, url: u.toString() };
}
