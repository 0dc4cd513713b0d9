/**
 * Metrics: `/metrics` on the API and on the worker's listener count exactly what a known scenario did, with route
 * templates (never URLs or ids) as labels.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startSystem, type TestSystem } from './support/system.ts';

let sys: TestSystem;
beforeAll(async () => {
  sys = await startSystem();
});
afterAll(() => sys?.stop());
afterEach(() => sys.assertInvariants());

/** Parses Prometheus text into `name{labels}` -> value (labels as printed, sorted by prom-client). */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

async function apiMetrics(): Promise<Map<string, number>> {
  const res = await sys.http.get('/metrics');
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/plain/);
  return parse(res.text);
}

async function workerMetrics(): Promise<Map<string, number>> {
  const port = sys.worker!.metrics!.port;
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  return parse(await res.text());
}

const delta = (before: Map<string, number>, after: Map<string, number>, key: string) => (after.get(key) ?? 0) - (before.get(key) ?? 0);

describe('metrics', () => {
  it('when 50 shoppers race for 20 units, then the API counts 20 accepted and 30 sold out, and the worker 20 decisions', async () => {
    const saleId = await sys.createSale({ stock: 20 });
    const [api0, worker0] = await Promise.all([apiMetrics(), workerMetrics()]);
    const tokens = await Promise.all(Array.from({ length: 50 }, (_, i) => sys.token(`m-${i}-${randomUUID()}`)));
    const responses = await Promise.all(
      tokens.map((t) => sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${t}`).send({})),
    );
    expect(responses.filter((r) => r.status === 202)).toHaveLength(20);
    const finals = await Promise.all(responses.filter((r) => r.status === 202).map((r) => sys.waitForFinal(saleId, r.body.requestId)));
    expect(finals.every((s) => s.status === 'succeeded')).toBe(true);
    const [api1, worker1] = await Promise.all([apiMetrics(), workerMetrics()]);

    expect(delta(api0, api1, 'flashsale_admissions_total{outcome="accepted"}')).toBe(20);
    expect(delta(api0, api1, 'flashsale_admissions_total{outcome="sold_out"}')).toBe(30);
    expect(delta(api0, api1, 'flashsale_sold_out_memory_hits_total')).toBeLessThanOrEqual(30);
    const route = 'method="POST",path="/api/sales/:saleId/purchases"';
    expect(delta(api0, api1, `http_request_duration_seconds_count{${route},status_code="202"}`)).toBe(20);
    expect(delta(api0, api1, `http_request_duration_seconds_count{${route},status_code="409"}`)).toBe(30);
    // The accepted requests travelled in 1 to 20 messages (one per event-loop turn), each confirmed; none failed.
    const acked = delta(api0, api1, 'flashsale_publishes_total{result="acked"}');
    expect(acked).toBeGreaterThanOrEqual(1);
    expect(acked).toBeLessThanOrEqual(20);
    expect(delta(api0, api1, 'flashsale_publish_confirm_seconds_count')).toBe(acked);
    expect(delta(api0, api1, 'flashsale_publishes_total{result="failed"}')).toBe(0);

    expect(delta(worker0, worker1, 'flashsale_decisions_total{outcome="succeeded"}')).toBe(20);
    expect(delta(worker0, worker1, 'flashsale_decisions_total{outcome="sold_out"}')).toBe(0);
    expect(delta(worker0, worker1, 'flashsale_accepted_to_final_seconds_count')).toBe(20);
    expect(delta(worker0, worker1, 'flashsale_batch_size_sum')).toBe(20);
    expect(delta(worker0, worker1, 'flashsale_dead_letters_total{reason="poison"}')).toBe(0);
    // Node's default metrics are there too.
    expect(api1.has('nodejs_eventloop_lag_seconds')).toBe(true);
    expect(worker1.has('process_cpu_user_seconds_total')).toBe(true);
  });

  it('when a sale is live, then its stock gauges and the queue gauges are reported, labelled by queue without the prefix', async () => {
    const saleId = await sys.createSale({ stock: 7 });
    await new Promise((r) => setTimeout(r, sys.config.METRICS_POLL_MS + 50)); // the next scrape polls anew
    const m = await apiMetrics();
    expect(m.get(`flashsale_sale_stock_units{sale="${saleId}"}`)).toBe(7);
    expect(m.get(`flashsale_sale_remaining_units{sale="${saleId}"}`)).toBe(7);
    expect(m.get(`flashsale_sale_held_units{sale="${saleId}"}`)).toBe(0);
    expect(m.get('flashsale_queue_consumers{queue="purchases"}')).toBe(1);
    expect(m.get('flashsale_queue_messages{queue="purchases.dead"}')).toBe(0);
    expect([...m.keys()].some((k) => k.includes(sys.config.AMQP_PREFIX))).toBe(false);
  });

  it('when a poison message is dead-lettered, then the worker counts it by reason kind', async () => {
    const before = await workerMetrics();
    const dead = sys.workerEvent('dead-lettered');
    await sys.api.deps.broker.publish(sys.api.deps.topology.purchaseExchange, sys.api.deps.topology.purchaseRoutingKey, Buffer.from('not json'), {
      messageId: randomUUID(),
    });
    await dead;
    const after = await workerMetrics();
    expect(delta(before, after, 'flashsale_dead_letters_total{reason="poison"}')).toBe(1);
  });

  it('when an unknown URL is asked for, then its label is "none", never the URL', async () => {
    await sys.http.get(`/api/nothing/${randomUUID()}`);
    const m = await apiMetrics();
    expect([...m.keys()].some((k) => k.includes('/api/nothing'))).toBe(false);
    expect([...m.keys()].some((k) => k.startsWith('http_request_duration_seconds_count') && k.includes('path="none"') && k.includes('status_code="404"'))).toBe(true);
  });

  it('when an event stream is open (with a query string), then it is counted until it closes', async () => {
    const ac = new AbortController();
    const stream = await fetch(`${sys.url}/api/admin/stats/events?lastEventId=1`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` }, signal: ac.signal });
    expect(stream.status).toBe(200);
    expect((await apiMetrics()).get('flashsale_sse_streams_open')).toBe(1);
    ac.abort();
    await expect.poll(async () => (await apiMetrics()).get('flashsale_sse_streams_open'), { timeout: 10_000 }).toBe(0);
  });

  it('when the worker listener is asked anything but GET /metrics, then 404', async () => {
    const res = await fetch(`http://127.0.0.1:${sys.worker!.metrics!.port}/other`);
    expect(res.status).toBe(404);
  });
});
