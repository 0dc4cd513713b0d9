/**
 * Request validation with zod: a failure becomes a 400 validation-error listing every field.
 */
import type { z } from 'zod';
import { problems } from './problem.ts';

/** Parses `value` with `schema`. @throws AppError 400 validation-error naming each invalid field. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, where: 'body' | 'query' | 'params' | 'header'): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw problems.fromZod(r.error, where);
  return r.data;
}
