/**
 * The part of autocannon 9's API the benchmark uses (the package ships no types): see its README, "API" section.
 */
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  namespace autocannon {
    interface Request {
      method?: string;
      path?: string;
      headers?: Record<string, string>;
      body?: string | Buffer;
      /** Called before each send; returns the request to send. */
      setupRequest?: (req: Request, context: Record<string, unknown>) => Request;
      onResponse?: (status: number, body: string, context: Record<string, unknown>, headers: Record<string, string>) => void;
    }
    interface Options {
      url: string;
      connections?: number;
      pipelining?: number;
      /** s */
      duration?: number;
      amount?: number;
      maxOverallRequests?: number;
      /** s */
      timeout?: number;
      method?: string;
      headers?: Record<string, string>;
      body?: string;
      requests?: Request[];
    }
    /** Latency in whole milliseconds. */
    interface Histogram {
      average: number;
      max: number;
      p50: number;
      p99: number;
      p99_9: number;
    }
    interface Result {
      latency: Histogram;
      errors: number;
      timeouts: number;
      statusCodeStats: Record<string, { count: number }>;
    }
    interface Instance extends EventEmitter {
      stop(): void;
    }
  }
  function autocannon(opts: autocannon.Options, cb: (err: Error | null, result: autocannon.Result) => void): autocannon.Instance;
  export default autocannon;
}
