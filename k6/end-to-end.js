/**
 * End to end: each iteration is a shopper who buys one unit and then polls the status URL until the purchase is
 * decided, the way the web page does when Server-Sent Events are unavailable. It measures what a shopper waits
 * for (time_to_final: from the POST to a final state) and proves that nothing is lost: every 202 must reach a
 * final state within MAX_POLLS polls, and afterwards the sale must add up.
 *
 * Polls send If-None-Match with the last ETag, so an unchanged "queued" costs a bodiless 304.
 *
 *   k6 run -e BASE_URL=https://shop.example -e ADMIN_TOKEN=... -e VUS=200 -e ITERATIONS=10 k6/end-to-end.js
 *
 * Env: BASE_URL, ADMIN_TOKEN, VUS (50), ITERATIONS (20 per VU), STOCK (500), SHOPPERS (VUS x ITERATIONS, so each
 * iteration is a new shopper), MAX_POLLS (120), POLL_INTERVAL (0.25 s), MAX_DURATION (10m), P99_MS (500),
 * FINAL_P99_MS (5000), MAX_FAILED_RATE (0.01), DRAIN_TIMEOUT (60 s), SUMMARY_JSON.
 */
import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Rate, Trend } from 'k6/metrics';
import {
  baseOptions,
  baseThresholds,
  envNumber,
  envString,
  FINAL_STATUSES,
  jsonOf,
  prepareSale,
  problemType,
  purchase,
  PURCHASE_EXPECTED,
  purchaseStatus,
  summaryOutputs,
  verifySale,
} from './lib.js';

const VUS = envNumber('VUS', 50);
const ITERATIONS = envNumber('ITERATIONS', 20);
const STOCK = envNumber('STOCK', 500);
const SHOPPERS = envNumber('SHOPPERS', VUS * ITERATIONS);
const MAX_POLLS = envNumber('MAX_POLLS', 120);
const POLL_INTERVAL = envNumber('POLL_INTERVAL', 0.25);

http.setResponseCallback(PURCHASE_EXPECTED);

const accepted = new Counter('purchases_accepted');
const finalized = new Counter('purchases_finalized');
const notFinal = new Counter('purchases_not_final');
const reachedFinal = new Rate('purchase_reached_final');
const timeToFinal = new Trend('time_to_final', true);
const pollsToFinal = new Trend('polls_to_final');
const notModified = new Counter('status_not_modified');

export const options = {
  ...baseOptions,
  scenarios: {
    end_to_end: {
      executor: 'per-vu-iterations',
      vus: VUS,
      iterations: ITERATIONS,
      maxDuration: envString('MAX_DURATION', '10m'),
    },
  },
  thresholds: {
    ...baseThresholds(),
    'http_req_duration{endpoint:status}': [`p(99)<${envNumber('P99_MS', 500)}`],
    // Nothing lost: every accepted purchase was seen in a final state.
    purchase_reached_final: ['rate==1'],
    time_to_final: [`p(99)<${envNumber('FINAL_P99_MS', 5000)}`],
  },
};

export function setup() {
  return prepareSale('end-to-end', { stock: STOCK, perUserLimit: 1, shoppers: SHOPPERS });
}

/** Polls until a final state or MAX_POLLS. @returns the last state seen (undefined if none) and the polls made. */
function pollUntilFinal(statusUrl, token) {
  let etag;
  let state;
  for (let n = 1; n <= MAX_POLLS; n++) {
    const res = purchaseStatus(statusUrl, token, etag);
    check(res, {
      'status: 200 or 304': (r) => r.status === 200 || r.status === 304,
      'status: 304 only in answer to If-None-Match': (r) => r.status !== 304 || etag !== undefined,
    });
    if (res.status === 200) {
      // k6 canonicalizes header names the way Go does: the API's `ETag` arrives as `Etag`.
      etag = res.headers['Etag'];
      state = jsonOf(res);
      check(res, { 'status: 200 carries an ETag': () => typeof etag === 'string' && etag.length > 0 });
      if (state && FINAL_STATUSES.includes(state.status)) return { state, polls: n };
    } else if (res.status === 304) {
      notModified.add(1);
    } else {
      return { state, polls: n };
    }
    sleep(POLL_INTERVAL);
  }
  return { state, polls: MAX_POLLS };
}

export default function (data) {
  const i = exec.scenario.iterationInTest;
  const token = data.tokens[i % data.tokens.length];
  const started = Date.now();
  const res = purchase(data.saleId, token);
  const body = jsonOf(res) || {};
  const type = res.status === 409 ? problemType(res) : '';
  check(res, {
    'purchase: 202 or 409': (r) => r.status === 202 || r.status === 409,
    'purchase: never 5xx': (r) => r.status < 500,
    'purchase: 409 is sold-out or duplicate-purchase': (r) => r.status !== 409 || type === 'sold-out' || type === 'duplicate-purchase',
    'purchase: 202 has Location = statusUrl': (r) => r.status !== 202 || (typeof body.statusUrl === 'string' && r.headers['Location'] === body.statusUrl),
  });
  if (res.status !== 202 || typeof body.statusUrl !== 'string') return;
  accepted.add(1);

  const { state, polls } = pollUntilFinal(body.statusUrl, token);
  const final = !!state && FINAL_STATUSES.includes(state.status);
  reachedFinal.add(final);
  if (final) {
    finalized.add(1, { status: state.status });
    timeToFinal.add(Date.now() - started);
    pollsToFinal.add(polls);
  } else {
    notFinal.add(1);
  }
  check(state, {
    'end-to-end: every 202 reaches a final state': () => final,
    'end-to-end: the state is the purchase asked about': (s) => !!s && s.requestId === body.requestId,
    'end-to-end: succeeded carries an orderId': (s) => !final || s.status !== 'succeeded' || typeof s.orderId === 'string',
  });
}

export function teardown(data) {
  verifySale(data.saleId, {
    // Every success the worker decided has its order (live or expired): no decision without an order.
    'invariant: one order per succeeded decision': (s) =>
      ((s.decisions && s.decisions.succeeded) || 0) === s.ordersInDatabase + s.ordersByStatus.expired,
    'invariant: at most one order per shopper': (s) => s.ordersInDatabase <= data.tokens.length * data.perUserLimit,
  });
}

export function handleSummary(data) {
  const out = summaryOutputs(data, 'end-to-end');
  const count = (name) => (data.metrics[name] ? data.metrics[name].values.count : 0);
  const lost = count('purchases_accepted') - count('purchases_finalized');
  out.stdout += `accepted ${count('purchases_accepted')}, reached a final state ${count('purchases_finalized')}, lost ${lost}\n`;
  return out;
}
