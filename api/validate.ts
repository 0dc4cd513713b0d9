/**
 * Request validation with zod: a failure becomes a 400 validation-error listing every field.
 */
import { z } from 'zod';
import { problems } from './problem.ts';

/** Parses `value` with `schema`. @throws AppError 400 validation-error naming each invalid field. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, where: 'body' | 'query' | 'params' | 'header'): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw problems.fromZod(r.error, where);
  return r.data;
}

const uuid = z.uuid();

/** True when `value` is a UUID (RFC 9562 layout). Ids that are not can name nothing: callers answer 404. */
export function isUuid(value: unknown): value is string {
  return uuid.safeParse(value).success;
}
