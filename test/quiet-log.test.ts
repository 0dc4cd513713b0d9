/**
 * Quiet outages: a warning repeated per request is logged once, then once more with its count.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { QuietWarnings } from '../core/quiet-log.ts';

describe('repeated warnings', () => {
  it('when one warning repeats 1,000 times in an interval, then two lines are written, the second with the count', () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({ write: (chunk, _enc, cb) => (lines.push(JSON.parse(String(chunk))), cb()) });
    const logger = pino({ level: 'warn' }, sink);
    const quiet = new QuietWarnings(logger, 60_000);
    for (let i = 0; i < 1000; i++) quiet.warn({ err: 'Connection is closed.', path: `/p/${i}` }, 'dependency unavailable');
    quiet.warn({ err: 'x' }, 'other');
    quiet.flush();
    logger.flush?.();
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        expect(lines.map((l) => l.msg)).toEqual(['dependency unavailable', 'other', 'dependency unavailable (repeated)']);
        expect(lines[2]).toMatchObject({ repeated: 999, path: '/p/0' });
        resolve();
      }),
    );
  });
});
