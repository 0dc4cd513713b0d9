/**
 * The promises checked after a chaos run has drained, each from the shoppers' answers, the API's reads and
 * PostgreSQL's rows:
 * - lost 0: every requestId a shopper was given a 202 for reads a final state through the API;
 * - no orphan order: every order of the sale names a requestId some shopper was given a 202 for;
 * - no shopper over the per-user limit; no oversell; `remaining + units in active orders == stock`;
 * - every 409 `duplicate-purchase` names a requestId its shopper can read in a final state;
 * - no 5xx but 503.
 */
import pg from 'pg';
import type { LoadResult, ShopperPurchase } from './shoppers.ts';

const FINAL = new Set(['succeeded', 'sold_out', 'rejected', 'failed']);

export interface Sale {
  id: string;
  stock: number;
  perUserLimit: number;
}

export interface Verdict {
  lost: string[];
  /** Orders whose requestId no shopper was given a 202 for; `ambiguous` when its shopper has an unanswered attempt. */
  orphans: { requestId: string; userId: string; ambiguous: boolean }[];
  overLimit: { userId: string; units: number }[];
  oversold: number;
  /** remaining + units - stock (0 when the books balance). */
  imbalance: number;
  remaining: number;
  units: number;
  /** duplicate-purchase answers naming nothing readable and final. */
  dangling409: { userId: string; requestId: string; read: string }[];
  bad5xx: { userId: string; status: number; detail?: string }[];
  statuses: Record<string, number>;
  requests: number;
  accepted: number;
  unavailable: number;
  /** What the API answered last for each lost requestId. */
  lostReads: Record<string, string>;
  violations: string[];
}

/** Reads a purchase through the API as its shopper: its status, or `http <code>`/`error`. */
export async function readPurchase(apiUrls: string[], saleId: string, requestId: string, token: string, i = 0): Promise<string> {
  const base = apiUrls[i % apiUrls.length]!;
  try {
    const res = await fetch(`${base}/api/sales/${saleId}/purchases/${requestId}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
    if (res.status !== 200) return `http ${res.status}`;
    return ((await res.json()) as { status: string }).status;
  } catch {
    return 'error';
  }
}

/**
 * Waits until every accepted purchase reads a final state through the API, or `drainMs` (ms) passed.
 * @returns the last read of each requestId still not final.
 */
export async function drain(apiUrls: string[], saleId: string, load: LoadResult, drainMs: number): Promise<{ pending: Map<string, string>; drainedAt: number }> {
  const deadline = Date.now() + drainMs;
  let pending = new Map<string, ShopperPurchase>(load.purchases.filter((p) => p.accepted).map((p) => [p.accepted!, p]));
  const reads = new Map<string, string>();
  for (let round = 0; ; round++) {
    const next = new Map<string, ShopperPurchase>();
    const entries = [...pending];
    for (let i = 0; i < entries.length; i += 50) {
      await Promise.all(
        entries.slice(i, i + 50).map(async ([rid, p], j) => {
          const read = await readPurchase(apiUrls, saleId, rid, p.token, round + j);
          if (FINAL.has(read)) reads.delete(rid);
          else {
            reads.set(rid, read);
            next.set(rid, p);
          }
        }),
      );
    }
    pending = next;
    if (!pending.size || Date.now() > deadline) return { pending: reads, drainedAt: Date.now() };
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Checks every invariant; `pendingReads` comes from `drain`. */
export async function check(opts: { databaseUrl: string; apiUrls: string[]; adminToken: string; sale: Sale; load: LoadResult; pendingReads: Map<string, string> }): Promise<Verdict> {
  const { sale, load } = opts;
  const statuses: Record<string, number> = {};
  const bad5xx: Verdict['bad5xx'] = [];
  let requests = 0;
  for (const p of load.purchases) {
    for (const a of p.attempts) {
      requests++;
      const k = a.status === 0 ? `error:${a.detail}` : a.status === 409 || a.status === 503 ? `${a.status}:${a.detail}` : String(a.status);
      statuses[k] = (statuses[k] ?? 0) + 1;
      if (a.status >= 500 && a.status !== 503) bad5xx.push({ userId: p.userId, status: a.status, detail: a.detail });
    }
  }
  const acceptedIds = new Set(load.purchases.flatMap((p) => (p.accepted ? [p.accepted] : [])));
  const unanswered = new Set(load.purchases.filter((p) => !p.accepted && p.attempts.some((a) => a.status === 0)).map((p) => p.userId));

  const db = new pg.Client({ connectionString: opts.databaseUrl });
  await db.connect();
  try {
    const orders = await db.query<{ request_id: string; user_id: string; quantity: number; status: string }>('SELECT request_id, user_id, quantity, status FROM orders WHERE sale_id = $1', [sale.id]);
    const active = orders.rows.filter((o) => o.status === 'pending_payment' || o.status === 'paid');
    const units = active.reduce((n, o) => n + o.quantity, 0);
    const perUser = new Map<string, number>();
    for (const o of active) perUser.set(o.user_id, (perUser.get(o.user_id) ?? 0) + o.quantity);
    const orphans = orders.rows.filter((o) => !acceptedIds.has(o.request_id)).map((o) => ({ requestId: o.request_id, userId: o.user_id, ambiguous: unanswered.has(o.user_id) }));
    const overLimit = [...perUser].filter(([, u]) => u > sale.perUserLimit).map(([userId, u]) => ({ userId, units: u }));

    const stats = await fetch(`${opts.apiUrls[0]}/api/admin/sales/${sale.id}/stats`, { headers: { authorization: `Bearer ${opts.adminToken}` } });
    const remaining = stats.status === 200 ? ((await stats.json()) as { remaining: number }).remaining : Number.NaN;

    const dangling409: Verdict['dangling409'] = [];
    const dups = load.purchases.flatMap((p) => p.attempts.filter((a) => a.status === 409 && a.detail === 'duplicate-purchase').map((a) => ({ p, rid: a.requestId ?? '' })));
    const seen = new Set<string>();
    for (const { p, rid } of dups) {
      if (seen.has(`${p.userId}|${rid}`)) continue;
      seen.add(`${p.userId}|${rid}`);
      const read = rid ? await readPurchase(opts.apiUrls, sale.id, rid, p.token) : 'no requestId';
      if (!FINAL.has(read)) dangling409.push({ userId: p.userId, requestId: rid, read });
    }

    const lost = [...opts.pendingReads.keys()];
    const v: Verdict = {
      lost,
      lostReads: Object.fromEntries(opts.pendingReads),
      orphans,
      overLimit,
      oversold: Math.max(0, units - sale.stock),
      imbalance: remaining + units - sale.stock,
      remaining,
      units,
      dangling409,
      bad5xx,
      statuses,
      requests,
      accepted: acceptedIds.size,
      unavailable: Object.entries(statuses).filter(([k]) => k.startsWith('503')).reduce((n, [, c]) => n + c, 0),
      violations: [],
    };
    if (lost.length) v.violations.push(`lost ${lost.length}: accepted with 202, not final through the API`);
    if (orphans.length) v.violations.push(`orphan orders ${orphans.length} (${orphans.filter((o) => !o.ambiguous).length} of shoppers who had every attempt answered)`);
    if (overLimit.length) v.violations.push(`${overLimit.length} shoppers over the per-user limit`);
    if (v.oversold) v.violations.push(`oversold by ${v.oversold}`);
    if (v.imbalance !== 0) v.violations.push(`remaining ${remaining} + units ${units} != stock ${sale.stock}`);
    if (dangling409.length) v.violations.push(`${dangling409.length} duplicate-purchase answers name nothing final`);
    if (bad5xx.length) v.violations.push(`${bad5xx.length} 5xx answers other than 503`);
    return v;
  } finally {
    await db.end();
  }
}
