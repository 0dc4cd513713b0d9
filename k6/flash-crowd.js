/**
 * Flash crowd: the moment a sale opens. The arrival rate climbs from 0 to PEAK_RATE purchases/s within RAMP, holds
 * for HOLD, and each iteration is a different shopper asking for one unit. Far more shoppers than units is the
 * point: the API must answer every one of them quickly with 202 (queued) or 409 (sold out / already holds one),
 * never a 5xx, and the sale must end with no unit sold twice.
 *
 *   k6 run -e BASE_URL=https://shop.example -e ADMIN_TOKEN=... -e PEAK_RATE=2000 -e STOCK=500 k6/flash-crowd.js
 *
 * Env: BASE_URL, ADMIN_TOKEN, STOCK (100), SHOPPERS (5000, tokens minted in setup; iterations beyond it reuse
 * shoppers, who then get 409 as well), PEAK_RATE (500/s), RAMP (5s), HOLD (10s), PRE_VUS (100), MAX_VUS (1000),
 * P99_MS (500), MAX_FAILED_RATE (0.01), DRAIN_TIMEOUT (60 s), SUMMARY_JSON (path, none by default).
 */
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { baseOptions, baseThresholds, envNumber, envString, jsonOf, prepareSale, problemType, purchase, PURCHASE_EXPECTED, summaryOutputs, verifySale } from './lib.js';

const STOCK = envNumber('STOCK', 100);
const SHOPPERS = envNumber('SHOPPERS', 5000);
const PEAK_RATE = envNumber('PEAK_RATE', 500);

// Sold-out and duplicate-purchase are the expected answers of a flash sale, not failed requests.
http.setResponseCallback(PURCHASE_EXPECTED);

const outcomes = new Counter('purchase_outcomes');
const accepted = new Counter('purchases_accepted');

export const options = {
  ...baseOptions,
  scenarios: {
    flash_crowd: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      preAllocatedVUs: envNumber('PRE_VUS', 100),
      maxVUs: envNumber('MAX_VUS', 1000),
      stages: [
        { target: PEAK_RATE, duration: envString('RAMP', '5s') },
        { target: PEAK_RATE, duration: envString('HOLD', '10s') },
        { target: 0, duration: '2s' },
      ],
    },
  },
  thresholds: baseThresholds(),
};

export function setup() {
  return prepareSale('flash-crowd', { stock: STOCK, perUserLimit: 1, shoppers: SHOPPERS });
}

export default function (data) {
  const i = exec.scenario.iterationInTest;
  const res = purchase(data.saleId, data.tokens[i % data.tokens.length]);
  const type = res.status === 409 ? problemType(res) : '';
  const outcome = res.status === 202 ? 'accepted' : type || `status_${res.status}`;
  outcomes.add(1, { outcome });
  if (res.status === 202) accepted.add(1);
  check(res, {
    'purchase: 202 or 409': (r) => r.status === 202 || r.status === 409,
    'purchase: never 5xx': (r) => r.status < 500,
    'purchase: 409 is sold-out or duplicate-purchase': (r) => r.status !== 409 || type === 'sold-out' || type === 'duplicate-purchase',
    'purchase: 202 names its status URL': (r) => r.status !== 202 || typeof (jsonOf(r) || {}).statusUrl === 'string',
  });
}

export function teardown(data) {
  verifySale(data.saleId, {
    'invariant: at most one order per shopper': (s) => s.ordersInDatabase <= data.tokens.length * data.perUserLimit,
  });
}

export function handleSummary(data) {
  return summaryOutputs(data, 'flash-crowd');
}
