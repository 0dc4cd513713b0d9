/**
 * `npm run test:cluster`: starts a private Redis Cluster (three masters with replicas) and a private three-node
 * RabbitMQ cluster (ports from 7201 and 5761, data under a temp folder), runs the pipeline suites against them
 * (REDIS_CLUSTER_NODES, AMQP_URLS, quorum queues on three nodes; each suite's system runs two API nodes behind a
 * round-robin proxy and two workers: TEST_API_NODES, TEST_WORKERS in test/support/system.ts), then the failover run
 * under load (scripts/local/failover.ts), and stops every process it started, by pid, also on failure.
 *
 * CLUSTER_SUITES (comma-separated test files) replaces the suites; CLUSTER_SKIP_SUITES=true or
 * CLUSTER_SKIP_FAILOVER=true leaves out either part.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRabbitCluster } from './rabbitmq-cluster.ts';
import { startRedisCluster } from './redis-cluster.ts';
import type { ChildHandle } from './child.ts';
import { runFailover } from './failover.ts';

const SUITES = (process.env.CLUSTER_SUITES ?? 'test/purchase-flow.test.ts,test/resilience.test.ts,test/failures.test.ts,test/reservations.test.ts').split(',');

const dir = mkdtempSync(join(tmpdir(), 'fs-cluster-'));
const started = Date.now();
const [redis, rabbit] = await Promise.all([
  startRedisCluster({ basePort: Number(process.env.CLUSTER_REDIS_PORT ?? 7201), dir }),
  startRabbitCluster({ basePort: Number(process.env.CLUSTER_AMQP_PORT ?? 5761), dir }),
]);
console.log(`clusters up in ${Date.now() - started} ms: Redis ${redis.seeds.join(',')}; RabbitMQ ${rabbit.urls.join(',')}`);
const env = { ...process.env, REDIS_CLUSTER_NODES: redis.seeds.join(','), AMQP_URLS: rabbit.urls.join(','), AMQP_QUORUM_SIZE: '3' };
const suiteEnv = { ...env, TEST_API_NODES: process.env.TEST_API_NODES ?? '2', TEST_WORKERS: process.env.TEST_WORKERS ?? '2' };

let failed = false;
/** The failover run's API nodes and workers, stopped with the clusters whatever ends the run. */
const children: ChildHandle[] = [];
const stopAll = async () => {
  await Promise.all(children.map((c) => c.stop(5000)));
  await Promise.all([redis.stop(), rabbit.stop()]);
};
// Ctrl-C, or a CI job's timeout (SIGTERM): nothing this run started outlives it.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void stopAll().then(() => process.exit(signal === 'SIGINT' ? 130 : 143)));
try {
  if (process.env.CLUSTER_SKIP_SUITES !== 'true') {
    const code = await new Promise<number>((resolve) => {
      console.log(`pipeline suites, ${suiteEnv.TEST_API_NODES} API nodes and ${suiteEnv.TEST_WORKERS} workers each: ${SUITES.join(' ')}`);
      const p = spawn('npx', ['vitest', 'run', ...SUITES], { env: suiteEnv, stdio: 'inherit' });
      p.once('exit', (c) => resolve(c ?? 1));
    });
    if (code !== 0) {
      failed = true;
      console.error(`pipeline suites failed against the clusters (exit ${code})`);
    }
  }
  if (process.env.CLUSTER_SKIP_FAILOVER !== 'true') {
    const report = await runFailover({ redis, rabbit, env, dir, children });
    console.log(report.lines.join('\n'));
    if (!report.ok) failed = true;
  }
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  await stopAll();
  if (!failed) rmSync(dir, { recursive: true, force: true });
  else console.error(`logs kept in ${dir}`);
}
process.exit(failed ? 1 : 0);
