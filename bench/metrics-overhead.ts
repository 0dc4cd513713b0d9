/**
 * `npx tsx bench/metrics-overhead.ts`: the CPU the API's metrics middleware adds to one answer, measured in-process
 * (no network, no other process), so the figure survives a busy machine where the HTTP runs of `npm run bench`
 * (step 5) do not. Drives the real middleware with minimal request/response objects through the sold-out answer's
 * path: the request is timed, `finish` is emitted, the admission outcome is counted.
 */
import { EventEmitter } from 'node:events';
import type { Request, Response } from 'express';
import { createApiMetrics } from '../api/metrics.ts';
import { loadConfig } from '../core/config.ts';

const N = 300_000;
const config = loadConfig({ ...process.env, REDIS_KEY_PREFIX: 'fs:overhead', AMQP_PREFIX: 'fs.overhead' });
const broker = new EventEmitter() as never;
const metrics = createApiMetrics({ config, broker, redis: {} as never, topology: {} as never });

function once(): void {
  const res = Object.assign(new EventEmitter(), { statusCode: 409, locals: { problem: 'sold-out' }, getHeader: () => undefined });
  const req = { method: 'POST', url: '/api/sales/0b6f6a52-4a3c-4f55-9d89-2b1c4c0a1f00/purchases', path: '/api/sales/0b6f6a52-4a3c-4f55-9d89-2b1c4c0a1f00/purchases', route: { path: '/api/sales/:saleId/purchases' } };
  metrics.middleware(req as unknown as Request, res as unknown as Response, () => undefined);
  res.emit('finish');
}

function baseline(): void {
  const res = Object.assign(new EventEmitter(), { statusCode: 409, locals: { problem: 'sold-out' }, getHeader: () => undefined });
  const req = { method: 'POST', url: '/api/sales/0b6f6a52-4a3c-4f55-9d89-2b1c4c0a1f00/purchases', route: { path: '/api/sales/:saleId/purchases' } };
  void req;
  res.emit('finish');
}

function measure(fn: () => void): number {
  for (let i = 0; i < 50_000; i++) fn(); // warm-up: JIT
  const t = process.cpuUsage();
  for (let i = 0; i < N; i++) fn();
  const d = process.cpuUsage(t);
  return ((d.user + d.system) * 1000) / N; // ns per call
}

const results: number[] = [];
for (let round = 0; round < 5; round++) results.push(measure(once) - measure(baseline));
results.sort((a, b) => a - b);
console.log(`metrics middleware: ${(results[2]! / 1000).toFixed(2)} µs CPU per answer (median of 5 rounds of ${N}; range ${(results[0]! / 1000).toFixed(2)}–${(results[4]! / 1000).toFixed(2)} µs)`);
metrics.stop();
process.exit(0);
