/**
 * CPU used by the processes of one benchmark run, read from Linux's /proc (utime + stime of each process, in clock
 * ticks): what bounds a figure is whichever process sat at a whole core, and a server's CPU per answer survives the
 * noise of a shared machine far better than its requests per second. On a system without /proc every figure is
 * undefined and the report says so.
 *
 * Each group names its processes by pid: the API, the worker and the load generator by the pids the benchmark
 * spawned, and the shared services by the port they listen on (`listenerTree`: the listening process and its
 * descendants, so PostgreSQL's backends are summed with the postmaster). Other tenants of a shared service count
 * with it: its share is an upper bound of what the benchmark cost it.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat's times (USER_HZ, 100 on every Linux we know). */
const TICKS_PER_S = 100;

export interface ProcessGroup {
  name: string;
  pids: () => number[];
}

/** CPU seconds (user + system) of one process, or undefined once it has gone. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (2nd field) may hold spaces and parentheses: fields are counted after its closing one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
  } catch {
    return undefined;
  }
}

function numericDirs(path: string): number[] {
  try {
    return readdirSync(path).filter((e) => /^\d+$/.test(e)).map(Number);
  } catch {
    return [];
  }
}

/** The pid of the process listening on TCP `port` (IPv4 or IPv6), from /proc/net/tcp* and the processes' fds. */
export function listenerPid(port: number): number | undefined {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the socket's inode.
      if (f.length > 9 && f[3] === '0A' && parseInt(f[1]!.split(':')[1]!, 16) === port) inodes.add(`socket:[${f[9]}]`);
    }
  }
  if (inodes.size === 0) return undefined;
  for (const pid of numericDirs('/proc')) {
    for (const fd of numericDirs(`/proc/${pid}/fd`)) {
      try {
        if (inodes.has(readlinkSync(`/proc/${pid}/fd/${fd}`))) return pid;
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return undefined;
}

/** `root` and every process descended from it. */
export function withDescendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const pid of numericDirs('/proc')) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* ended meanwhile */
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [pid, ppid] of parent) if (ppid === out[i]) out.push(pid);
  return out;
}

/** The group of the server listening on `port` and its descendants (resolved once: servers do not move). */
export function listenerTree(name: string, port: number): ProcessGroup {
  let root: number | undefined;
  return {
    name,
    pids: () => {
      root ??= listenerPid(port);
      return root === undefined ? [] : withDescendants(root);
    },
  };
}

/** CPU seconds every core of the machine spent busy (not idle, not waiting for I/O), from /proc/stat's first line. */
function machineBusySeconds(): number | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0)) / TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/** Per group, the CPU seconds of its processes now; processes are matched afresh at every reading. */
function read(groups: ProcessGroup[]): Map<string, Map<number, number>> {
  const out = new Map<string, Map<number, number>>();
  for (const g of groups) {
    const pids = g.pids();
    const m = new Map<number, number>();
    for (const pid of pids) {
      const s = cpuSeconds(pid);
      if (s !== undefined) m.set(pid, s);
    }
    out.set(g.name, m);
  }
  return out;
}

/** CPU used by each group over a window, as a share of one core (1 = one core busy the whole window). */
export type CpuShares = Record<string, number>;

/**
 * Starts a window. @returns a function that ends it: the CPU each group used since, as a share of one core, and in
 * seconds; `machine` is every process of the machine together (2 = two cores busy), so what the run's own groups
 * leave of it is what other tenants used. A process that started during the window counts from zero; one that
 * ended during it is left out of the end reading (its last seconds are lost, never invented).
 */
export function cpuWindow(groups: ProcessGroup[]): () => { shares: CpuShares; seconds: Record<string, number> } {
  const t0 = performance.now();
  const before = read(groups);
  const machine0 = machineBusySeconds();
  return () => {
    const wallS = (performance.now() - t0) / 1000;
    const after = read(groups);
    const machine1 = machineBusySeconds();
    const shares: CpuShares = {};
    const seconds: Record<string, number> = {};
    if (machine0 !== undefined && machine1 !== undefined && wallS > 0) {
      seconds.machine = machine1 - machine0;
      shares.machine = seconds.machine / wallS;
    }
    for (const g of groups) {
      const b = before.get(g.name)!;
      let used = 0;
      for (const [pid, s] of after.get(g.name)!) used += s - (b.get(pid) ?? 0);
      seconds[g.name] = used;
      shares[g.name] = wallS > 0 ? used / wallS : 0;
    }
    return { shares, seconds };
  };
}

/** True where /proc can be read (Linux). */
export function canReadCpu(): boolean {
  return cpuSeconds(process.pid) !== undefined;
}
