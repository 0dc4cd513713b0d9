/**
 * What every entry point (api/main.ts, worker/main.ts) does the same way: know whether it is the main module, and
 * shut down gracefully on SIGINT/SIGTERM or a fatal error, within a deadline (close-with-grace).
 */
import closeWithGrace from 'close-with-grace';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';

/** True when the module with this `import.meta.url` was started as the program (`node --import tsx file.ts`). */
export function isMain(metaUrl: string): boolean {
  return Boolean(process.argv[1]) && metaUrl === pathToFileURL(process.argv[1]!).href;
}

/** Runs `stop` once on a signal or a fatal error; the process exits after it, or after `deadlineMs` (ms) at most. */
export function onShutdown(logger: Logger, deadlineMs: number, stop: () => Promise<void>): void {
  closeWithGrace({ delay: deadlineMs }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an error');
    else logger.info({ signal }, 'shutting down');
    await stop();
  });
}
