/**
 * A private RabbitMQ node for fault tests: `rN@localhost` on its own AMQP and distribution ports, with its own
 * data (Mnesia), logs, config, enabled-plugins file (none: no management, no prometheus) and Erlang cookie (HOME is
 * the node's folder, which holds `.erlang.cookie`), so it never touches the machine's shared broker. The data folder
 * survives `kill()`, so `restart()` brings back its durable queues and persistent messages, as a broker restarted
 * by an orchestrator would.
 *
 * Usage from code: `const b = await startRabbitNode({ name: 'r7', port: 5691, distPort: 25691, dir })`, then
 * `b.kill()`, `b.restart()`, `b.stop()`. From a shell: `tsx scripts/local/rabbitmq-node.ts [name] [port]` starts
 * one, prints its start time and runs until Ctrl-C.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { isMain } from '../../core/process.ts';
import { awaitReady, spawnChild, type ChildHandle } from './child.ts';

const BIN = '/usr/lib/rabbitmq/bin';
const run = promisify(execFile);

export interface RabbitNodeOptions {
  /** Node name before `@localhost`, e.g. `r7`. */
  name: string;
  /** AMQP port on 127.0.0.1. */
  port: number;
  /** Erlang distribution port (rabbitmqctl talks to the node through it). */
  distPort: number;
  /** The node's folder (created): mnesia/, log/, rabbitmq.conf, enabled_plugins, .erlang.cookie. */
  dir: string;
  /** How long `start` waits for `rabbitmqctl await_startup`, ms. */
  readyTimeoutMs?: number;
}

export interface RabbitNode {
  readonly nodename: string;
  readonly port: number;
  readonly url: string;
  readonly logPath: string;
  /** The running node's process group leader (the rabbitmq-server script), undefined while killed. */
  readonly child: ChildHandle | undefined;
  /** Pids of the running node: the launcher script and the Erlang VM (its process group); empty while down. */
  pids(): Promise<number[]>;
  /** kill -9 of the node's process group; its data folder stays. */
  kill(): Promise<void>;
  /** Starts it again on the same ports and data folder; resolves when `await_startup` returns. */
  restart(): Promise<void>;
  /** Graceful stop (SIGTERM: the script runs `rabbitmqctl stop`), SIGKILL after 20 s; safe to call twice. */
  stop(): Promise<void>;
  /** Milliseconds the last start took, spawn to `await_startup`. */
  lastStartMs: number;
}

/**
 * Starts the node and waits until it has booted.
 * @throws when it has not started within `readyTimeoutMs` (default 90 s; the process group is killed first).
 */
export async function startRabbitNode(opts: RabbitNodeOptions): Promise<RabbitNode> {
  const nodename = `${opts.name}@localhost`;
  const dirs = { mnesia: join(opts.dir, 'mnesia'), log: join(opts.dir, 'log') };
  for (const d of [opts.dir, dirs.mnesia, dirs.log]) mkdirSync(d, { recursive: true });
  const config = join(opts.dir, 'rabbitmq.conf');
  writeFileSync(config, [`listeners.tcp.default = 127.0.0.1:${opts.port}`, 'loopback_users.guest = true', 'log.console = false', 'log.file.level = info', ''].join('\n'));
  const plugins = join(opts.dir, 'enabled_plugins');
  writeFileSync(plugins, '[].\n');
  const cookie = join(opts.dir, '.erlang.cookie');
  if (!existsSync(cookie)) writeFileSync(cookie, randomBytes(16).toString('hex'), { mode: 0o400 });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: opts.dir,
    RABBITMQ_NODENAME: nodename,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(opts.port),
    RABBITMQ_DIST_PORT: String(opts.distPort),
    RABBITMQ_MNESIA_BASE: dirs.mnesia,
    RABBITMQ_LOG_BASE: dirs.log,
    RABBITMQ_CONFIG_FILE: config,
    RABBITMQ_ENABLED_PLUGINS_FILE: plugins,
    RABBITMQ_ADVANCED_CONFIG_FILE: join(opts.dir, 'advanced.config'),
    RABBITMQ_CONF_ENV_FILE: join(opts.dir, 'rabbitmq-env.conf'),
  };
  const logPath = join(opts.dir, 'server.out');
  let child: ChildHandle | undefined;
  const node: RabbitNode = {
    nodename,
    port: opts.port,
    url: `amqp://guest:guest@127.0.0.1:${opts.port}`,
    logPath,
    lastStartMs: 0,
    get child() {
      return child?.exit ? undefined : child;
    },
    pids: async () => (child && !child.exit ? groupPids(child.pid) : []),
    kill: async () => {
      await child?.kill();
    },
    restart: async () => {
      if (child && !child.exit) await child.kill();
      await launch();
    },
    stop: async () => {
      await child?.stop(20_000);
    },
  };
  const launch = async (): Promise<void> => {
    const started = Date.now();
    child = spawnChild(`${BIN}/rabbitmq-server`, [], { env, logPath });
    // await_startup fails at once while the VM has not registered with epmd yet, so it is retried until then.
    await awaitReady(child, {
      name: `RabbitMQ ${nodename}`,
      timeoutMs: opts.readyTimeoutMs ?? 90_000,
      pollMs: 300,
      see: `${logPath} and ${dirs.log}`,
      probe: (leftMs) => {
        const left = Math.max(1, Math.ceil(leftMs / 1000));
        return run(`${BIN}/rabbitmqctl`, ['-q', '-n', nodename, 'await_startup', '--timeout', String(left)], { env, timeout: (left + 5) * 1000 })
          .then(() => true, (err: Error) => `failed: ${err.message.split('\n').slice(0, 2).join(' ')}`);
      },
    });
    node.lastStartMs = Date.now() - started;
  };
  await launch();
  return node;
}

/** Pids in the process group `pgid` (ps), so a report can name exactly what a kill ends. */
async function groupPids(pgid: number): Promise<number[]> {
  const { stdout } = await run('ps', ['-o', 'pid=', '-g', String(pgid)]).catch(() => ({ stdout: '' }));
  return stdout.split(/\s+/).filter(Boolean).map(Number);
}

if (isMain(import.meta.url)) {
  const name = process.argv[2] ?? 'r1';
  const port = Number(process.argv[3] ?? 5691);
  const node = await startRabbitNode({ name, port, distPort: port + 20000, dir: `/tmp/rabbitmq-node-${name}` });
  console.log(`${node.nodename} pids ${(await node.pids()).join(',')} on ${node.url}: started in ${node.lastStartMs} ms; Ctrl-C stops it`);
  process.once('SIGINT', () => void node.stop().then(() => process.exit(0)));
}
