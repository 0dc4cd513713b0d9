/**
 * Helpers shared by the k6 load-test scripts in this directory: configuration from __ENV, the admin and shopper
 * calls of the flash-sale API, the sale invariants checked in teardown, and a compact end-of-test summary.
 *
 * Plain k6 JavaScript: only k6's own modules, no npm imports, so `k6 run k6/<script>.js` works unchanged. The smoke
 * runner in test/k6/runner.ts provides the same modules under Node to prove the scripts against a real system.
 */
import http from 'k6/http';
import { check, fail, sleep } from 'k6';

/** Reads a numeric variable; a typo must stop the test at init, not silently run it with NaN. */
export function envNumber(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got "${raw}"`);
  return n;
}

export function envString(name, fallback) {
  const raw = __ENV[name];
  return raw === undefined || raw === '' ? fallback : raw;
}

export const BASE_URL = envString('BASE_URL', 'http://localhost:3000').replace(/\/+$/, '');
export const ADMIN_TOKEN = envString('ADMIN_TOKEN', 'development-admin-token');

/**
 * Response callbacks, made once (k6 advises against creating them per request). Scripts install PURCHASE_EXPECTED
 * globally, so each helper below that is not a purchase names its own expected statuses: otherwise a 200 from the
 * admin API would count as a failed request.
 */
export const PURCHASE_EXPECTED = http.expectedStatuses(202, 409);
const OK_EXPECTED = http.expectedStatuses(200, 201);
const STATUS_EXPECTED = http.expectedStatuses(200, 304);

/** Tags every request with an `endpoint`, so thresholds can target one endpoint without the setup traffic. */
function params(endpoint, headers, responseCallback) {
  const p = { headers, tags: { endpoint } };
  if (responseCallback !== undefined) p.responseCallback = responseCallback;
  return p;
}

const adminHeaders = () => ({ Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' });

/** Longest wait in setup for the deployment to be ready, s: a node just started, or a dependency slow to answer. */
const READY_WAIT_S = envNumber('READY_WAIT_S', 30);

/**
 * Waits for `/readyz` (once a second, up to READY_WAIT_S), and stops the test when the deployment stays not ready,
 * rather than reporting thousands of failures.
 */
export function requireReady() {
  let res;
  for (let waited = 0; ; waited++) {
    res = http.get(`${BASE_URL}/readyz`, params('readyz', {}, OK_EXPECTED));
    if (res.status === 200) return;
    if (waited >= READY_WAIT_S) break;
    sleep(1);
  }
  fail(`${BASE_URL}/readyz answered ${res.status} for ${READY_WAIT_S} s: ${res.body}`);
}

/** Creates a sale through the admin API. @returns the sale as the API shows it (id, stock, perUserLimit, ...). */
export function createSale(name, stock, perUserLimit) {
  const res = http.post(
    `${BASE_URL}/api/admin/sales`,
    JSON.stringify({ name, stock, perUserLimit }),
    params('admin', adminHeaders(), OK_EXPECTED),
  );
  if (res.status !== 201) fail(`creating the sale failed: ${res.status} ${res.body}`);
  return res.json();
}

/** Ends a sale now through the admin API, so nothing is admitted after the test. @returns the sale as ended. */
export function endSale(saleId) {
  const res = http.post(`${BASE_URL}/api/admin/sales/${saleId}/end`, null, params('admin', adminHeaders(), OK_EXPECTED));
  if (res.status !== 200) fail(`ending the sale failed: ${res.status} ${res.body}`);
  return res.json();
}

export function saleStats(saleId) {
  const res = http.get(`${BASE_URL}/api/admin/sales/${saleId}/stats`, params('admin', adminHeaders(), OK_EXPECTED));
  if (res.status !== 200) fail(`reading the sale's stats failed: ${res.status} ${res.body}`);
  return res.json();
}

/** A run id keeps shopper ids of two runs against one deployment apart. */
export function newRunId() {
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

export const shopperId = (runId, i) => `k6-${runId}-${i}`;

/**
 * Mints one token per shopper through the demo login, in parallel batches (setup runs in a single VU, so one
 * request at a time would make a few thousand tokens slow). Only the tokens are returned: k6 copies setup data into
 * every VU, so its size is multiplied by the VU count.
 */
export function mintTokens(runId, count) {
  const tokens = [];
  const chunk = 100;
  for (let start = 0; start < count; start += chunk) {
    const requests = [];
    for (let i = start; i < Math.min(count, start + chunk); i++) {
      requests.push({
        method: 'POST',
        url: `${BASE_URL}/api/session`,
        body: JSON.stringify({ userId: shopperId(runId, i) }),
        params: params('session', { 'Content-Type': 'application/json' }, OK_EXPECTED),
      });
    }
    for (const res of http.batch(requests)) {
      if (res.status !== 200) fail(`minting a shopper token failed: ${res.status} ${res.body} (is DEMO_LOGIN on?)`);
      tokens.push(res.json().token);
    }
  }
  return tokens;
}

/** The common setup: a fresh sale and its shoppers. @returns the setup data every script's VUs receive. */
export function prepareSale(name, { stock, perUserLimit, shoppers }) {
  requireReady();
  const runId = newRunId();
  const sale = createSale(`k6 ${name} ${runId}`, stock, perUserLimit);
  const tokens = mintTokens(runId, shoppers);
  return { runId, saleId: sale.id, stock: sale.stock, perUserLimit: sale.perUserLimit, tokens };
}

/** POSTs a purchase of one unit; `idempotencyKey` is sent as the Idempotency-Key header when given. */
export function purchase(saleId, token, idempotencyKey) {
  const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  return http.post(`${BASE_URL}/api/sales/${saleId}/purchases`, JSON.stringify({ quantity: 1 }), params('purchase', headers, PURCHASE_EXPECTED));
}

/** Reads a purchase's state; with `etag`, sends If-None-Match so an unchanged state costs a 304 without a body. */
export function purchaseStatus(statusUrl, token, etag) {
  const headers = { Authorization: `Bearer ${token}` };
  if (etag) headers['If-None-Match'] = etag;
  return http.get(`${BASE_URL}${statusUrl}`, params('status', headers, STATUS_EXPECTED));
}

/** The last segment of a problem+json `type` (`sold-out`, `duplicate-purchase`, ...), or '' for another body. */
export function problemType(res) {
  try {
    const type = res.json().type;
    return typeof type === 'string' ? type.slice(type.lastIndexOf('/') + 1) : '';
  } catch (_) {
    return '';
  }
}

/** Parses a JSON body, or returns undefined: a check must fail on a bad body, not abort the iteration. */
export function jsonOf(res) {
  try {
    return res.json();
  } catch (_) {
    return undefined;
  }
}

export const FINAL_STATUSES = ['succeeded', 'sold_out', 'rejected', 'failed'];

/**
 * Waits until the sale is drained: nothing admitted is left undecided and PostgreSQL holds every decided unit (the
 * worker decides in Redis before its PostgreSQL transaction commits, so the two agree a moment later).
 * @returns the last stats and whether they converged before DRAIN_TIMEOUT (s).
 */
export function waitForDrain(saleId) {
  const deadline = Date.now() + envNumber('DRAIN_TIMEOUT', 60) * 1000;
  for (;;) {
    const stats = saleStats(saleId);
    const drained = stats.inflightRequests === 0 && stats.pendingUnits === 0 && stats.remaining + stats.unitsInDatabase === stats.stock;
    if (drained || Date.now() >= deadline) return { stats, drained };
    sleep(0.25);
  }
}

/**
 * Ends the sale, then checks its invariants after the load: no oversell, stock conserved, nothing left in flight. The checks
 * carry the tag `invariant:true`, which the scripts' thresholds require at 100%, so a broken invariant makes
 * `k6 run` exit non-zero even when every request looked fine.
 * @param extra - more named predicates over the stats, checked with the same tag.
 * @returns the stats.
 */
export function verifySale(saleId, extra = {}) {
  endSale(saleId); // no late request is admitted while the queue drains
  const { stats, drained } = waitForDrain(saleId);
  const ok = check(
    stats,
    {
      'invariant: drained (no request in flight)': (s) => drained && s.inflightRequests === 0 && s.pendingUnits === 0,
      'invariant: no oversell (unitsInDatabase <= stock)': (s) => s.unitsInDatabase <= s.stock,
      'invariant: stock conserved (remaining + unitsInDatabase == stock)': (s) => s.remaining + s.unitsInDatabase === s.stock,
      ...extra,
    },
    { invariant: 'true' },
  );
  if (!ok) console.error(`sale ${saleId}: an invariant is broken: ${JSON.stringify(stats)}`);
  return stats;
}

/** Thresholds every script shares; `checks{invariant:true}` is what turns a broken invariant into a failed run. */
export function baseThresholds() {
  return {
    http_req_failed: [`rate<${envNumber('MAX_FAILED_RATE', 0.01)}`],
    'http_req_duration{endpoint:purchase}': [`p(99)<${envNumber('P99_MS', 500)}`],
    'checks{invariant:true}': ['rate==1'],
  };
}

/** Options every script shares: trend stats with p(99), time for minting tokens and for draining. */
export const baseOptions = {
  setupTimeout: envString('SETUP_TIMEOUT', '120s'),
  teardownTimeout: envString('TEARDOWN_TIMEOUT', '120s'),
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  // Token minting batches 100 requests; k6 would otherwise send only 6 at a time to one host.
  batch: 100,
  batchPerHost: 100,
};

// ---- End-of-test summary ------------------------------------------------------------------------------------

function fmt(n, contains) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return String(n);
  if (contains === 'time') return n >= 1000 ? `${(n / 1000).toFixed(2)}s` : `${n.toFixed(2)}ms`;
  return Number.isInteger(n) ? String(n) : n.toFixed(4);
}

function metricLine(name, m) {
  const v = m.values || {};
  switch (m.type) {
    case 'counter':
      return `${name}: ${fmt(v.count)} (${fmt(v.rate)}/s)`;
    case 'rate':
      return `${name}: ${(100 * (v.rate || 0)).toFixed(2)}% (${v.passes} of ${v.passes + v.fails})`;
    case 'gauge':
      return `${name}: ${fmt(v.value)} (min ${fmt(v.min)}, max ${fmt(v.max)})`;
    default:
      return `${name}: ${Object.keys(v)
        .map((k) => `${k}=${fmt(v[k], m.contains)}`)
        .join(' ')}`;
  }
}

function collectChecks(group, out) {
  for (const c of group.checks || []) out.push(c);
  for (const g of group.groups || []) collectChecks(g, out);
  return out;
}

/** A few lines a person reads after a run: thresholds, failed checks, the metrics that matter here. */
export function textSummary(data, title) {
  const lines = [`== ${title} ==`];
  const state = data.state || {};
  if (state.testRunDurationMs !== undefined) lines.push(`duration: ${fmt(state.testRunDurationMs, 'time')}`);
  const metrics = data.metrics || {};
  const thresholds = [];
  for (const name of Object.keys(metrics).sort()) {
    for (const [expr, t] of Object.entries(metrics[name].thresholds || {})) thresholds.push(`${t.ok ? 'ok  ' : 'FAIL'} ${name} ${expr}`);
  }
  if (thresholds.length) lines.push('thresholds:', ...thresholds.map((t) => `  ${t}`));
  const checks = collectChecks(data.root_group || {}, []);
  const failed = checks.filter((c) => c.fails > 0);
  lines.push(`checks: ${checks.reduce((n, c) => n + c.passes, 0)} passed, ${checks.reduce((n, c) => n + c.fails, 0)} failed`);
  for (const c of failed) lines.push(`  FAILED ${c.name}: ${c.fails} of ${c.passes + c.fails}`);
  const builtin = ['iterations', 'http_reqs', 'http_req_failed', 'http_req_duration', 'iteration_duration', 'dropped_iterations'];
  const custom = Object.keys(metrics).filter((n) => !n.includes('{') && !builtin.includes(n) && !n.startsWith('http_') && !n.startsWith('data_') && !['checks', 'vus', 'vus_max', 'group_duration'].includes(n));
  lines.push('metrics:');
  for (const name of [...builtin, ...custom.sort()]) if (metrics[name]) lines.push(`  ${metricLine(name, metrics[name])}`);
  return `${lines.join('\n')}\n`;
}

/**
 * What every script's handleSummary returns: the text on stdout, and the whole data as JSON at SUMMARY_JSON when
 * set. The setup data is left out of the file: it holds every shopper's bearer token.
 */
export function summaryOutputs(data, title) {
  const out = { stdout: textSummary(data, title) };
  const path = envString('SUMMARY_JSON', '');
  if (path) {
    const copy = {};
    for (const k of Object.keys(data)) if (k !== 'setup_data') copy[k] = data[k];
    out[path] = JSON.stringify(copy, null, 2);
  }
  return out;
}
