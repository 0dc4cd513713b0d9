/**
 * The benchmark's sizes, read once from the environment: each BENCH_* variable overrides its default, and
 * BENCH_QUICK=1 makes every default small (a run of seconds that checks the harness, not the system).
 */
const quick = process.env.BENCH_QUICK === '1';

function setting(name: string, full: number, small: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? (quick ? small : full) : Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${raw}`);
  return n;
}

export const settings = Object.freeze({
  quick,
  /** Repetitions of the whole sequence of measured steps, each on fresh sales: the range of every figure. */
  runs: setting('BENCH_RUNS', 3, 1),
  /** Length of each closed-loop and fixed-rate run, s. */
  durationS: setting('BENCH_DURATION_S', 10, 2),
  /** Unmeasured load before the first run, s: JIT compilation and connection pools settle. */
  warmupS: setting('BENCH_WARMUP_S', 3, 1),
  connections: setting('BENCH_CONNECTIONS', 64, 16),
  /** Admitted purchases waiting for the worker when it starts. */
  backlog: setting('BENCH_BACKLOG', 100_000, 2_000),
  /** The fixed rate of the accept path's latency run, as a share of the same run's highest rate. */
  rateShare: setting('BENCH_RATE_SHARE', 0.5, 0.5),
  /** Fixed rate (req/s) and length (s) of the end-to-end run. */
  e2eRate: setting('BENCH_E2E_RATE', 1000, 200),
  e2eDurationS: setting('BENCH_E2E_DURATION_S', 10, 2),
  crowd: setting('BENCH_CROWD', 100_000, 2_000),
  crowdStock: setting('BENCH_CROWD_STOCK', 1_000, 100),
  /** Longest wait for the worker to decide everything, s. */
  drainTimeoutS: setting('BENCH_DRAIN_TIMEOUT_S', 600, 120),
  /** Shoppers handed to a timed accept run per second of it: more than one process can admit here. */
  acceptPoolPerS: setting('BENCH_ACCEPT_POOL_PER_S', 12_000, 12_000),
});

export type Settings = typeof settings;

/** The targets the figures are held to (from the hot-path work's goals). */
export const TARGETS = Object.freeze({
  acceptOfCeiling: 0.4,
  acceptP99AtShareMs: 50,
  soldOutOfCeiling: 0.95,
  drainPerS: 20_000,
  crowdAllFinalS: 10,
  e2eP99Ms: 100,
});
