/**
 * Options of a chaos run, from the environment and the command line (`npm run chaos -- --short`):
 * CHAOS_SEED (32-bit integer, random when unset, always printed), CHAOS_FAULTS (comma list of
 * api, worker, broker, redis, combined; all by default), CHAOS_SECONDS (length of the load, s),
 * CHAOS_SHOPPERS (count), CHAOS_DIAGNOSIS_DIR (where a failed run leaves its diagnosis).
 * `--short` is the CI schedule: fewer shoppers and seconds, every fault kind once.
 */
import { z } from 'zod';

export const FAULT_KINDS = ['api', 'worker', 'broker', 'redis', 'combined'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface ChaosOptions {
  seed: number;
  faults: FaultKind[];
  /** Length of the shoppers' arrivals, s. */
  seconds: number;
  /** Distinct shoppers, count. */
  shoppers: number;
  /** Longest wait for every accepted purchase to reach a final state after the load, s. */
  drainSeconds: number;
  short: boolean;
  diagnosisDir: string | undefined;
}

const schema = z.object({
  CHAOS_SEED: z.coerce.number().int().min(0).max(0xffffffff).optional(),
  CHAOS_FAULTS: z
    .string()
    .transform((s) => s.split(',').map((f) => f.trim()).filter(Boolean))
    .pipe(z.array(z.enum(FAULT_KINDS)).min(1))
    .optional(),
  CHAOS_SECONDS: z.coerce.number().int().min(10).max(600).optional(),
  CHAOS_SHOPPERS: z.coerce.number().int().min(100).max(50_000).optional(),
  CHAOS_DIAGNOSIS_DIR: z.string().min(1).optional(),
});

/**
 * Reads the options.
 * @throws Error naming each invalid variable.
 */
export function chaosOptions(env: NodeJS.ProcessEnv = process.env, argv: string[] = process.argv.slice(2)): ChaosOptions {
  const present = Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith('CHAOS_') && v));
  const parsed = schema.safeParse(present);
  if (!parsed.success) throw new Error(`Invalid chaos options:\n${parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')}`);
  const o = parsed.data;
  const short = argv.includes('--short');
  return {
    seed: o.CHAOS_SEED ?? Math.floor(Math.random() * 0xffffffff),
    faults: o.CHAOS_FAULTS ?? [...FAULT_KINDS],
    seconds: o.CHAOS_SECONDS ?? (short ? 40 : 75),
    shoppers: o.CHAOS_SHOPPERS ?? (short ? 3000 : 6000),
    drainSeconds: short ? 60 : 90,
    short,
    diagnosisDir: o.CHAOS_DIAGNOSIS_DIR,
  };
}
