/**
 * Duplicate storm: a handful of shoppers hammer one sale at RATE requests/s, the way impatient people and retrying
 * clients do. Iterations take turns between three kinds of request:
 *   - the shopper's one Idempotency-Key, sent twice in a row: once the key was accepted, every further request with
 *     it must be answered 202 with `Idempotent-Replayed: true` and the same requestId;
 *   - no Idempotency-Key: a new request, refused with 409 duplicate-purchase once the shopper holds the limit;
 *   - a fresh Idempotency-Key each time: the same, since a new key is a new purchase.
 * Counting 202s per shopper would need state shared between VUs, which k6 does not have; teardown checks the
 * outcome where it is recorded instead: the sale's orders never exceed shoppers x perUserLimit.
 *
 *   k6 run -e BASE_URL=https://shop.example -e ADMIN_TOKEN=... -e RATE=500 -e SHOPPERS=20 k6/duplicate-storm.js
 *
 * Env: BASE_URL, ADMIN_TOKEN, RATE (200/s), DURATION (20s), SHOPPERS (10), PER_USER_LIMIT (2), STOCK (1000),
 * PRE_VUS (50), MAX_VUS (500), P99_MS (500), MAX_FAILED_RATE (0.01), DRAIN_TIMEOUT (60 s), SUMMARY_JSON.
 */
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { baseOptions, baseThresholds, envNumber, envString, jsonOf, prepareSale, problemType, purchase, PURCHASE_EXPECTED, summaryOutputs, verifySale } from './lib.js';

const SHOPPERS = envNumber('SHOPPERS', 10);
const PER_USER_LIMIT = envNumber('PER_USER_LIMIT', 2);
const STOCK = envNumber('STOCK', 1000);

http.setResponseCallback(PURCHASE_EXPECTED);

const outcomes = new Counter('purchase_outcomes');
const replays = new Counter('idempotent_replays');

export const options = {
  ...baseOptions,
  scenarios: {
    duplicate_storm: {
      executor: 'constant-arrival-rate',
      rate: envNumber('RATE', 200),
      timeUnit: '1s',
      duration: envString('DURATION', '20s'),
      preAllocatedVUs: envNumber('PRE_VUS', 50),
      maxVUs: envNumber('MAX_VUS', 500),
    },
  },
  thresholds: baseThresholds(),
};

export function setup() {
  return prepareSale('duplicate-storm', { stock: STOCK, perUserLimit: PER_USER_LIMIT, shoppers: SHOPPERS });
}

function record(res, kind) {
  const type = res.status === 409 ? problemType(res) : '';
  const replayed = res.headers['Idempotent-Replayed'] === 'true';
  outcomes.add(1, { kind, outcome: res.status === 202 ? (replayed ? 'replayed' : 'accepted') : type || `status_${res.status}` });
  if (replayed) replays.add(1);
  check(res, {
    'storm: 202 or 409': (r) => r.status === 202 || r.status === 409,
    'storm: never 5xx': (r) => r.status < 500,
    // Plenty of stock: the only refusal is the per-shopper limit (or sold-out, should STOCK be set low).
    'storm: 409 is duplicate-purchase or sold-out': (r) => r.status !== 409 || type === 'duplicate-purchase' || type === 'sold-out',
    'storm: duplicate-purchase names the held request': (r) => type !== 'duplicate-purchase' || typeof (jsonOf(r) || {}).requestId === 'string',
    'storm: 202 carries a requestId': (r) => r.status !== 202 || typeof (jsonOf(r) || {}).requestId === 'string',
  });
  return replayed;
}

export default function (data) {
  const i = exec.scenario.iterationInTest;
  const shopper = i % data.tokens.length;
  const token = data.tokens[shopper];
  const turn = Math.floor(i / data.tokens.length) % 3;

  if (turn === 0) {
    // The same key for the shopper's whole run, so concurrent VUs race on it as retrying clients would.
    const key = `storm-${data.runId}-${shopper}`;
    const first = purchase(data.saleId, token, key);
    record(first, 'same-key');
    const again = purchase(data.saleId, token, key);
    const replayed = record(again, 'same-key');
    if (first.status === 202) {
      check(again, {
        'replay: same Idempotency-Key answers 202 with Idempotent-Replayed: true': (r) => r.status === 202 && replayed,
        'replay: same requestId as the first answer': (r) => (jsonOf(r) || {}).requestId === (jsonOf(first) || {}).requestId,
      });
    }
  } else {
    const key = turn === 2 ? `fresh-${data.runId}-${i}` : undefined;
    const res = purchase(data.saleId, token, key);
    const replayed = record(res, key ? 'fresh-key' : 'no-key');
    check(res, { 'storm: a request without a used key is never a replay': () => !replayed });
  }
}

export function teardown(data) {
  verifySale(data.saleId, {
    // Every order here is one unit, so the unit bound is the per-shopper limit itself.
    'invariant: at most perUserLimit per shopper (ordersInDatabase <= shoppers x perUserLimit)': (s) =>
      s.ordersInDatabase <= data.tokens.length * data.perUserLimit && s.unitsInDatabase <= data.tokens.length * data.perUserLimit,
  });
}

export function handleSummary(data) {
  return summaryOutputs(data, 'duplicate-storm');
}
