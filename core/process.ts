/**
 * What every entry point (api/main.ts, worker/main.ts) does the same way: know whether it is the main module, shut
 * down gracefully on SIGINT/SIGTERM or a fatal error within a deadline (close-with-grace), and say at start when
 * the database lacks its schema.
 *
 * One signal or the same signal sent to the whole process group gives the same shutdown: under a launcher that
 * relays signals (tsx, npm), a group SIGTERM reaches the app twice within milliseconds, directly and relayed, and
 * close-with-grace alone would take the relayed copy as "exit now". A repeat of the same signal within
 * RELAY_WINDOW_MS is that copy and is ignored; any signal after it forces the exit, as close-with-grace does.
 */
import closeWithGrace from 'close-with-grace';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import type { Db } from './db/client.ts';
import { schemaProblem } from './db/schema-check.ts';

/** Two copies of one group signal arrive closer than this, ms; a person's second Ctrl-C does not. */
const RELAY_WINDOW_MS = 300;
const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

/** True when the module with this `import.meta.url` was started as the program (`node file.js`, `tsx file.ts`). */
export function isMain(metaUrl: string): boolean {
  if (!process.argv[1]) return false;
  const argv = pathToFileURL(process.argv[1]).href;
  return metaUrl === argv || metaUrl === `${argv}.js` || metaUrl === `${argv}.ts`;
}

/**
 * Runs `stop` once on SIGTERM, SIGINT or a fatal error; the process exits after it, or after `deadlineMs` (ms) at
 * most. A second, distinct signal during shutdown exits at once (code 1).
 */
export function onShutdown(logger: Logger, deadlineMs: number, stop: () => Promise<void>): void {
  let first: { signal: string; at: number } | undefined;
  const grace = closeWithGrace(
    { delay: deadlineMs, skip: [...SIGNALS], onTimeout: (ms) => logger.error({ deadlineMs: ms }, 'shutdown took too long; exiting') },
    async ({ err }) => {
      if (err) logger.error({ err }, 'shutting down after an error');
      await stop();
      logger.info('stopped');
    },
  );
  for (const signal of SIGNALS) {
    process.on(signal, () => {
      const now = Date.now();
      if (!first) {
        first = { signal, at: now };
        logger.info({ signal }, 'shutting down');
        grace.close();
      } else if (signal === first.signal && now - first.at < RELAY_WINDOW_MS) {
        logger.debug({ signal }, 'the same signal relayed by the launcher; ignored');
      } else {
        logger.warn({ signal }, 'second signal during shutdown; exiting now');
        process.exit(1);
      }
    });
  }
}

/**
 * Checks once that the database holds every migration, logging an error that names the fix when it does not
 * (and a warning when PostgreSQL does not answer yet). Never throws: `/readyz` keeps reporting it.
 */
export function reportSchema(db: Db, logger: Logger): void {
  schemaProblem(db).then(
    (problem) => problem && logger.error({ problem }, `database schema missing: ${problem}`),
    (err: Error) => logger.warn({ err: err.message }, 'cannot check the database schema yet'),
  );
}
