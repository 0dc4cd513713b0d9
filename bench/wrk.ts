/**
 * Closed-loop load with wrk (Debian package `wrk`; https://github.com/wg/wrk), the load generator of `npm run bench`
 * where it is installed: written in C, it spends a fraction of a core where autocannon spends a whole one, so on a
 * 2-core machine the server under test, not the generator, is what a figure measures. The script
 * (wrk-purchases.lua) sends each shopper's token once and checks every answer; the CPU wrk used is measured and
 * reported beside each figure.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuWindow } from './cpu.ts';
import { runStats, type ClosedLoopOptions, type RunStats } from './closed-loop.ts';

const SCRIPT = fileURLToPath(new URL('./wrk-purchases.lua', import.meta.url));

/** True when `wrk` runs here. */
export function hasWrk(): boolean {
  return spawnSync('wrk', ['-v']).error === undefined;
}

export interface WrkOptions extends ClosedLoopOptions {
  /** wrk threads (each one core at most). */
  threads: number;
}

interface WrkResult {
  answered: number;
  unexpected: number;
  noops: number;
  exhausted: number;
  sent: number;
  sample: string;
  durationUs: number;
  requests: number;
  errors: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

/**
 * Runs wrk against `url + path`. @returns our statistics (latency over every answer, from wrk's histogram).
 * @throws when wrk fails, or runs out of tokens before the run ends (the caller must hand it more).
 */
export async function wrkClosedLoop(o: WrkOptions): Promise<RunStats> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-wrk-'));
  try {
    const threads = Math.max(1, Math.min(o.threads, o.tokens.length));
    const per = Math.ceil(o.tokens.length / threads);
    for (let t = 0; t < threads; t++) {
      const block = o.tokens.slice(t * per, (t + 1) * per);
      // Thread 0's first request() call is wrk's look at the script, never sent: it gets a copy of the first token.
      if (t === 0) block.unshift(block[0]!);
      writeFileSync(join(dir, `tokens-${t}.txt`), block.join('\n') + '\n');
    }
    const connections = Math.max(threads, o.quota ? Math.min(o.connections, o.tokens.length) : o.connections);
    const args = ['-t', String(threads), '-c', String(connections), '-d', `${Math.ceil(o.durationS)}s`, '--timeout', '30s', '-s', SCRIPT, o.url];
    const startedAt = Date.now();
    const child = spawn('wrk', args, {
      env: {
        ...process.env,
        BENCH_WRK_DIR: dir,
        BENCH_WRK_PATH: o.path,
        BENCH_WRK_EXPECT: o.expect,
        BENCH_WRK_WRAP: o.wrap ? '1' : '0',
        BENCH_WRK_QUOTA: o.quota ? '1' : '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const end = cpuWindow([...(o.cpu ?? []), { name: 'generator', pids: () => (child.pid ? [child.pid] : []) }]);
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    // Under a quota each thread says when all its shoppers have their answer; wrk itself would sleep out -d, so it
    // is stopped with SIGINT (its own way to end a run early) once every thread is done.
    let lastAnswerAt: number | undefined;
    // The CPU reading is taken when the load ends: the last thread done, or wrk's `done` printing its result.
    const cpu = await new Promise<ReturnType<typeof end>>((resolve, reject) => {
      let reading: ReturnType<typeof end> | undefined;
      child.stdout.on('data', () => {
        if (o.quota && lastAnswerAt === undefined && out.split('BENCH_WRK_THREAD_DONE').length - 1 >= threads) {
          lastAnswerAt = Date.now();
          reading = end();
          child.kill('SIGINT');
        }
        if (!reading && out.includes('BENCH_WRK_RESULT')) reading = end();
      });
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 && reading ? resolve(reading) : reject(new Error(`wrk exited with ${code}: ${err || out}`))));
    });
    const line = out.split('\n').find((l) => l.startsWith('BENCH_WRK_RESULT '));
    if (!line) throw new Error(`wrk printed no result: ${out}${err}`);
    const r = JSON.parse(line.slice('BENCH_WRK_RESULT '.length)) as WrkResult;
    if (r.exhausted > 0) throw new Error(`wrk ran out of shoppers after ${r.sent} requests: hand it more tokens`);
    const durationS = lastAnswerAt !== undefined ? (lastAnswerAt - startedAt) / 1000 : r.durationUs / 1e6;
    const ids = o.expect === 'accept' || o.expect === 'crowd' ? readFileSync(join(dir, 'ids.txt'), 'utf8').split('\n').filter(Boolean) : [];
    const latency = { p50: r.p50Us / 1000, p99: r.p99Us / 1000, p99_9: r.p999Us / 1000, max: r.maxUs / 1000 };
    return runStats({ sent: r.sent, answers: r.answered, unexpected: r.unexpected, sample: r.sample, errors: r.errors, durationS, latency, startedAt, ids, cpu });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
