/**
 * A smoke runner for the k6 scripts in k6/: it runs a script unchanged under Node, with just enough of the k6 API
 * (k6, k6/http, k6/metrics, k6/execution, __ENV, __VU, __ITER) to prove that the script works against a real
 * system: setup, a few dozen iterations of each scenario over real HTTP, teardown, handleSummary. k6 itself cannot
 * be installed where these tests run, and a load-test script nobody has executed is a script that fails on the day.
 *
 * It is NOT a substitute for k6 and measures nothing worth reading:
 *  - executors are ignored: each scenario runs a fixed number of iterations (RunOptions.iterations, capped by the
 *    scenario's own iteration count) on a few concurrent VUs, scenarios one after another;
 *  - thresholds are NOT evaluated (they are listed in the report, and handleSummary's data carries none);
 *    correctness must be asserted through checks, which are counted exactly;
 *  - metrics are aggregated by name only (no tags, no sub-metrics); timings are wall-clock around fetch;
 *  - __ENV holds only RunOptions.env (k6 would add the system environment);
 *  - unsupported parts of the API (cookies, html(), open(), other k6 modules) fail loudly rather than pretend.
 *
 * How: k6 code is synchronous (`const res = http.post(...)`) while Node's fetch is not. Each VU is therefore a
 * worker thread with its own module instance (as each k6 VU has its own JavaScript runtime); it blocks with
 * Atomics.wait while this thread performs the request with fetch and hands the response back through a
 * MessagePort. The script and its neighbours are copied into a temporary directory next to a generated `k6`
 * package whose modules re-export the worker's implementation, so `import http from 'k6/http'` resolves without
 * rewriting the script. This thread stays free, so the API under test may run in the same process.
 */
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';

export interface RunOptions {
  /** The script's __ENV. */
  env?: Record<string, string>;
  /** Iterations per scenario (default 20), fewer when the scenario itself declares fewer. */
  iterations?: number;
  /** Concurrent VUs per scenario (default 4). */
  vus?: number;
  /** Run only these scenarios (default: all). */
  scenarios?: string[];
  /** The whole run, ms (default 120 000): a hung script is reported, not waited for. */
  timeoutMs?: number;
  /** Print handleSummary's `stdout`/`stderr` and the script's console output (to stderr, as k6 logs) (default true). */
  echo?: boolean;
}

export type Phase = 'init' | 'setup' | 'iteration' | 'teardown' | 'handleSummary' | 'runner';

export interface RunError {
  phase: Phase;
  scenario?: string;
  message: string;
}

export interface CheckTally {
  name: string;
  /** Group path, k6 style: '' at the root, '::group::subgroup' inside groups. */
  group: string;
  passes: number;
  fails: number;
}

export interface SummaryMetric {
  type: 'counter' | 'gauge' | 'rate' | 'trend';
  contains: 'default' | 'time';
  values: Record<string, number>;
}

export interface RunReport {
  script: string;
  scenarios: { name: string; executor: string; exec: string; iterations: number; vus: number }[];
  /** Iterations started and finished (with or without an exception). */
  iterations: number;
  checks: CheckTally[];
  failedChecks: { name: string; fails: number }[];
  /** Exceptions: in init, setup, an iteration, teardown or handleSummary, and the runner's own (timeout, crash). */
  errors: RunError[];
  metrics: Record<string, SummaryMetric>;
  /** The script's thresholds as declared. NOT evaluated. */
  thresholds: Record<string, unknown>;
  setupData: unknown;
  /** What handleSummary returned: `stdout`, `stderr` or a file path, to its content (files are also written). */
  summary: Record<string, string>;
  /** console output of the script. */
  logs: string[];
  /** No errors and no failed check. */
  ok: boolean;
}

// ---- Wire types between this thread and the VU threads ----------------------------------------------------

interface WireRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string | Uint8Array | null;
  timeoutMs: number;
  redirects: number | null;
}

interface WireResponse {
  status: number;
  statusText: string;
  url: string;
  headers: Record<string, string>;
  body: string | null;
  duration: number;
  error: string;
  errorCode: number;
}

interface Sample {
  metric: string;
  kind: SummaryMetric['type'];
  contains: SummaryMetric['contains'];
  value: number;
}

type FromWorker =
  | { t: 'ready'; options: Record<string, any> | undefined; exports: string[] }
  | { t: 'samples'; samples: Sample[]; checks: { name: string; group: string; ok: boolean }[] }
  | { t: 'error'; phase: Phase; message: string }
  | { t: 'result'; ok: true; json: string | undefined }
  | { t: 'result'; ok: false; message: string }
  | { t: 'abort'; message: string }
  | { t: 'done' };

/** Go's http.CanonicalHeaderKey, which k6 applies to response header names: `ETag` becomes `Etag`. */
export function canonicalHeaderKey(name: string): string {
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) return name;
  return name
    .split('-')
    .map((p) => p.charAt(0).toUpperCase() + p.slice(1).toLowerCase())
    .join('-');
}

/** k6 durations: '500ms', '10s', '1m30s', '2h', or a number of ms. */
export function parseDuration(value: unknown, fallbackMs = 0): number {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string' || value === '') return fallbackMs;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = value;
  while (rest) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!m) throw new Error(`Invalid duration "${value}"`);
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return total;
}

async function perform(r: WireRequest): Promise<WireResponse> {
  const started = performance.now();
  try {
    const res = await fetch(r.url, {
      method: r.method,
      headers: r.headers,
      body: r.method === 'GET' || r.method === 'HEAD' ? undefined : (r.body ?? undefined),
      redirect: r.redirects === 0 ? 'manual' : 'follow',
      signal: AbortSignal.timeout(r.timeoutMs),
    });
    const body = r.method === 'HEAD' ? '' : await res.text();
    const headers: Record<string, string> = {};
    res.headers.forEach((v, k) => {
      headers[canonicalHeaderKey(k)] = v;
    });
    return { status: res.status, statusText: `${res.status} ${res.statusText}`, url: res.url || r.url, headers, body, duration: performance.now() - started, error: '', errorCode: 0 };
  } catch (err) {
    const e = err as Error & { cause?: { message?: string } };
    const timeout = e.name === 'TimeoutError';
    return {
      status: 0,
      statusText: '',
      url: r.url,
      headers: {},
      body: null,
      duration: performance.now() - started,
      // k6's codes: 1050 request timeout, 1000 any other network error.
      error: timeout ? 'request timeout' : `${e.message}${e.cause?.message ? `: ${e.cause.message}` : ''}`,
      errorCode: timeout ? 1050 : 1000,
    };
  }
}

// ---- Aggregation --------------------------------------------------------------------------------------------

class Sinks {
  private readonly sinks = new Map<string, { kind: Sample['kind']; contains: Sample['contains']; values: number[] }>();

  add(s: Sample): void {
    let sink = this.sinks.get(s.metric);
    if (!sink) this.sinks.set(s.metric, (sink = { kind: s.kind, contains: s.contains, values: [] }));
    sink.values.push(s.value);
  }

  /** k6's summary shapes: counter {count, rate}, rate {rate, passes, fails}, gauge {value, min, max}, trend stats. */
  summarize(durationMs: number, trendStats: string[]): Record<string, SummaryMetric> {
    const out: Record<string, SummaryMetric> = {};
    for (const [name, { kind, contains, values }] of this.sinks) {
      let v: Record<string, number>;
      if (kind === 'counter') {
        const count = values.reduce((a, b) => a + b, 0);
        v = { count, rate: durationMs > 0 ? count / (durationMs / 1000) : 0 };
      } else if (kind === 'rate') {
        const passes = values.filter((x) => x !== 0).length;
        v = { rate: values.length ? passes / values.length : 0, passes, fails: values.length - passes };
      } else if (kind === 'gauge') {
        v = { value: values.at(-1) ?? 0, min: Math.min(...values), max: Math.max(...values) };
      } else {
        v = trend(values, trendStats);
      }
      out[name] = { type: kind, contains, values: v };
    }
    return out;
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

function trend(values: number[], stats: string[]): Record<string, number> {
  const sorted = [...values].sort((a, b) => a - b);
  const out: Record<string, number> = {};
  for (const stat of stats) {
    const p = /^p\((\d+(?:\.\d+)?)\)$/.exec(stat);
    if (p) out[stat] = percentile(sorted, Number(p[1]));
    else if (stat === 'avg') out[stat] = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : 0;
    else if (stat === 'min') out[stat] = sorted[0] ?? 0;
    else if (stat === 'max') out[stat] = sorted.at(-1) ?? 0;
    else if (stat === 'med') out[stat] = percentile(sorted, 50);
    else if (stat === 'count') out[stat] = sorted.length;
  }
  return out;
}

interface GroupNode {
  name: string;
  path: string;
  id: string;
  groups: GroupNode[];
  checks: { name: string; path: string; id: string; passes: number; fails: number }[];
}

/** k6's root_group: groups nested by path, each with its checks. */
function rootGroup(checks: CheckTally[]): GroupNode {
  const root: GroupNode = { name: '', path: '', id: '', groups: [], checks: [] };
  for (const c of checks) {
    let node = root;
    for (const name of c.group.split('::').slice(1)) {
      let child = node.groups.find((g) => g.name === name);
      if (!child) node.groups.push((child = { name, path: `${node.path}::${name}`, id: '', groups: [], checks: [] }));
      node = child;
    }
    node.checks.push({ name: c.name, path: `${c.group}::${c.name}`, id: '', passes: c.passes, fails: c.fails });
  }
  return root;
}

// ---- The run ------------------------------------------------------------------------------------------------

const DEFAULT_TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)'];

/**
 * Runs a k6 script: init, setup, each scenario's exec function for a few iterations, teardown, handleSummary.
 * Never throws for a problem in the script: everything is in the report.
 */
export async function runK6Script(scriptPath: string, opts: RunOptions = {}): Promise<RunReport> {
  const script = path.resolve(scriptPath);
  const env = { ...(opts.env ?? {}) };
  const echo = opts.echo ?? true;
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  const report: RunReport = {
    script,
    scenarios: [],
    iterations: 0,
    checks: [],
    failedChecks: [],
    errors: [],
    metrics: {},
    thresholds: {},
    setupData: undefined,
    summary: {},
    logs: [],
    ok: false,
  };
  const sinks = new Sinks();
  const checks = new Map<string, CheckTally>();
  const workers = new Set<Worker>();
  const started = Date.now();
  const dir = await mkdtemp(path.join(tmpdir(), 'k6-smoke-'));
  let aborted: string | undefined;

  /** Starts a VU thread and serves its requests; `onMessage` sees everything but samples and checks. */
  const spawn = (data: Record<string, unknown>, onMessage: (m: FromWorker) => void): Worker => {
    const flag = new SharedArrayBuffer(4);
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(path.join(dir, 'vu.mjs'), {
      workerData: { ...data, flag, rpcPort: port2, scriptUrl: pathToFileURL(path.join(dir, 'scripts', path.basename(script))).href },
      transferList: [port2],
      stdout: true,
      stderr: true,
    });
    workers.add(worker);
    const signal = new Int32Array(flag);
    port1.on('message', async (requests: WireRequest[]) => {
      const responses = await Promise.all(requests.map(perform));
      port1.postMessage(responses);
      Atomics.store(signal, 0, 1);
      Atomics.notify(signal, 0);
    });
    for (const stream of [worker.stdout, worker.stderr]) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        report.logs.push(chunk);
        if (echo) process.stderr.write(chunk);
      });
    }
    worker.on('message', (m: FromWorker) => {
      if (m.t === 'samples') {
        for (const s of m.samples) sinks.add(s);
        for (const c of m.checks) {
          const key = `${c.group}::${c.name}`;
          let tally = checks.get(key);
          if (!tally) checks.set(key, (tally = { name: c.name, group: c.group, passes: 0, fails: 0 }));
          if (c.ok) tally.passes++;
          else tally.fails++;
        }
      } else if (m.t === 'abort') {
        aborted = m.message;
      } else onMessage(m);
    });
    worker.on('exit', () => {
      port1.close();
      workers.delete(worker);
    });
    return worker;
  };

  /** Resolves when `wait` says so; rejects when the worker dies first or the run is past its deadline. */
  const until = <T>(worker: Worker, wait: (resolve: (v: T) => void) => void): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const onError = (err: Error) => settle(() => reject(err));
      const onExit = (code: number) => settle(() => reject(new Error(`VU thread exited (${code})`)));
      const timer = setTimeout(() => settle(() => reject(new Error(`timed out after ${opts.timeoutMs ?? 120_000} ms`))), Math.max(0, deadline - Date.now()));
      const settle = (fn: () => void) => {
        clearTimeout(timer);
        worker.off('error', onError);
        worker.off('exit', onExit);
        fn();
      };
      worker.on('error', onError);
      worker.on('exit', onExit);
      wait((v) => settle(() => resolve(v)));
    });

  try {
    await prepare(dir, script);
    // The control VU (id 0, as in k6) reads the options and runs setup, teardown and handleSummary.
    const queue: FromWorker[] = [];
    let waiting: ((m: FromWorker) => void) | undefined;
    const control = spawn({ role: 'control', vuId: 0, env }, (m) => {
      const w = waiting;
      waiting = undefined;
      if (w) w(m);
      else queue.push(m);
    });
    const next = () => until<FromWorker>(control, (resolve) => (queue.length ? resolve(queue.shift()!) : (waiting = resolve)));

    /** Runs setup, teardown or handleSummary in the control VU. @returns its JSON result, or undefined on error. */
    const call = async (op: 'setup' | 'teardown' | 'handleSummary', arg: unknown): Promise<{ ok: boolean; value: unknown }> => {
      control.postMessage({ op, arg: arg === undefined ? undefined : JSON.stringify(arg) });
      const m = await next();
      if (m.t !== 'result') throw new Error(`unexpected message ${m.t}`);
      if (!m.ok) {
        report.errors.push({ phase: op, message: m.message });
        return { ok: false, value: undefined };
      }
      return { ok: true, value: m.json === undefined ? undefined : JSON.parse(m.json) };
    };

    const ready = await next();
    if (ready.t === 'error') {
      report.errors.push({ phase: ready.phase, message: ready.message });
      return finish();
    }
    if (ready.t !== 'ready') throw new Error(`unexpected message ${ready.t}`);
    const options = ready.options ?? {};
    const exported = new Set(ready.exports);
    report.thresholds = options.thresholds ?? {};
    const trendStats: string[] = options.summaryTrendStats ?? DEFAULT_TREND_STATS;

    let setupOk = true;
    if (exported.has('setup')) {
      const r = await call('setup', undefined);
      setupOk = r.ok;
      report.setupData = r.value;
    }

    if (setupOk) {
      const declared: Record<string, any> = options.scenarios ?? { default: { executor: 'shared-iterations', iterations: 1, vus: 1 } };
      const names = Object.keys(declared)
        .filter((n) => !opts.scenarios || opts.scenarios.includes(n))
        .sort((a, b) => parseDuration(declared[a].startTime) - parseDuration(declared[b].startTime));
      let nextVuId = 1;
      for (const name of names) {
        if (aborted) break;
        const sc = declared[name];
        const own = sc.executor === 'per-vu-iterations' ? (sc.vus ?? 1) * (sc.iterations ?? 1) : sc.executor === 'shared-iterations' ? (sc.iterations ?? 1) : Infinity;
        const iterations = Math.min(opts.iterations ?? 20, own);
        const vus = Math.max(1, Math.min(opts.vus ?? 4, iterations));
        const execName: string = sc.exec ?? 'default';
        report.scenarios.push({ name, executor: sc.executor, exec: execName, iterations, vus });
        const counter = new SharedArrayBuffer(4);
        const scenario = { name, executor: sc.executor, exec: execName, startTime: Date.now() };
        const running: Promise<void>[] = [];
        for (let v = 0; v < vus; v++) {
          let resolveDone!: () => void;
          const done = new Promise<void>((r) => (resolveDone = r));
          const w = spawn(
            {
              role: 'vu',
              vuId: nextVuId++,
              env: { ...env, ...(sc.env ?? {}) },
              scenario,
              iterations,
              vus,
              counter,
              setupJson: report.setupData === undefined ? undefined : JSON.stringify(report.setupData),
              testStart: started,
              options,
            },
            (m) => {
              if (m.t === 'error') report.errors.push({ phase: m.phase, scenario: name, message: m.message });
              else if (m.t === 'done') resolveDone();
            },
          );
          running.push(until<void>(w, (resolve) => done.then(resolve)).finally(() => w.terminate()));
        }
        const settled = await Promise.allSettled(running);
        for (const s of settled) if (s.status === 'rejected') report.errors.push({ phase: 'runner', scenario: name, message: String(s.reason?.message ?? s.reason) });
      }
    }
    if (aborted !== undefined) report.errors.push({ phase: 'runner', message: `test aborted: ${aborted}` });

    if (setupOk && exported.has('teardown')) await call('teardown', report.setupData);

    if (exported.has('handleSummary')) {
      const durationMs = Date.now() - started;
      const data = {
        root_group: rootGroup([...checks.values()]),
        options: { summaryTrendStats: trendStats, summaryTimeUnit: '', noColor: true },
        state: { isStdOutTTY: false, isStdErrTTY: false, testRunDurationMs: durationMs },
        metrics: sinks.summarize(durationMs, trendStats),
        setup_data: report.setupData,
      };
      const r = await call('handleSummary', data);
      if (r.ok && r.value && typeof r.value === 'object') {
        for (const [target, content] of Object.entries(r.value as Record<string, unknown>)) {
          const text = typeof content === 'string' ? content : JSON.stringify(content);
          report.summary[target] = text;
          if (target === 'stdout' || target === 'stderr') {
            if (echo) process[target].write(text);
          } else {
            await writeFile(path.resolve(target), text);
          }
        }
      }
    }
    return finish();
  } catch (err) {
    report.errors.push({ phase: 'runner', message: (err as Error).stack ?? String(err) });
    return finish();
  } finally {
    await Promise.all([...workers].map((w) => w.terminate()));
    await rm(dir, { recursive: true, force: true });
  }

  function finish(): RunReport {
    report.checks = [...checks.values()];
    report.failedChecks = report.checks.filter((c) => c.fails > 0).map((c) => ({ name: c.group ? `${c.group}::${c.name}` : c.name, fails: c.fails }));
    report.metrics = sinks.summarize(Date.now() - started, DEFAULT_TREND_STATS.concat('p(99)'));
    report.iterations = report.metrics.iterations?.values.count ?? 0;
    report.ok = report.errors.length === 0 && report.failedChecks.length === 0;
    return report;
  }
}

/** Lays out the temporary directory: the `k6` package, the VU program, a copy of the script's directory. */
async function prepare(dir: string, script: string): Promise<void> {
  await writeFile(path.join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  const pkg = path.join(dir, 'node_modules', 'k6');
  await mkdir(pkg, { recursive: true });
  const modules: Record<string, { file: string; named: string[]; hasDefault: boolean }> = {
    k6: { file: 'index.js', named: ['check', 'sleep', 'group', 'fail', 'randomSeed'], hasDefault: true },
    'k6/http': {
      file: 'http.js',
      named: ['get', 'head', 'post', 'put', 'patch', 'del', 'options', 'request', 'batch', 'setResponseCallback', 'expectedStatuses'],
      hasDefault: true,
    },
    'k6/metrics': { file: 'metrics.js', named: ['Counter', 'Gauge', 'Rate', 'Trend'], hasDefault: true },
    'k6/execution': { file: 'execution.js', named: ['vu', 'scenario', 'instance', 'test'], hasDefault: true },
  };
  const exportsMap: Record<string, string> = {};
  for (const [spec, m] of Object.entries(modules)) {
    exportsMap[spec === 'k6' ? '.' : `./${spec.slice(3)}`] = `./${m.file}`;
    const lines = [`const m = globalThis.__k6smoke[${JSON.stringify(spec)}];`, 'export default m;'];
    for (const n of m.named) lines.push(`export const ${n} = m.${n};`);
    await writeFile(path.join(pkg, m.file), `${lines.join('\n')}\n`);
  }
  await writeFile(path.join(pkg, 'package.json'), JSON.stringify({ name: 'k6', type: 'module', exports: exportsMap }));
  await writeFile(path.join(dir, 'vu.mjs'), VU_PROGRAM);
  const scripts = path.join(dir, 'scripts');
  await mkdir(scripts);
  const source = path.dirname(script);
  for (const f of await readdir(source)) if (f.endsWith('.js')) await copyFile(path.join(source, f), path.join(scripts, f));
}

/**
 * The VU thread: the k6 API over a blocking request channel to the main thread. Plain JavaScript in a string
 * because a worker thread cannot load this TypeScript file; kept free of backticks and `${` for that reason.
 */
const VU_PROGRAM = String.raw`
import { parentPort, receiveMessageOnPort, workerData as W } from 'node:worker_threads';

const signal = new Int32Array(W.flag);
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const state = { phase: 'init', iter: 0, iterationInTest: 0, group: '', callback: null, samples: [], checks: [], inVu: false };
const ABORT = Symbol('k6 abort');

function flush() {
  if (state.samples.length || state.checks.length) parentPort.postMessage({ t: 'samples', samples: state.samples, checks: state.checks });
  state.samples = [];
  state.checks = [];
}
function emit(metric, kind, contains, value) {
  state.samples.push({ metric, kind, contains, value: Number(value) });
}

// Blocks this thread until the main thread has performed the requests.
function roundTrip(requests) {
  Atomics.store(signal, 0, 0);
  W.rpcPort.postMessage(requests);
  for (;;) {
    Atomics.wait(signal, 0, 0, 1000);
    const m = receiveMessageOnPort(W.rpcPort);
    if (m) return m.message;
  }
}

// ---- k6 ----
function check(value, sets, tags) {
  let all = true;
  for (const name of Object.keys(sets)) {
    const c = sets[name];
    const ok = Boolean(typeof c === 'function' ? c(value) : c);
    state.checks.push({ name, group: state.group, ok });
    emit('checks', 'rate', 'default', ok ? 1 : 0);
    if (!ok) all = false;
  }
  return all;
}
function sleep(seconds) {
  const ms = Number(seconds) * 1000;
  if (ms > 0) Atomics.wait(sleeper, 0, 0, ms);
}
function group(name, fn) {
  if (String(name).includes('::')) throw new Error('group and check names may not contain "::"');
  const before = state.group;
  state.group = before + '::' + name;
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    emit('group_duration', 'trend', 'time', performance.now() - t0);
    state.group = before;
  }
}
function fail(message) {
  throw new Error(message === undefined ? 'fail' : String(message));
}
function randomSeed() {}

// ---- k6/metrics ----
const NAME = /^[a-zA-Z_][a-zA-Z0-9_]{0,127}$/;
class Metric {
  constructor(name, isTime, kind) {
    if (state.phase !== 'init') throw new Error('metrics must be declared in the init context');
    if (!NAME.test(name)) throw new Error('invalid metric name: ' + name);
    this.name = name;
    this.kind = kind;
    this.contains = isTime ? 'time' : 'default';
  }
  add(value, tags) {
    if (state.phase === 'init') throw new Error('metrics cannot be added to in the init context');
    const v = this.kind === 'rate' ? (value ? 1 : 0) : Number(value);
    if (Number.isNaN(v)) throw new Error(this.name + ': cannot add ' + String(value));
    emit(this.name, this.kind, this.contains, v);
    return true;
  }
}
class Counter extends Metric { constructor(name, isTime) { super(name, isTime, 'counter'); } }
class Gauge extends Metric { constructor(name, isTime) { super(name, isTime, 'gauge'); } }
class Rate extends Metric { constructor(name) { super(name, false, 'rate'); } }
class Trend extends Metric { constructor(name, isTime) { super(name, isTime, 'trend'); } }

// ---- k6/http ----
const DEFAULT_CALLBACK = Object.freeze({ __expected: [[200, 399]] });
state.callback = DEFAULT_CALLBACK;
function expectedStatuses(...codes) {
  const ranges = codes.map((c) => {
    if (Number.isInteger(c)) return [c, c];
    if (c && Number.isInteger(c.min) && Number.isInteger(c.max)) return [c.min, c.max];
    throw new Error('expectedStatuses takes integers and {min, max} objects, got ' + JSON.stringify(c));
  });
  return Object.freeze({ __expected: ranges });
}
function validCallback(cb) {
  if (cb !== null && !(cb && cb.__expected)) throw new Error('only expectedStatuses(...) objects or null are supported as response callbacks');
  return cb;
}
function setResponseCallback(cb) {
  state.callback = validCallback(cb);
}
function hasHeader(headers, name) {
  return Object.keys(headers).some((k) => k.toLowerCase() === name);
}
function timeoutMs(t) {
  if (t === undefined || t === null) return 60000;
  if (typeof t === 'number') return t;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(String(t));
  if (!m) throw new Error('invalid timeout ' + String(t));
  return Number(m[1]) * { ms: 1, s: 1000, m: 60000, h: 3600000 }[m[2]];
}
function prepare(method, url, body, params) {
  if (state.phase === 'init') throw new Error('making HTTP requests in the init context is not supported');
  const p = params || {};
  for (const k of Object.keys(p)) {
    if (!['headers', 'tags', 'timeout', 'responseCallback', 'redirects', 'responseType'].includes(k)) throw new Error('k6 smoke runner: request param "' + k + '" is not supported');
  }
  const headers = {};
  for (const [k, v] of Object.entries(p.headers || {})) headers[k] = String(v);
  let wireBody = null;
  if (body !== undefined && body !== null) {
    if (typeof body === 'string') wireBody = body;
    else if (body instanceof ArrayBuffer) wireBody = new Uint8Array(body);
    else if (typeof body === 'object') {
      wireBody = new URLSearchParams(Object.entries(body).map(([k, v]) => [k, String(v)])).toString();
      if (!hasHeader(headers, 'content-type')) headers['Content-Type'] = 'application/x-www-form-urlencoded';
    } else wireBody = String(body);
  }
  if (!hasHeader(headers, 'user-agent')) headers['User-Agent'] = 'k6-smoke-runner';
  const callback = 'responseCallback' in p ? validCallback(p.responseCallback) : state.callback;
  return {
    wire: { method: String(method).toUpperCase(), url: String(url), headers, body: wireBody, timeoutMs: timeoutMs(p.timeout), redirects: p.redirects === undefined ? null : p.redirects },
    callback,
  };
}
function select(value, path) {
  let v = value;
  for (const part of String(path).split('.')) {
    if (v === null || v === undefined) return undefined;
    v = v[/^\d+$/.test(part) ? Number(part) : part];
  }
  return v;
}
function respond(req, w, callback) {
  emit('http_reqs', 'counter', 'default', 1);
  emit('http_req_duration', 'trend', 'time', w.duration);
  if (callback !== null) {
    const expected = callback.__expected.some(([lo, hi]) => w.status >= lo && w.status <= hi);
    emit('http_req_failed', 'rate', 'default', expected ? 0 : 1);
  }
  return {
    status: w.status,
    status_text: w.statusText,
    url: w.url,
    body: w.body,
    headers: w.headers,
    error: w.error,
    error_code: w.errorCode,
    proto: w.status ? 'HTTP/1.1' : '',
    cookies: {},
    timings: { duration: w.duration, blocked: 0, connecting: 0, tls_handshaking: 0, sending: 0, waiting: w.duration, receiving: 0 },
    request: { method: req.method, url: req.url, headers: req.headers, body: req.body === null ? '' : req.body, cookies: {} },
    json(selector) {
      if (typeof this.body !== 'string') throw new Error('cannot parse json: the response has no body');
      const v = JSON.parse(this.body);
      return selector === undefined ? v : select(v, selector);
    },
    html() {
      throw new Error('k6 smoke runner: Response.html() is not supported');
    },
  };
}
function request(method, url, body, params) {
  const r = prepare(method, url, body, params);
  return respond(r.wire, roundTrip([r.wire])[0], r.callback);
}
function batch(requests) {
  const isArray = Array.isArray(requests);
  const keys = isArray ? requests.map((_, i) => i) : Object.keys(requests);
  const prepared = keys.map((k) => {
    const r = requests[k];
    if (typeof r === 'string') return prepare('GET', r, null, undefined);
    if (Array.isArray(r)) return prepare(r[0], r[1], r[2], r[3]);
    return prepare(r.method || 'GET', r.url, r.body, r.params);
  });
  const responses = roundTrip(prepared.map((p) => p.wire));
  const out = isArray ? [] : {};
  keys.forEach((k, i) => {
    out[k] = respond(prepared[i].wire, responses[i], prepared[i].callback);
  });
  return out;
}
const http = {
  request,
  batch,
  get: (url, params) => request('GET', url, null, params),
  head: (url, params) => request('HEAD', url, null, params),
  post: (url, body, params) => request('POST', url, body, params),
  put: (url, body, params) => request('PUT', url, body, params),
  patch: (url, body, params) => request('PATCH', url, body, params),
  del: (url, body, params) => request('DELETE', url, body, params),
  options: (url, body, params) => request('OPTIONS', url, body, params),
  setResponseCallback,
  expectedStatuses,
};

// ---- k6/execution ----
function inVu(what) {
  if (!state.inVu) throw new Error('getting ' + what + ' information outside of the VU context is not supported');
}
const exec = {
  vu: {
    get idInTest() { return W.vuId; },
    get idInInstance() { return W.vuId; },
    get iterationInInstance() { inVu('VU'); return state.iter; },
    get iterationInScenario() { inVu('VU'); return state.iter; },
    tags: {},
    metrics: { tags: {}, metadata: {} },
  },
  scenario: {
    get name() { inVu('scenario'); return W.scenario.name; },
    get executor() { inVu('scenario'); return W.scenario.executor; },
    get startTime() { inVu('scenario'); return W.scenario.startTime; },
    get progress() { inVu('scenario'); return Math.min(1, state.iterationInTest / W.iterations); },
    get iterationInInstance() { inVu('scenario'); return state.iterationInTest; },
    get iterationInTest() { inVu('scenario'); return state.iterationInTest; },
  },
  instance: {
    get vusActive() { return W.vus || 1; },
    get vusInitialized() { return W.vus || 1; },
    get iterationsCompleted() { return 0; },
    get iterationsInterrupted() { return 0; },
    get currentTestRunDuration() { return Date.now() - (W.testStart || Date.now()); },
  },
  test: {
    abort(message) {
      parentPort.postMessage({ t: 'abort', message: message === undefined ? 'test.abort() called' : String(message) });
      const e = new Error('test aborted: ' + String(message));
      e[ABORT] = true;
      throw e;
    },
    get options() { return W.options || {}; },
  },
};

globalThis.__k6smoke = {
  k6: { check, sleep, group, fail, randomSeed },
  'k6/http': http,
  'k6/metrics': { Counter, Gauge, Rate, Trend },
  'k6/execution': exec,
};
globalThis.__ENV = W.env;
globalThis.__VU = W.vuId;
globalThis.__ITER = 0;

function describe(e) {
  return e && e.stack ? String(e.stack) : String(e);
}

let mod;
try {
  mod = await import(W.scriptUrl);
} catch (e) {
  parentPort.postMessage({ t: 'error', phase: 'init', message: describe(e) });
  if (W.role === 'vu') parentPort.postMessage({ t: 'done' });
}

if (mod && W.role === 'control') {
  state.phase = 'idle';
  parentPort.postMessage({ t: 'ready', options: mod.options === undefined ? undefined : JSON.parse(JSON.stringify(mod.options)), exports: Object.keys(mod) });
  parentPort.on('message', async (cmd) => {
    state.phase = cmd.op;
    let reply;
    try {
      let value = mod[cmd.op](cmd.arg === undefined ? undefined : JSON.parse(cmd.arg));
      if (value && typeof value.then === 'function') value = await value;
      reply = { t: 'result', ok: true, json: value === undefined ? undefined : JSON.stringify(value) };
    } catch (e) {
      reply = { t: 'result', ok: false, message: describe(e) };
    }
    flush();
    parentPort.postMessage(reply);
  });
}

if (mod && W.role === 'vu') {
  state.phase = 'vu';
  state.inVu = true;
  const fn = W.scenario.exec === 'default' ? mod.default : mod[W.scenario.exec];
  const data = W.setupJson === undefined ? undefined : JSON.parse(W.setupJson);
  const counter = new Int32Array(W.counter);
  if (typeof fn !== 'function') {
    parentPort.postMessage({ t: 'error', phase: 'init', message: 'scenario ' + W.scenario.name + ': no exported function ' + W.scenario.exec });
  } else {
    for (;;) {
      const n = Atomics.add(counter, 0, 1);
      if (n >= W.iterations) break;
      state.iterationInTest = n;
      globalThis.__ITER = state.iter;
      state.group = '';
      const t0 = performance.now();
      let stop = false;
      try {
        const r = fn(data);
        if (r && typeof r.then === 'function') await r;
      } catch (e) {
        if (e && e[ABORT]) stop = true;
        else parentPort.postMessage({ t: 'error', phase: 'iteration', message: 'iteration ' + n + ': ' + describe(e) });
      }
      emit('iterations', 'counter', 'default', 1);
      emit('iteration_duration', 'trend', 'time', performance.now() - t0);
      state.iter++;
      flush();
      if (stop) break;
    }
  }
  flush();
  parentPort.postMessage({ t: 'done' });
}

// Stay alive until the main thread terminates this thread, so no message is outrun by the thread's exit.
if (!mod || W.role === 'vu') parentPort.on('message', () => undefined);
`;
