/**
 * Request validation with zod: a failure becomes a 400 validation-error listing every field. Every UUID that
 * enters is canonicalised here (see core/ids.ts), and every string PostgreSQL will store is checked for what it
 * cannot store.
 */
import { z } from 'zod';
import { canonicalUuid, uuidSchema } from '../core/ids.ts';
import { problems } from './problem.ts';

export { canonicalUuid, uuidSchema };

/** Parses `value` with `schema`. @throws AppError 400 validation-error naming each invalid field. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, where: 'body' | 'query' | 'params' | 'header'): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw problems.fromZod(r.error, where);
  return r.data;
}

/**
 * A route's UUID parameter in canonical form. @param notFound - the error for anything that is not a UUID (it can
 * name nothing). @throws that error.
 */
export function uuidParam(value: unknown, notFound: (raw: string) => Error): string {
  const id = canonicalUuid(value);
  if (id === undefined) throw notFound(String(value));
  return id;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Text PostgreSQL can store: no NUL byte (SQLSTATE 22021) and no lone UTF-16 surrogate (not encodable as UTF-8).
 */
export const storableText = z
  .string()
  .refine((s) => !s.includes('\u0000'), 'must not contain NUL bytes')
  .refine((s) => !LONE_SURROGATE.test(s), 'must not contain lone surrogates');

/**
 * An ISO 8601 instant with an offset, in years 1970 to 9999: PostgreSQL refuses year 0000 (SQLSTATE 22008), and a
 * sale outside those years is a mistake, not a plan.
 */
export const storableInstant = z.iso
  .datetime({ offset: true })
  .refine((s) => {
    const ms = Date.parse(s);
    return Number.isNaN(ms) || (ms >= 0 && ms < Date.UTC(10000, 0, 1)); // not a date at all: the format check says so
  }, 'must be a date between 1970 and 9999');
