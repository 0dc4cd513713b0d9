/**
 * Structured JSON logging with pino (one logger per process, children per component).
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/** Creates the process logger. @param name - the process (api, worker), added to every line. */
export function createLogger(name: string, level: string): Logger {
  return pino({ name, level });
}
