/**
 * Sustained load: a constant RATE of purchases/s for DURATION against a sale with more stock than the test can
 * sell, so (almost) every request takes the full accept path: Redis admission, publish with a confirm, worker
 * decision, PostgreSQL order. It answers "what rate can we hold, at what p(99)?", and afterwards the sale must
 * still add up.
 *
 *   k6 run -e BASE_URL=https://shop.example -e ADMIN_TOKEN=... -e RATE=1000 -e DURATION=5m k6/sustained.js
 *
 * Env: BASE_URL, ADMIN_TOKEN, RATE (200/s), DURATION (60s), STOCK (1000000), SHOPPERS (2000), PER_USER_LIMIT
 * (10000: a shopper may come back, so a few thousand tokens serve any duration), PRE_VUS (50), MAX_VUS (500),
 * P99_MS (500), MAX_FAILED_RATE (0.01), DRAIN_TIMEOUT (60 s), SUMMARY_JSON.
 */
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { baseOptions, baseThresholds, envNumber, envString, jsonOf, prepareSale, problemType, purchase, PURCHASE_EXPECTED, summaryOutputs, verifySale } from './lib.js';

const STOCK = envNumber('STOCK', 1000000);
const SHOPPERS = envNumber('SHOPPERS', 2000);
const PER_USER_LIMIT = envNumber('PER_USER_LIMIT', 10000);

http.setResponseCallback(PURCHASE_EXPECTED);

const outcomes = new Counter('purchase_outcomes');
const accepted = new Counter('purchases_accepted');

export const options = {
  ...baseOptions,
  scenarios: {
    sustained: {
      executor: 'constant-arrival-rate',
      rate: envNumber('RATE', 200),
      timeUnit: '1s',
      duration: envString('DURATION', '60s'),
      preAllocatedVUs: envNumber('PRE_VUS', 50),
      maxVUs: envNumber('MAX_VUS', 500),
    },
  },
  thresholds: {
    ...baseThresholds(),
    // Falling behind the requested rate is a result too: k6 drops iterations when it runs out of VUs.
    dropped_iterations: [`count<=${envNumber('MAX_DROPPED', 0)}`],
  },
};

export function setup() {
  return prepareSale('sustained', { stock: STOCK, perUserLimit: PER_USER_LIMIT, shoppers: SHOPPERS });
}

export default function (data) {
  const i = exec.scenario.iterationInTest;
  const res = purchase(data.saleId, data.tokens[i % data.tokens.length]);
  const type = res.status === 409 ? problemType(res) : '';
  outcomes.add(1, { outcome: res.status === 202 ? 'accepted' : type || `status_${res.status}` });
  if (res.status === 202) accepted.add(1);
  check(res, {
    'purchase: 202 or 409': (r) => r.status === 202 || r.status === 409,
    'purchase: never 5xx': (r) => r.status < 500,
    // With this much stock a 409 can only mean the stock ran out or a shopper reached the limit.
    'purchase: 409 is sold-out or duplicate-purchase': (r) => r.status !== 409 || type === 'sold-out' || type === 'duplicate-purchase',
    'purchase: 202 names its status URL': (r) => r.status !== 202 || typeof (jsonOf(r) || {}).statusUrl === 'string',
  });
}

export function teardown(data) {
  verifySale(data.saleId);
}

export function handleSummary(data) {
  return summaryOutputs(data, 'sustained');
}
