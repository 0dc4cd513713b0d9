/**
 * What a failed chaos run leaves behind, in one folder: for each offending requestId (lost, orphan, named by a
 * dangling 409, or of a shopper over the limit) its shopper's attempts, its Redis keys, its PostgreSQL rows and the
 * processes' log lines that mention it (with two lines around each), plus the run's fault and process timeline.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { purchaseKey, saleKeys } from '../core/redis/keys.ts';
import type { Verdict } from './invariants.ts';
import type { LoadResult } from './shoppers.ts';

const run = promisify(execFile);
/** Most requestIds described one by one, count (the rest are listed in summary.json). */
const MAX_DETAILED = 40;

export interface DiagnosisInput {
  dir: string;
  saleId: string;
  redisUrl: string;
  redisPrefix: string;
  databaseUrl: string;
  logs: Record<string, string>;
  load: LoadResult;
  verdict: Verdict;
  timeline: unknown[];
  figures: string;
}

/** Writes the diagnosis folder and returns its path. Never throws: a part it cannot read says why instead. */
export async function writeDiagnosis(d: DiagnosisInput): Promise<string> {
  mkdirSync(d.dir, { recursive: true });
  const offenders = new Map<string, { why: string; users: string[] }>();
  for (const rid of d.verdict.lost) offenders.set(rid, { why: 'lost', users: [] });
  for (const o of d.verdict.orphans) offenders.set(o.requestId, { why: o.ambiguous ? 'orphan (its shopper had an unanswered attempt)' : 'orphan', users: [o.userId] });
  for (const x of d.verdict.dangling409) offenders.set(x.requestId || `(empty, user ${x.userId})`, { why: `named by a 409 duplicate-purchase, reads ${x.read}`, users: [x.userId] });
  const users = new Set(d.verdict.overLimit.map((u) => u.userId));
  writeFileSync(join(d.dir, 'summary.json'), JSON.stringify({ figures: d.figures, violations: d.verdict.violations, offenders: Object.fromEntries(offenders), verdict: d.verdict, timeline: d.timeline }, null, 2));

  const redis = new Redis(d.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
  await redis.connect().catch(() => undefined);
  const db = new pg.Client({ connectionString: d.databaseUrl });
  const dbOk = await db.connect().then(() => true, () => false);
  const keys = saleKeys(d.redisPrefix, d.saleId);
  try {
    let n = 0;
    for (const [rid, { why, users: named }] of offenders) {
      if (n++ >= MAX_DETAILED) break;
      const purchases = d.load.purchases.filter((p) => p.accepted === rid || p.attempts.some((a) => a.requestId === rid));
      const userIds = new Set([...named, ...purchases.map((p) => p.userId)]);
      const rows = dbOk ? await db.query('SELECT * FROM purchases WHERE request_id::text = $1 OR order_id IN (SELECT id FROM orders WHERE request_id::text = $1)', [rid]).then((r) => r.rows, (e: Error) => e.message) : 'no database';
      const orders = dbOk ? await db.query('SELECT * FROM orders WHERE request_id::text = $1', [rid]).then((r) => r.rows, (e: Error) => e.message) : 'no database';
      for (const o of Array.isArray(orders) ? (orders as { user_id: string }[]) : []) userIds.add(o.user_id);
      const userRows = dbOk && userIds.size ? await db.query('SELECT * FROM purchases WHERE sale_id = $1 AND user_id = ANY($2)', [d.saleId, [...userIds]]).then((r) => r.rows, (e: Error) => e.message) : [];
      const redisState = await redisKeys(redis, keys, purchaseKey(d.redisPrefix, d.saleId, rid), rid, [...userIds]);
      const attempts = d.load.purchases.filter((p) => userIds.has(p.userId)).map((p) => ({ idempotencyKey: p.idempotencyKey, accepted: p.accepted, attempts: p.attempts.map((a) => ({ ...a, at: new Date(a.at).toISOString(), end: new Date(a.end).toISOString() })) }));
      const logLines: Record<string, string> = {};
      for (const [name, path] of Object.entries(d.logs)) {
        for (const needle of [rid, ...userIds]) {
          const { stdout } = await run('grep', ['-n', '-F', '-C', '2', '-m', '20', needle, path]).catch(() => ({ stdout: '' }));
          if (stdout) logLines[`${name} (${needle})`] = stdout;
        }
      }
      writeFileSync(join(d.dir, `${rid.replace(/[^a-z0-9-]/gi, '_')}.json`), JSON.stringify({ requestId: rid, why, users: [...userIds], shopper: attempts, redis: redisState, purchaseRows: rows, orderRows: orders, userPurchaseRows: userRows, logLines }, null, 2));
    }
    for (const userId of users) {
      const rows = dbOk ? await db.query('SELECT o.*, p.status AS decision FROM orders o LEFT JOIN purchases p USING (request_id) WHERE o.sale_id = $1 AND o.user_id = $2', [d.saleId, userId]).then((r) => r.rows, (e: Error) => e.message) : 'no database';
      const shopper = d.load.purchases.filter((p) => p.userId === userId);
      writeFileSync(join(d.dir, `over-limit-${userId}.json`), JSON.stringify({ userId, rows, shopper }, null, 2));
    }
  } finally {
    redis.disconnect();
    if (dbOk) await db.end().catch(() => undefined);
  }
  return d.dir;
}

async function redisKeys(redis: Redis, k: ReturnType<typeof saleKeys>, pKey: string, rid: string, users: string[]): Promise<unknown> {
  try {
    return {
      [pKey]: await redis.hgetall(pKey),
      [`${k.decided} ${rid}`]: await redis.hget(k.decided, rid),
      [`${k.inflight} ${rid}`]: await redis.zscore(k.inflight, rid),
      [`${k.requests} ${rid}`]: await redis.hget(k.requests, rid),
      ...Object.fromEntries(await Promise.all(users.map(async (u) => [`${k.last} / ${k.held} ${u}`, [await redis.hget(k.last, u), await redis.hget(k.held, u)]]))),
      [k.sale]: await redis.hgetall(k.sale),
    };
  } catch (err) {
    return `Redis unreadable: ${(err as Error).message}`;
  }
}
