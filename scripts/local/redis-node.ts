/**
 * A private Redis node for fault tests: redis-server on its own port and data folder, no persistence (no RDB, no
 * AOF), as the shared one runs. `restart()` starts it again on the same port and folder, empty: that is the "Redis
 * forgets everything" fault.
 *
 * Usage from code: `const r = await startRedisNode({ port: 6391, dir })`, then `r.kill()`, `r.restart()`, `r.stop()`.
 * From a shell: `tsx scripts/local/redis-node.ts [port]` runs one until Ctrl-C.
 */
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { isMain } from '../../core/process.ts';
import { awaitReady, spawnChild, type ChildHandle } from './child.ts';

export interface RedisNodeOptions {
  /** TCP port on 127.0.0.1. */
  port: number;
  /** Working folder (created); the log is `redis.log` in it. */
  dir: string;
  /** How long `start` waits for PING to answer, ms. */
  readyTimeoutMs?: number;
  /** More redis-server arguments, e.g. `['--cluster-enabled', 'yes']`. */
  extraArgs?: string[];
}

export interface RedisNode {
  readonly port: number;
  readonly url: string;
  readonly logPath: string;
  /** The running process, undefined while killed. */
  readonly child: ChildHandle | undefined;
  /** Pids of the running node (one), empty while down. */
  pids(): number[];
  /** kill -9; resolves once the process ended. Its whole state is gone. */
  kill(): Promise<void>;
  /** Starts it again, empty, on the same port and folder; resolves when it answers PING. */
  restart(): Promise<void>;
  /** SIGTERM (SIGKILL after 5 s); safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts redis-server and waits until it answers PING.
 * @throws when it does not answer within `readyTimeoutMs` (the process is killed first).
 */
export async function startRedisNode(opts: RedisNodeOptions): Promise<RedisNode> {
  mkdirSync(opts.dir, { recursive: true });
  const logPath = join(opts.dir, 'redis.log');
  let child: ChildHandle | undefined;
  const launch = async (): Promise<void> => {
    child = spawnChild(
      'redis-server',
      ['--port', String(opts.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', opts.dir, '--logfile', logPath, '--daemonize', 'no', ...(opts.extraArgs ?? [])],
      { env: process.env, logPath },
    );
    await awaitReady(child, { name: `redis-server on port ${opts.port}`, timeoutMs: opts.readyTimeoutMs ?? 10_000, pollMs: 50, see: logPath, probe: () => ping(opts.port) });
  };
  await launch();
  return {
    port: opts.port,
    url: `redis://127.0.0.1:${opts.port}`,
    logPath,
    get child() {
      return child?.exit ? undefined : child;
    },
    pids: () => (child && !child.exit ? [child.pid] : []),
    kill: async () => {
      await child?.kill();
    },
    restart: async () => {
      if (child && !child.exit) await child.kill();
      await launch();
    },
    stop: async () => {
      await child?.stop(5000);
    },
  };
}

/** True when something on `port` answers `+PONG` to an inline PING within 500 ms. */
export function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

if (isMain(import.meta.url)) {
  const port = Number(process.argv[2] ?? 6391);
  const node = await startRedisNode({ port, dir: `/tmp/redis-node-${port}` });
  console.log(`redis-server pid ${node.pids().join(',')} on ${node.url}; Ctrl-C stops it`);
  process.once('SIGINT', () => void node.stop().then(() => process.exit(0)));
}
