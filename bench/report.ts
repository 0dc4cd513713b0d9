/**
 * The benchmark's output: one markdown report for people and the same figures as JSON for tools, each written as
 * `<timestamp>.*` and `latest.*` under bench/results/. Figures are only comparable on the same machine and commit,
 * so both are recorded with them, with the load average the run started under.
 *
 * Every target is reported with the figure of each run, their median and range, how many runs met it, and what
 * bound it: the CPU each process used during the step that measured it (`boundOf`).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import type { FairnessResult } from './fairness.ts';
import type { Latency } from './load.ts';

export interface Machine {
  cores: number;
  cpu: string;
  node: string;
  commit: string;
  /** 1, 5 and 15 minute load averages when the run started: a busy machine explains noisy figures. */
  loadAverage: number[];
  startedAt: string;
}

export interface Check {
  name: string;
  ok: boolean;
  detail?: string;
}

/** One measured load: a closed loop, a fixed rate, a crowd. */
export interface StepRow {
  /** 1-based run of the sequence. */
  run: number;
  name: string;
  /** How the load was sent, e.g. "closed loop, 64 conn, 10 s". */
  mode: string;
  answers: number;
  rps: number;
  latency: Latency;
  /** Share of the same run's bare ceiling. */
  ofCeiling?: number;
  /** CPU of each process group over the step, as a share of one core. */
  cpu: Record<string, number>;
  /** CPU of the server under load (the API, or the ceiling) per answer, µs. */
  cpuPerAnswerUs?: number;
  /**
   * The API's own view of the step (its histograms, bucket upper bounds, ms): its answers' time from routing to the
   * last byte, and its publisher confirms. What the sender saw beyond them waited before the API read the request.
   */
  server?: { answerP50Ms: number; answerP99Ms: number; confirmP50Ms: number; confirmP99Ms: number };
}

export interface RunDetail {
  run: number;
  /** The backlog as the broker held it: messages against purchases (publisher micro-batching). */
  queue?: { messages: number; purchases: number };
  drain?: { backlog: number; decisionsPerS: number; measuredS: number; sinceWorkerStartS: number; cpu: Record<string, number>; workerCpuPerDecisionUs?: number };
  endToEnd?: { rate: number; requests: number; latency: Latency; cpu: Record<string, number> };
  crowd?: {
    shoppers: number;
    stock: number;
    accepted: number;
    soldOutAtTheDoor: number;
    decisions: Record<string, number>;
    /** First request to the last shopper's final answer, s. */
    allFinalS: number;
    /** First request to the last accepted request's final state, s. */
    acceptedFinalS: number;
    /** First request to the last HTTP answer, s. */
    answeredS: number;
    cpu: Record<string, number>;
  };
}

export interface TargetRow {
  name: string;
  /** e.g. "≥ 0.40". */
  goal: string;
  /** The figure of each run, in `unit`. */
  values: number[];
  unit: string;
  median: number;
  min: number;
  max: number;
  /** Runs that met the goal. */
  met: number;
  /** What bound the figure: the CPU of each process during its step (medians over the runs). */
  bound: string;
}

export interface Results {
  machine: Machine;
  settings: Record<string, unknown>;
  /** wrk or autocannon; compiled JavaScript or tsx; the measured checkout when it is not this one. */
  generator: string;
  compiled: boolean;
  systemRoot?: string;
  steps: StepRow[];
  runs: RunDetail[];
  targets: TargetRow[];
  /** Throughput lost to metrics (1 - on/off), per path, and the runs' req/s. */
  metricsCost?: { accept: number; soldOut: number; rps: Record<string, { accept: number[]; soldOut: number[] }>; cpuUs: Record<string, { accept: number[]; soldOut: number[] }> };
  /** One Redis process taking admissions alone: what one shard of a hot sale carries. */
  redisShard?: { admissions: number; perS: number; redisCpuPerAdmissionUs: number; redisCpuShare: number; clients: number };
  /** The fairness step's figures (bench/fairness.ts). */
  fairness?: Pick<FairnessResult, 'room' | 'plain' | 'options'>;
  checks: Check[];
  error?: string;
  ok: boolean;
}

export function machine(): Machine {
  const git = (...args: string[]) => execFileSync('git', args, { encoding: 'utf8', cwd: process.env.BENCH_SYSTEM_ROOT || undefined }).trim();
  let commit = 'unknown';
  try {
    commit = git('rev-parse', '--short', 'HEAD') + (git('status', '--porcelain', '--untracked-files=no') ? '-dirty' : '');
  } catch {
    /* not a git checkout */
  }
  return {
    cores: os.availableParallelism(),
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    node: process.version,
    commit,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
    startedAt: new Date().toISOString(),
  };
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Labels of the process groups measured, in report order. */
const GROUP_LABELS: Record<string, string> = {
  api: 'API',
  bare: 'bare Express',
  worker: 'worker',
  redis: 'Redis',
  rabbitmq: 'RabbitMQ',
  postgres: 'PostgreSQL',
  generator: 'load generator',
  machine: 'whole machine',
};
/** Groups that are one process with one main thread: at ~a whole core, that process is the bound. */
const SINGLE_THREADED = new Set(['api', 'bare', 'worker', 'redis']);

/**
 * What bound a figure, from the CPU each group used during its step (one map per run): the median share of each,
 * and a verdict. A single-threaded process at 85% of a core or more is the bound; else, with the machine's cores
 * 85% busy or more, the machine is; else nothing was saturated and the figure is a wait (confirms, fsync, I/O).
 */
export function boundOf(perRun: Record<string, number>[], cores: number, server?: StepRow['server'][]): string {
  if (perRun.length === 0) return '';
  const names = Object.keys(GROUP_LABELS).filter((g) => g !== 'machine' && perRun.some((r) => r[g] !== undefined));
  const shares = names.map((g) => [g, median(perRun.map((r) => r[g] ?? 0))] as const).sort((a, b) => b[1] - a[1]);
  const list = shares.map(([g, s]) => `${GROUP_LABELS[g]} ${Math.round(s * 100)}%`).join(' · ');
  const top = shares.find(([g, s]) => SINGLE_THREADED.has(g) && s >= 0.85);
  const ours = shares.reduce((a, [, s]) => a + s, 0);
  const machine = perRun.some((r) => r.machine !== undefined) ? median(perRun.map((r) => r.machine ?? 0)) : ours;
  const others = Math.max(0, machine - ours);
  const verdict = top
    ? `${GROUP_LABELS[top[0]]} at a full core`
    : machine >= 0.85 * cores
      ? `the machine: its ${cores} cores ${Math.round((machine / cores) * 100)}% busy${others >= 0.1 ? `, ${Math.round(others * 100)}% of a core by processes outside the run` : ''}`
      : 'no core saturated (waits)';
  const seen = (server ?? []).filter((x): x is NonNullable<StepRow['server']> => x !== undefined);
  const inside = seen.length
    ? `; in the API (bucket bounds, medians of the runs): answers p50 ≤ ${median(seen.map((x) => x.answerP50Ms))} ms, p99 ≤ ${median(seen.map((x) => x.answerP99Ms))} ms; publisher confirms p50 ≤ ${median(seen.map((x) => x.confirmP50Ms))} ms, p99 ≤ ${median(seen.map((x) => x.confirmP99Ms))} ms`
    : '';
  return `${verdict} (CPU of one core: ${list}${others >= 0.05 ? ` · outside the run ${Math.round(others * 100)}%` : ''})${inside}`;
}

const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
const ms = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toString()) : '–');
const pct1 = (n: number) => `${(n * 100).toFixed(1)}%`;
const pct = (n: number | undefined) => (n === undefined ? '' : `${Math.round(n * 100)}%`);
const mark = (c: Check) => `${c.ok ? '✅' : '❌'} ${c.name}${c.detail ? ` (${c.detail})` : ''}`;
const fig = (n: number, unit: string) => (unit === '×' ? n.toFixed(2) : unit === 'ms' || unit === 's' ? ms(n) : int(n));

export function markdown(r: Results): string {
  const m = r.machine;
  const out = [
    `# Benchmark ${m.startedAt}`,
    '',
    `${r.ok ? '**PASS**' : '**FAIL**'} · commit \`${m.commit}\`${r.systemRoot ? ` (system from ${r.systemRoot})` : ''} · ${m.cores} cores (${m.cpu}) · Node ${m.node} · load average at start ${m.loadAverage.join(' / ')} · load from ${r.generator} · ${r.compiled ? 'compiled JavaScript' : 'tsx'}`,
    '',
    `Settings: ${Object.entries(r.settings).map(([k, v]) => `${k}=${String(v)}`).join(', ')}`,
    '',
  ];
  if (r.error) out.push(`**Run aborted:** ${r.error}`, '');
  if (r.targets.length) {
    out.push(
      '## Targets',
      '',
      '| Target | Goal | Each run | Median | Range | Met | What bounds it |',
      '|---|---|---|--:|---|---|---|',
      ...r.targets.map((t) => `| ${t.name} | ${t.goal} | ${t.values.map((v) => fig(v, t.unit)).join(', ')} | **${fig(t.median, t.unit)}** ${t.unit} | ${fig(t.min, t.unit)}–${fig(t.max, t.unit)} | ${t.met === t.values.length ? '✅' : '❌'} ${t.met} of ${t.values.length} | ${t.bound} |`),
      '',
    );
  }
  out.push(
    '## HTTP',
    '',
    '| Run | Step | Load | Answers | req/s | p50 ms | p99 ms | p99.9 ms | vs ceiling | server CPU µs/answer | CPU (share of a core) |',
    '|--:|---|---|--:|--:|--:|--:|--:|--:|--:|---|',
    ...r.steps.map((l) => `| ${l.run} | ${l.name} | ${l.mode} | ${int(l.answers)} | ${int(l.rps)} | ${ms(l.latency.p50)} | ${ms(l.latency.p99)} | ${ms(l.latency.p99_9)} | ${pct(l.ofCeiling)} | ${l.cpuPerAnswerUs === undefined ? '' : int(l.cpuPerAnswerUs)} | ${cpuList(l.cpu)}${l.server ? `; in the API: answers p99 ≤ ${l.server.answerP99Ms} ms, confirms p99 ≤ ${l.server.confirmP99Ms} ms` : ''} |`),
    '',
  );
  const rows: string[] = [];
  for (const d of r.runs) {
    if (d.queue) rows.push(`| ${d.run} | Backlog in the broker | ${int(d.queue.purchases)} purchases in ${int(d.queue.messages)} messages |`);
    if (d.drain) {
      const x = d.drain;
      rows.push(`| ${d.run} | Worker drain (1 worker, backlog ${int(x.backlog)}) | **${int(x.decisionsPerS)} decisions/s** (${x.measuredS.toFixed(1)} s; ${x.sinceWorkerStartS.toFixed(1)} s from process start); worker CPU ${x.workerCpuPerDecisionUs === undefined ? '–' : int(x.workerCpuPerDecisionUs)} µs a decision; ${cpuList(x.cpu)} |`);
    }
    if (d.endToEnd) {
      const e = d.endToEnd;
      rows.push(`| ${d.run} | Accepted → final state at ${int(e.rate)} req/s (${int(e.requests)} requests) | p50 ${ms(e.latency.p50)} ms · p99 ${ms(e.latency.p99)} ms · max ${ms(e.latency.max)} ms; ${cpuList(e.cpu)} |`);
    }
    if (d.crowd) {
      const c = d.crowd;
      const decisions = Object.entries(c.decisions).map(([k, v]) => `${int(v)} ${k}`).join(', ') || 'none';
      rows.push(`| ${d.run} | Flash crowd: ${int(c.shoppers)} shoppers, ${int(c.stock)} units | **every shopper final after ${c.allFinalS.toFixed(2)} s** (last HTTP answer after ${c.answeredS.toFixed(2)} s; last accepted request final after ${c.acceptedFinalS.toFixed(2)} s); ${int(c.accepted)} accepted (${decisions}), ${int(c.soldOutAtTheDoor)} sold out at the door; ${cpuList(c.cpu)} |`);
    }
  }
  if (r.redisShard) {
    const x = r.redisShard;
    rows.push(`| – | One Redis shard, admissions alone (${x.clients} clients, ${int(x.admissions)} admissions) | **${int(x.perS)} admissions/s** at ${Math.round(x.redisCpuShare * 100)}% of a core: ${x.redisCpuPerAdmissionUs.toFixed(1)} µs of Redis CPU each, so one core carries about ${int(1e6 / x.redisCpuPerAdmissionUs)}/s |`);
  }
  if (r.metricsCost) {
    const x = r.metricsCost;
    const runs = (xs: number[]) => xs.map((v) => int(v)).join(', ');
    const us = (path: 'accept' | 'soldOut') => `API CPU ${runs(x.cpuUs.on![path])} vs ${runs(x.cpuUs.off![path])} µs an answer`;
    rows.push(`| – | Cost of metrics (1 − on/off throughput; two fresh API processes) | accept path ${(x.accept * 100).toFixed(1)}% (on ${runs(x.rps.on!.accept)} vs off ${runs(x.rps.off!.accept)} req/s; ${us('accept')}); sold-out path ${(x.soldOut * 100).toFixed(1)}% (on ${runs(x.rps.on!.soldOut)} vs off ${runs(x.rps.off!.soldOut)} req/s; ${us('soldOut')}) |`);
  }
  if (rows.length) out.push('## Worker, end to end, crowd', '', '| Run | Measure | Result |', '|--:|---|---|', ...rows, '');
  if (r.fairness) {
    const f = r.fairness;
    const o = f.options;
    out.push(
      '## Fairness',
      '',
      `${int(o.people)} people, ${o.bots} bots × ${o.identitiesPerBot} identities, ${int(o.units)} units; the room admits ${int(o.admissionsPerMinute)}/min, ${int(o.maxInside)} inside at most.`,
      '',
      '| Sale | Bots\' share of tickets (shoppers) | Bots\' share of units | Units to bots / people | Requests | Seconds |',
      '|---|--:|--:|--:|--:|--:|',
      ...[f.room, f.plain].map((x) => `| ${x.label} | ${pct1(x.botTicketShare)} | **${pct1(x.botUnitShare)}** | ${x.units.bots} / ${x.units.people} | ${int(x.requests)} | ${x.durationS.toFixed(1)} |`),
      '',
    );
  }
  out.push('## Invariants', '', ...r.checks.map((c) => `- ${mark(c)}`), '');
  return out.join('\n');
}

function cpuList(cpu: Record<string, number>): string {
  return Object.keys(GROUP_LABELS)
    .filter((g) => cpu[g] !== undefined && g !== 'machine')
    .map((g) => `${GROUP_LABELS[g]} ${Math.round(cpu[g]! * 100)}%`)
    .concat(cpu.machine === undefined ? [] : [`whole machine ${Math.round(cpu.machine * 100)}%`])
    .join(' · ');
}

/** Writes `<stamp>.md`, `<stamp>.json`, `latest.md` and `latest.json` into `dir`. @returns the markdown path. */
export function writeReport(dir: string, stamp: string, r: Results): string {
  mkdirSync(dir, { recursive: true });
  const md = markdown(r);
  const json = `${JSON.stringify(r, null, 2)}\n`;
  for (const name of [stamp, 'latest']) {
    writeFileSync(`${dir}/${name}.md`, md);
    writeFileSync(`${dir}/${name}.json`, json);
  }
  return `${dir}/${stamp}.md`;
}
