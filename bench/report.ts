/**
 * The benchmark's output: one markdown report for people and the same figures as JSON for tools, each written as
 * `<timestamp>.*` and `latest.*` under bench/results/. Figures are only comparable on the same machine and commit,
 * so both are recorded with them.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import type { Latency, LoadStats } from './load.ts';

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

export interface LoadRow {
  name: string;
  /** How the load was sent, e.g. "closed loop, 64 connections". */
  mode: string;
  stats: LoadStats;
  /** Share of the bare ceiling's rate. */
  ofCeiling?: number;
  target?: Check;
}

export interface Results {
  machine: Machine;
  settings: Record<string, unknown>;
  loads: LoadRow[];
  /** Throughput lost to metrics (1 - on/off), per path, and the runs' req/s (step 5). */
  metricsCost?: { accept: number; soldOut: number; rps: Record<string, { accept: number[]; soldOut: number[] }> };
  /** The backlog as the broker holds it: messages against purchases (publisher micro-batching). */
  queue?: { messages: number; purchases: number };
  drain?: { backlog: number; decisionsPerS: number; measuredS: number; sinceWorkerStartS: number };
  endToEnd?: { rate: number; requests: number; latency: Latency };
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
  };
  checks: Check[];
  error?: string;
  ok: boolean;
}

export function machine(): Machine {
  const git = (...args: string[]) => execFileSync('git', args, { encoding: 'utf8' }).trim();
  let commit = 'unknown';
  try {
    commit = git('rev-parse', '--short', 'HEAD') + (git('status', '--porcelain') ? '-dirty' : '');
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

const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
const ms = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toString()) : '–');
const pct = (n: number | undefined) => (n === undefined ? '' : `${Math.round(n * 100)}%`);
const mark = (c: Check) => `${c.ok ? '✅' : '❌'} ${c.name}${c.detail ? ` (${c.detail})` : ''}`;

export function markdown(r: Results): string {
  const m = r.machine;
  const out = [
    `# Benchmark ${m.startedAt}`,
    '',
    `${r.ok ? '**PASS**' : '**FAIL**'} · commit \`${m.commit}\` · ${m.cores} cores (${m.cpu}) · Node ${m.node} · load average at start ${m.loadAverage.join(' / ')}`,
    '',
    `Settings: ${Object.entries(r.settings).map(([k, v]) => `${k}=${String(v)}`).join(', ')}`,
    '',
  ];
  if (r.error) out.push(`**Run aborted:** ${r.error}`, '');
  out.push(
    '## HTTP',
    '',
    '| Run | Load | Answers | req/s | p50 ms | p99 ms | p99.9 ms | vs ceiling | Target |',
    '|---|---|--:|--:|--:|--:|--:|--:|---|',
    ...r.loads.map((l) => {
      const s = l.stats;
      return `| ${l.name} | ${l.mode} | ${int(s.answers)} | ${int(s.rps)} | ${ms(s.latency.p50)} | ${ms(s.latency.p99)} | ${ms(s.latency.p99_9)} | ${pct(l.ofCeiling)} | ${l.target ? mark(l.target) : ''} |`;
    }),
    '',
  );
  const rows: string[] = [];
  if (r.queue) rows.push(`| Backlog in the broker | ${int(r.queue.purchases)} purchases in ${int(r.queue.messages)} messages |`);
  if (r.drain) {
    const d = r.drain;
    rows.push(`| Worker drain (1 worker, backlog ${int(d.backlog)}) | **${int(d.decisionsPerS)} decisions/s** (${d.measuredS.toFixed(1)} s; ${d.sinceWorkerStartS.toFixed(1)} s from process start) |`);
  }
  if (r.endToEnd) {
    const e = r.endToEnd;
    rows.push(`| Accepted → final state at ${int(e.rate)} req/s (${int(e.requests)} requests) | p50 ${ms(e.latency.p50)} ms · p99 ${ms(e.latency.p99)} ms · max ${ms(e.latency.max)} ms |`);
  }
  if (r.crowd) {
    const c = r.crowd;
    const decisions = Object.entries(c.decisions).map(([k, v]) => `${int(v)} ${k}`).join(', ') || 'none';
    rows.push(
      `| Flash crowd: ${int(c.shoppers)} shoppers, ${int(c.stock)} units | **every shopper final after ${c.allFinalS.toFixed(2)} s** (last HTTP answer after ${c.answeredS.toFixed(2)} s; last accepted request final after ${c.acceptedFinalS.toFixed(2)} s); ${int(c.accepted)} accepted (${decisions}), ${int(c.soldOutAtTheDoor)} sold out at the door |`,
    );
  }
  if (r.metricsCost) {
    const m = r.metricsCost;
    const runs = (xs: number[]) => xs.map((x) => int(x)).join(', ');
    rows.push(
      `| Cost of metrics (1 − on/off throughput) | accept path ${(m.accept * 100).toFixed(1)}% (on ${runs(m.rps.on!.accept)} vs off ${runs(m.rps.off!.accept)} req/s); sold-out path ${(m.soldOut * 100).toFixed(1)}% (on ${runs(m.rps.on!.soldOut)} vs off ${runs(m.rps.off!.soldOut)} req/s) |`,
    );
  }
  if (rows.length) out.push('## Worker and end to end', '', '| Measure | Result |', '|---|---|', ...rows, '');
  out.push('## Invariants', '', ...r.checks.map((c) => `- ${mark(c)}`), '');
  return out.join('\n');
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
