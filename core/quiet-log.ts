/**
 * Aggregated warnings for outages: the first occurrence of a warning is logged at once, the repeats within the
 * interval are counted and logged as one line with the count when the interval ends, so a few seconds of Redis
 * or RabbitMQ outage under load write a handful of lines, not one per request (the idea of syslog's "last message
 * repeated N times").
 */
import type { Logger } from 'pino';

interface Pending {
  count: number;
  fields: Record<string, unknown>;
}

/** Counts repeats of a warning per message, per interval. */
export class QuietWarnings {
  private readonly pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | undefined;

  /** @param intervalMs - length of one counting interval, ms. */
  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 10_000,
  ) {}

  /**
   * Logs `msg` now if it is the first time in this interval, else counts it.
   * @param fields - context of the first occurrence (only the first one's fields are logged).
   */
  warn(fields: Record<string, unknown>, msg: string): void {
    const p = this.pending.get(msg);
    if (p) {
      p.count++;
      return;
    }
    this.logger.warn(fields, msg);
    this.pending.set(msg, { count: 0, fields });
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Logs one line per warning repeated in the interval ending now, with its count, and starts a new interval. */
  flush(): void {
    this.timer = undefined;
    for (const [msg, p] of this.pending) {
      if (p.count > 0) this.logger.warn({ ...p.fields, repeated: p.count, intervalMs: this.intervalMs }, `${msg} (repeated)`);
    }
    this.pending.clear();
  }
}

const shared = new WeakMap<Logger, QuietWarnings>();

/** The QuietWarnings of a logger, created on first use, so every caller of one logger shares its counts. */
export function quietFor(logger: Logger): QuietWarnings {
  let q = shared.get(logger);
  if (!q) shared.set(logger, (q = new QuietWarnings(logger)));
  return q;
}
