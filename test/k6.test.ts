/**
 * The k6 load-test scripts (k6/*.js), run unchanged through the smoke runner (test/k6/runner.ts) against a real
 * API and worker: each script must set up its sale, run a few dozen iterations without a failed check or an
 * exception, and pass its own teardown invariants. k6 cannot run here, so this is what keeps the scripts from
 * rotting; it says nothing about performance (no timing is asserted). A first test proves the runner itself
 * reports failed checks and exceptions, since a runner that reported nothing would pass everything else.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runK6Script, type RunOptions, type RunReport } from './k6/runner.ts';
import { ADMIN_TOKEN, startSystem } from './support/system.ts';

const K6_DIR = fileURLToPath(new URL('../k6/', import.meta.url));

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'k6-test-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Runs a script against a fresh system. @returns the report and the sale's stats read by the harness itself. */
async function runAgainstSystem(script: string, env: Record<string, string>, o: RunOptions) {
  const sys = await startSystem();
  try {
    const report = await runK6Script(path.join(K6_DIR, script), {
      ...o,
      env: { BASE_URL: sys.url, ADMIN_TOKEN, DRAIN_TIMEOUT: '20', ...env },
      echo: false,
      timeoutMs: 45_000,
    });
    const saleId = (report.setupData as { saleId?: string } | undefined)?.saleId;
    const stats = saleId ? await sys.stats(saleId) : undefined;
    return { report, stats };
  } finally {
    await sys.stop();
  }
}

/** No exception, no failed check, and the teardown's invariant checks ran and passed. */
function expectClean(report: RunReport): void {
  const context = `errors: ${JSON.stringify(report.errors)}\nlogs: ${report.logs.join('')}`;
  expect(report.errors, context).toEqual([]);
  expect(report.failedChecks, context).toEqual([]);
  expect(report.iterations).toBe(report.scenarios.reduce((n, s) => n + s.iterations, 0));
  const invariants = report.checks.filter((c) => c.name.startsWith('invariant:'));
  expect(invariants.map((c) => c.name)).toEqual(
    expect.arrayContaining([
      'invariant: drained (no request in flight)',
      'invariant: no oversell (unitsInDatabase <= stock)',
      'invariant: stock conserved (remaining + unitsInDatabase == stock)',
    ]),
  );
  for (const c of invariants) expect(c, c.name).toMatchObject({ passes: 1, fails: 0 });
}

const count = (r: RunReport, metric: string) => r.metrics[metric]?.values.count ?? 0;
const passes = (r: RunReport, check: string) => r.checks.find((c) => c.name === check)?.passes ?? 0;

describe('the k6 smoke runner', () => {
  it('surfaces failed checks, exceptions and teardown invariants, and answers as k6 does', async () => {
    const server = createServer((req, res) => {
      if (req.url === '/boom') {
        res.statusCode = 500;
        res.end();
        return;
      }
      res.setHeader('ETag', '"v1"');
      if (req.headers['if-none-match'] === '"v1"') {
        res.statusCode = 304;
        res.end();
        return;
      }
      res.setHeader('Idempotent-Replayed', 'true');
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ path: req.url }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const dir = await mkdtemp(path.join(scratch, 'self-'));
    await writeFile(
      path.join(dir, 'self.js'),
      `
      import http from 'k6/http';
      import { check, group } from 'k6';
      import exec from 'k6/execution';
      import { Counter } from 'k6/metrics';
      const seen = new Counter('seen');
      export const options = { scenarios: { only: { executor: 'shared-iterations', iterations: 6, vus: 2 } } };
      export function setup() { return { base: __ENV.BASE_URL }; }
      export default function (data) {
        const i = exec.scenario.iterationInTest;
        const [res] = http.batch([['GET', data.base + '/x/' + i]]);
        seen.add(1);
        check(res, {
          'ETag arrives as Etag': (r) => r.headers['Etag'] === '"v1"' && r.headers['ETag'] === undefined,
          'Idempotent-Replayed keeps its name': (r) => r.headers['Idempotent-Replayed'] === 'true',
          'json() parses the body': (r) => r.json().path === '/x/' + i,
        });
        const again = http.get(data.base + '/x/' + i, { headers: { 'If-None-Match': res.headers['Etag'] }, responseCallback: http.expectedStatuses(304) });
        check(again, { 'If-None-Match answers 304 without a body': (r) => r.status === 304 && r.body === '' });
        group('g', () => check(i, { 'always fails': () => false }));
        if (i === 3) throw new Error('boom at 3');
      }
      export function teardown(data) {
        http.get(data.base + '/boom');
        check(1, { 'invariant: broken on purpose': () => false }, { invariant: 'true' });
        throw new Error('teardown broke');
      }
      export function handleSummary(data) {
        return { stdout: 'iterations=' + data.metrics.iterations.values.count + ' seen=' + data.metrics.seen.values.count };
      }
      `,
    );
    try {
      const { port } = server.address() as AddressInfo;
      const report = await runK6Script(path.join(dir, 'self.js'), { env: { BASE_URL: `http://127.0.0.1:${port}` }, vus: 2, echo: false });
      expect(report.ok).toBe(false);
      expect(report.iterations).toBe(6);
      expect(report.errors).toEqual([
        expect.objectContaining({ phase: 'iteration', message: expect.stringContaining('boom at 3') }),
        expect.objectContaining({ phase: 'teardown', message: expect.stringContaining('teardown broke') }),
      ]);
      expect(report.failedChecks).toEqual(
        expect.arrayContaining([
          { name: '::g::always fails', fails: 6 },
          { name: 'invariant: broken on purpose', fails: 1 },
        ]),
      );
      for (const name of ['ETag arrives as Etag', 'Idempotent-Replayed keeps its name', 'json() parses the body', 'If-None-Match answers 304 without a body'])
        expect(passes(report, name), name).toBe(6);
      // 12 expected answers in the iterations, then the 500 in teardown.
      expect(report.metrics.http_req_failed?.values).toMatchObject({ passes: 1, fails: 12 });
      expect(report.summary.stdout).toBe('iterations=6 seen=6');
    } finally {
      server.close();
    }
  });

  it("fails the scripts' teardown invariants on an oversold sale", async () => {
    // A stand-in for the admin API that reports 11 units sold out of 10, however long teardown waits.
    const server = createServer((req, res) => {
      res.setHeader('Content-Type', 'application/json');
      res.end(
        JSON.stringify({ saleId: 's', stock: 10, remaining: 0, pendingUnits: 0, inflightRequests: 0, ordersInDatabase: 11, unitsInDatabase: 11 }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const dir = await mkdtemp(path.join(scratch, 'oversold-'));
    await copyFile(path.join(K6_DIR, 'lib.js'), path.join(dir, 'lib.js'));
    await writeFile(
      path.join(dir, 'oversold.js'),
      `
      import { verifySale } from './lib.js';
      export default function () {}
      export function teardown() { verifySale('s'); }
      `,
    );
    try {
      const { port } = server.address() as AddressInfo;
      const report = await runK6Script(path.join(dir, 'oversold.js'), { env: { BASE_URL: `http://127.0.0.1:${port}`, DRAIN_TIMEOUT: '0.3' }, echo: false });
      expect(report.errors).toEqual([]);
      expect(report.failedChecks.map((c) => c.name).sort()).toEqual([
        'invariant: drained (no request in flight)',
        'invariant: no oversell (unitsInDatabase <= stock)',
        'invariant: stock conserved (remaining + unitsInDatabase == stock)',
      ]);
      expect(report.logs.join('')).toContain('an invariant is broken');
    } finally {
      server.close();
    }
  });
});

describe('k6 scripts against the real system', () => {
  it('flash-crowd: distinct shoppers outnumber the stock; exactly the stock is accepted, the rest is 409', async () => {
    const summaryJson = path.join(scratch, 'flash-crowd.json');
    const { report, stats } = await runAgainstSystem('flash-crowd.js', { STOCK: '10', SHOPPERS: '40', SUMMARY_JSON: summaryJson }, { iterations: 40, vus: 8 });
    expectClean(report);
    expect(report.iterations).toBe(40);
    expect(count(report, 'purchases_accepted')).toBe(10);
    expect(stats).toMatchObject({ stock: 10, remaining: 0, unitsInDatabase: 10, ordersInDatabase: 10, inflightRequests: 0 });
    expect(report.summary.stdout).toContain('== flash-crowd ==');
    const written = JSON.parse(await readFile(summaryJson, 'utf8'));
    expect(written.metrics.purchases_accepted.values.count).toBe(10);
    expect(written).not.toHaveProperty('setup_data');
  });

  it('sustained: every purchase against a large stock is accepted', async () => {
    const { report, stats } = await runAgainstSystem('sustained.js', { STOCK: '100000', SHOPPERS: '10', PER_USER_LIMIT: '100' }, { iterations: 30, vus: 6 });
    expectClean(report);
    expect(count(report, 'purchases_accepted')).toBe(30);
    expect(stats).toMatchObject({ unitsInDatabase: 30, remaining: 100000 - 30 });
  });

  it('duplicate-storm: replays carry Idempotent-Replayed and no shopper exceeds the limit', async () => {
    const { report, stats } = await runAgainstSystem('duplicate-storm.js', { SHOPPERS: '4', PER_USER_LIMIT: '2', STOCK: '1000' }, { iterations: 36, vus: 6 });
    expectClean(report);
    expect(passes(report, 'replay: same Idempotency-Key answers 202 with Idempotent-Replayed: true')).toBeGreaterThan(0);
    expect(count(report, 'idempotent_replays')).toBeGreaterThan(0);
    expect(passes(report, 'invariant: at most perUserLimit per shopper (ordersInDatabase <= shoppers x perUserLimit)')).toBe(1);
    // Each shopper makes at least two distinct requests, so each reaches the limit of two.
    expect(stats).toMatchObject({ ordersInDatabase: 8, unitsInDatabase: 8 });
  });

  it('end-to-end: every accepted purchase is seen in a final state', async () => {
    const { report, stats } = await runAgainstSystem(
      'end-to-end.js',
      { VUS: '6', ITERATIONS: '5', STOCK: '10', POLL_INTERVAL: '0.05', MAX_POLLS: '400' },
      { iterations: 30, vus: 6 },
    );
    expectClean(report);
    expect(report.iterations).toBe(30);
    expect(count(report, 'purchases_accepted')).toBe(10);
    expect(count(report, 'purchases_finalized')).toBe(10);
    expect(count(report, 'purchases_not_final')).toBe(0);
    expect(report.metrics.time_to_final?.values).toBeDefined();
    expect(passes(report, 'end-to-end: every 202 reaches a final state')).toBe(10);
    expect(report.summary.stdout).toContain('accepted 10, reached a final state 10, lost 0');
    expect(stats).toMatchObject({ unitsInDatabase: 10, remaining: 0, decisions: { succeeded: 10 } });
  });
});
