/**
 * Deciding a batch in Redis: one decide-6.lua call per sale with all of that sale's purchases, in order. A sale
 * Redis does not hold (it lost its state) is rebuilt from PostgreSQL and decided again; purchases of a sale
 * PostgreSQL does not know either are dead-lettered.
 */
import { saleKeys } from '../core/redis/keys.ts';
import { Decision, decide, type DecideResult } from '../core/redis/scripts.ts';
import { loadSale } from '../core/sales.ts';
import type { Item, WorkerContext } from './context.ts';
import { deadLetterItem } from './dead-letters.ts';

export type Decided = Map<Item, DecideResult & { epoch: string }>;

/**
 * @returns each item's decision and the epoch it was taken under; dead-lettered items are absent.
 * @throws when Redis or PostgreSQL fails (the caller retries the batch), or when a sale vanishes twice in a row.
 */
export async function decideAll(w: WorkerContext, items: Item[]): Promise<Decided> {
  const { redis, db, config } = w.d;
  const prefix = config.REDIS_KEY_PREFIX;
  const out: Decided = new Map();
  const bySale = new Map<string, Item[]>();
  for (const it of items) {
    const group = bySale.get(it.m.saleId);
    if (group) group.push(it);
    else bySale.set(it.m.saleId, [it]);
  }
  await Promise.all(
    [...bySale].map(async ([saleId, group]) => {
      for (let round = 0; round < 2; round++) {
        const { epoch, results } = await decide(redis, saleKeys(prefix, saleId), group.map((it) => it.m));
        if (results[0]?.decision !== Decision.SaleNotLoaded) {
          group.forEach((it, i) => out.set(it, { ...results[i]!, epoch }));
          return;
        }
        if ((await loadSale(db, redis, prefix, saleId)) === 'missing') {
          for (const it of group) await deadLetterItem(w, it, `unknown sale ${saleId}`);
          return;
        }
      }
      throw new Error(`sale ${saleId} vanished from Redis twice in a row`);
    }),
  );
  return out;
}
