/**
 * A private three-node RabbitMQ cluster for tests: nodes `rN@localhost` started with scripts/local/rabbitmq-node.ts
 * (own AMQP and distribution ports, data under `dir`), sharing one Erlang cookie written before they start, then
 * joined to the first with `rabbitmqctl join_cluster`. Ends only the pids it started.
 *
 * From a shell: `tsx scripts/local/rabbitmq-cluster.ts [basePort]` runs one until Ctrl-C.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isMain } from '../../core/process.ts';
import { startRabbitNode, type RabbitNode } from './rabbitmq-node.ts';

const BIN = '/usr/lib/rabbitmq/bin';
const run = promisify(execFile);

export interface RabbitCluster {
  nodes: RabbitNode[];
  /** AMQP URLs of the nodes, for AMQP_URLS. */
  urls: string[];
  /** The node whose AMQP port leads `queue` now (its quorum leader). */
  leaderOf(queue: string): Promise<RabbitNode>;
  stop(): Promise<void>;
}

/** Starts `size` nodes (default 3) on `basePort`, `basePort + 1`, … and clusters them. @throws when one fails. */
export async function startRabbitCluster(o: { basePort: number; dir: string; size?: number; prefix?: string }): Promise<RabbitCluster> {
  const size = o.size ?? 3;
  const cookie = randomBytes(16).toString('hex');
  const nodes: RabbitNode[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  const prefix = o.prefix ?? 'rc';
  const dirOf = (i: number) => join(o.dir, `${prefix}${i + 1}`);
  const homeEnv = (i: number) => ({ ...process.env, HOME: dirOf(i) });
  try {
    const started = await Promise.all(
      Array.from({ length: size }, (_, i) => {
        const dir = dirOf(i);
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, '.erlang.cookie'), cookie, { mode: 0o400 });
        return startRabbitNode({ name: `${prefix}${i + 1}`, port: o.basePort + i, distPort: o.basePort + 20000 + i, dir });
      }),
    );
    nodes.push(...started);
    const ctl = (i: number, ...args: string[]) => run(`${BIN}/rabbitmqctl`, ['-q', '-n', nodes[i]!.nodename, ...args], { env: homeEnv(i), timeout: 60_000 });
    for (let i = 1; i < size; i++) {
      await ctl(i, 'stop_app');
      await ctl(i, 'join_cluster', nodes[0]!.nodename);
      await ctl(i, 'start_app');
    }
    return {
      nodes,
      urls: nodes.map((n) => n.url),
      async leaderOf(queue) {
        for (let i = 0; i < size; i++) {
          if (!nodes[i]!.child) continue;
          const { stdout } = await ctl(i, 'list_queues', 'name', 'leader', '--no-table-headers').catch(() => ({ stdout: '' }));
          const line = stdout.split('\n').find((l) => l.split('\t')[0] === queue);
          const leader = line?.split('\t')[1]?.trim();
          const node = nodes.find((n) => n.nodename === leader);
          if (node) return node;
        }
        throw new Error(`no leader found for ${queue}`);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

if (isMain(import.meta.url)) {
  const basePort = Number(process.argv[2] ?? 5701);
  const c = await startRabbitCluster({ basePort, dir: `/tmp/rabbitmq-cluster-${basePort}` });
  console.log(`RabbitMQ cluster on ${c.urls.join(',')}; Ctrl-C stops it`);
  process.once('SIGINT', () => void c.stop().then(() => process.exit(0)));
}
