/**
 * A private Redis Cluster for tests: `masters` masters with one replica each (redis-server in cluster mode on
 * consecutive ports from `basePort`, node-timeout 2000 ms, no persistence, folders under `dir`), created with
 * `redis-cli --cluster create`. Built on scripts/local/redis-node.ts; ends only the pids it started.
 *
 * From a shell: `tsx scripts/local/redis-cluster.ts [basePort]` runs one until Ctrl-C.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isMain } from '../../core/process.ts';
import { sleep } from './child.ts';
import { startRedisNode, type RedisNode } from './redis-node.ts';

const run = promisify(execFile);

export interface RedisClusterOptions {
  basePort: number;
  dir: string;
  /** Masters, count (each gets one replica). */
  masters?: number;
  /** cluster-node-timeout, ms: a master unreachable this long is failed over to its replica. */
  nodeTimeoutMs?: number;
}

export interface RedisCluster {
  nodes: RedisNode[];
  /** `host:port` of every node, for REDIS_CLUSTER_NODES. */
  seeds: string[];
  /** The hash slot of `key` (CLUSTER KEYSLOT on a live node). */
  slotOf(key: string): Promise<number>;
  /** The node that is master of `slot` now. */
  masterOf(slot: number): Promise<RedisNode>;
  /** Resolves once every live node reports cluster_state:ok; @returns ms waited. @throws after `timeoutMs`. */
  waitOk(timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-p', String(port), ...args], { timeout: 5000 });
  return stdout;
}

/** Starts the nodes, creates the cluster, waits for cluster_state:ok. @throws when it does not form in 30 s. */
export async function startRedisCluster(o: RedisClusterOptions): Promise<RedisCluster> {
  const count = (o.masters ?? 3) * 2;
  const args = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', String(o.nodeTimeoutMs ?? 2000)];
  const nodes: RedisNode[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    for (let i = 0; i < count; i++) {
      const dir = join(o.dir, `redis-${o.basePort + i}`);
      rmSync(dir, { recursive: true, force: true });
      nodes.push(await startRedisNode({ port: o.basePort + i, dir, extraArgs: args }));
    }
    const seeds = nodes.map((n) => `127.0.0.1:${n.port}`);
    await run('redis-cli', ['--cluster', 'create', ...seeds, '--cluster-replicas', '1', '--cluster-yes'], { timeout: 30_000 });
    const cluster: RedisCluster = {
      nodes,
      seeds,
      async slotOf(key) {
        const live = nodes.find((n) => n.child)!;
        return Number((await cli(live.port, 'CLUSTER', 'KEYSLOT', key)).trim());
      },
      async masterOf(slot) {
        for (const n of nodes) {
          if (!n.child) continue;
          const role = await cli(n.port, 'ROLE').catch(() => '');
          if (!role.startsWith('master')) continue;
          const info = await cli(n.port, 'CLUSTER', 'NODES');
          const me = info.split('\n').find((l) => l.includes('myself'));
          const ranges = me?.split(' ').slice(8) ?? [];
          if (ranges.some((r) => { const [a, b = a] = r.split('-').map(Number); return slot >= a! && slot <= b!; })) return n;
        }
        throw new Error(`no live master holds slot ${slot}`);
      },
      async waitOk(timeoutMs = 30_000) {
        const start = Date.now();
        for (;;) {
          const live = nodes.filter((n) => n.child);
          const states = await Promise.all(live.map((n) => cli(n.port, 'CLUSTER', 'INFO').catch(() => '')));
          if (states.every((s) => s.includes('cluster_state:ok'))) return Date.now() - start;
          if (Date.now() - start > timeoutMs) throw new Error('Redis Cluster not ok in time');
          await sleep(100);
        }
      },
      stop,
    };
    await cluster.waitOk();
    return cluster;
  } catch (err) {
    await stop();
    throw err;
  }
}

if (isMain(import.meta.url)) {
  const basePort = Number(process.argv[2] ?? 7101);
  const c = await startRedisCluster({ basePort, dir: `/tmp/redis-cluster-${basePort}` });
  console.log(`Redis Cluster on ${c.seeds.join(',')}; Ctrl-C stops it`);
  process.once('SIGINT', () => void c.stop().then(() => process.exit(0)));
}
