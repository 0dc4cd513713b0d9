/**
 * A child process we started, ended only by its own pid (or the process group it leads, which holds only what it
 * spawned). Output goes to a log file, appended across restarts, so a diagnosis can read around a moment.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { createServer } from 'node:net';

/** How a child ended: a signal name (`SIGKILL`) or `exit <code>`. */
export type ExitReason = string;

export interface ChildHandle {
  readonly pid: number;
  /** Resolves when the process has ended, with how it ended. */
  readonly exited: Promise<ExitReason>;
  /** Set once the process has ended. */
  exit: ExitReason | undefined;
  /** SIGKILL to the process group it leads (kill -9: no cleanup, as a crash). Resolves once it ended. */
  kill(): Promise<ExitReason>;
  /** SIGTERM, then SIGKILL after `graceMs` (ms). Resolves once it ended. */
  stop(graceMs?: number): Promise<ExitReason>;
}

/**
 * Spawns `command args` detached (its own process group, so a Ctrl-C on the terminal reaches only the parent, which
 * then ends it in order), with stdout and stderr appended to `logPath`.
 * @throws when the process cannot be spawned (no pid).
 */
export function spawnChild(command: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string; logPath: string }): ChildHandle {
  const log = openSync(opts.logPath, 'a');
  const proc: ChildProcess = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', log, log], detached: true });
  closeSync(log);
  if (proc.pid === undefined) throw new Error(`could not spawn ${command}`);
  const pid = proc.pid;
  const handle: ChildHandle = {
    pid,
    exit: undefined,
    exited: new Promise<ExitReason>((resolve) => {
      proc.once('exit', (code, signal) => {
        handle.exit = signal ?? `exit ${code}`;
        resolve(handle.exit);
      });
      proc.once('error', (err) => {
        handle.exit = `error ${err.message}`;
        resolve(handle.exit);
      });
    }),
    kill: () => signalGroup(handle, 'SIGKILL'),
    stop: async (graceMs = 15_000) => {
      if (handle.exit) return handle.exit;
      void signalGroup(handle, 'SIGTERM');
      const timer = setTimeout(() => void signalGroup(handle, 'SIGKILL'), graceMs);
      const reason = await handle.exited;
      clearTimeout(timer);
      return reason;
    },
  };
  return handle;
}

async function signalGroup(child: ChildHandle, signal: NodeJS.Signals): Promise<ExitReason> {
  if (!child.exit) {
    try {
      process.kill(-child.pid, signal); // the group this child leads: it and what it spawned, nothing else
    } catch {
      try {
        process.kill(child.pid, signal);
      } catch {
        /* already gone */
      }
    }
  }
  return child.exited;
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until a child we started serves: calls `probe` (given the ms left) every `pollMs` until it answers true,
 * while the child runs. A probe may answer a string, the reason it is not ready, which the error then names.
 * @throws when the child exits first or `timeoutMs` passes; the child is killed (kill -9) before the throw.
 */
export async function awaitReady(
  child: ChildHandle,
  o: { name: string; timeoutMs: number; pollMs: number; see: string; probe: (leftMs: number) => Promise<boolean | string> },
): Promise<void> {
  const deadline = Date.now() + o.timeoutMs;
  let reason = 'timeout';
  while (!child.exit && Date.now() < deadline) {
    const ready = await o.probe(deadline - Date.now());
    if (ready === true) return;
    if (typeof ready === 'string') reason = ready;
    if (child.exit || Date.now() >= deadline) break;
    await sleep(o.pollMs);
  }
  if (child.exit) reason = `exited (${child.exit})`;
  await child.kill();
  throw new Error(`${o.name} did not start: ${reason}; see ${o.see}`);
}

/** A free TCP port on 127.0.0.1 (bound and released), for a process about to listen on it. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}
