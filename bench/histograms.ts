/**
 * The API's own latency histograms (its Prometheus `/metrics`), read before and after a step: where a request's time
 * went on the server (its answer, timed by the API from routing to the last byte; its publisher confirm) against
 * what the load generator saw from the scheduled departure. Quantiles are the upper bound of the bucket they fall
 * in (buckets of core/metrics/registry.ts: 1, 2.5, 5, 10, 25, 50, 100, 250 ms, ...).
 */

/** Cumulative bucket counts of one series: upper bound (s) to count. */
export type Buckets = Map<number, number>;

/** Reads the buckets of `metric` whose label set contains every one of `labels` (e.g. `status_code="202"`). */
export async function readBuckets(baseUrl: string, metric: string, labels: string[] = []): Promise<Buckets> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const out: Buckets = new Map();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}_bucket{`) || !labels.every((l) => line.includes(l))) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    if (!le) continue;
    const bound = le === '+Inf' ? Infinity : Number(le);
    out.set(bound, (out.get(bound) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

/** Quantile `q` (0..1) of what was observed between two readings, ms (a bucket's upper bound); NaN when nothing was. */
export function quantileBetween(before: Buckets, after: Buckets, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  if (total <= 0) return NaN;
  for (const b of bounds) if ((after.get(b) ?? 0) - (before.get(b) ?? 0) >= q * total) return b * 1000;
  return Infinity;
}
