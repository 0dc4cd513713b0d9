/**
 * An application process (an API node or the worker) run as an orchestrator would: `tsx api/main.ts` as a child,
 * started again after a short delay whenever it exits (a crash, or an exit at start because a dependency is down),
 * and killed with -9 when the schedule says so. Its output is appended to one log file across restarts.
 */
import { statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { sleep, spawnChild, type ChildHandle } from '../scripts/local/child.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** An orchestrator's restart delay for a process that exited by itself, ms. */
const CRASH_RESTART_MS = 1000;

export interface ProcessEvent {
  at: number;
  name: string;
  what: 'start' | 'exit' | 'kill' | 'ready';
  detail?: string;
}

export class Supervised {
  private child: ChildHandle | undefined;
  private stopping = false;
  private held = false;
  /** Exits not asked for (crashes, exits at start), count. */
  unexpectedExits = 0;

  constructor(
    readonly name: string,
    private readonly script: string,
    private readonly env: NodeJS.ProcessEnv,
    readonly logPath: string,
    private readonly events: ProcessEvent[],
    /** Resolves true once a started process is ready (the API's /readyz, the worker's "consuming" log line). */
    private readonly isReady: (logOffset: number) => Promise<boolean>,
  ) {}

  /** Pid of the running process, if any. */
  get pid(): number | undefined {
    return this.child && !this.child.exit ? this.child.pid : undefined;
  }

  /** Starts the process (and keeps it running until `stop`). */
  start(): void {
    const offset = size(this.logPath);
    const child = spawnChild(process.execPath, ['--import', 'tsx', this.script], { cwd: ROOT, env: this.env, logPath: this.logPath });
    this.child = child;
    this.events.push({ at: Date.now(), name: this.name, what: 'start', detail: `pid ${child.pid}` });
    void child.exited.then((reason) => {
      if (this.stopping || this.held) return;
      this.unexpectedExits++;
      this.events.push({ at: Date.now(), name: this.name, what: 'exit', detail: reason });
      setTimeout(() => !this.stopping && !this.held && this.child === child && this.start(), CRASH_RESTART_MS);
    });
    void this.watchReady(child, offset);
  }

  /** Resolves when the current process is ready; rejects after `timeoutMs` (ms). */
  async waitReady(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ready = this.lastReadyAt && this.lastReadyAt >= (this.lastStartAt ?? 0) ? this.lastReadyAt : undefined;
      if (ready) return ready;
      if (Date.now() > deadline) throw new Error(`${this.name} not ready after ${timeoutMs} ms; see ${this.logPath}`);
      await sleep(100);
    }
  }

  private lastStartAt: number | undefined;
  private lastReadyAt: number | undefined;

  private async watchReady(child: ChildHandle, offset: number): Promise<void> {
    this.lastStartAt = Date.now();
    while (!child.exit && !this.stopping) {
      if (await this.isReady(offset)) {
        this.lastReadyAt = Date.now();
        this.events.push({ at: this.lastReadyAt, name: this.name, what: 'ready' });
        return;
      }
      await sleep(100);
    }
  }

  /** kill -9, then a restart after `restartDelayMs` (ms); resolves when the restarted process is ready (or after 60 s). */
  async killAndRestart(restartDelayMs: number): Promise<number> {
    this.held = true;
    const pid = this.child?.pid;
    await this.child?.kill();
    this.events.push({ at: Date.now(), name: this.name, what: 'kill', detail: `pid ${pid}` });
    await sleep(restartDelayMs);
    this.held = false;
    if (this.stopping) return Date.now();
    this.start();
    return this.waitReady(60_000).catch(() => Date.now());
  }

  /** SIGTERM (SIGKILL after 15 s), no restart. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.child?.stop(15_000);
  }

  /** SIGKILL without waiting: the last resort when the harness itself is exiting. */
  killNow(): void {
    this.stopping = true;
    if (this.pid) {
      try {
        process.kill(-this.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

function size(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** True when the log file holds `text` after byte `offset`. */
export async function logHas(path: string, offset: number, text: string): Promise<boolean> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return false;
  try {
    const { size: end } = await fh.stat();
    if (end <= offset) return false;
    const buf = Buffer.alloc(Math.min(end - offset, 4 << 20));
    await fh.read(buf, 0, buf.length, offset);
    return buf.includes(text);
  } finally {
    await fh.close();
  }
}
