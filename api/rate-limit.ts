/**
 * Rate limits, shared by every API node through Redis (rate-limiter-flexible), answered 429 `rate-limited` with
 * `Retry-After` and the IETF `RateLimit` / `RateLimit-Policy` headers (draft-ietf-httpapi-ratelimit-headers-09).
 *
 * - `ip`: every route, per client IP (`req.ip`, which honours X-Forwarded-For only from TRUST_PROXY peers);
 * - `purchase`: per shopper and sale; `poll`: per shopper, on status reads and stream opens;
 * - `login`: per IP on the demo login; `adminFailures`: a budget of wrong admin tokens per IP.
 *
 * Each key carries its own hash tag (a digest of the client), so on a Redis Cluster each is one slot and the
 * limiter's single-key script runs there. A client already over a limit is refused from this process's memory
 * until its window ends (`inMemoryBlockOnConsumed`), so a flood costs Redis nothing more. When Redis fails, a
 * per-process limiter of the same size stands in (`insuranceLimiter`): limits hold per node, requests still pass.
 */
import { createHash } from 'node:crypto';
import type { RedisClient } from '../core/redis/client.ts';
import type { Request, RequestHandler, Response } from 'express';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config } from '../core/config.ts';
import { AppError } from './problem.ts';

type Window = { points: number; seconds: number };
type LimitName = 'ip' | 'purchase' | 'poll' | 'login' | 'adminFailures';

interface Limiter {
  name: LimitName;
  windows: { w: Window; rl: RateLimiterRedis }[];
}

/** The middleware of each limit; a no-op everywhere when RATE_LIMITS=off. */
export interface RateLimits {
  ip: RequestHandler;
  purchase: RequestHandler;
  poll: RequestHandler;
  login: RequestHandler;
  /** Refuses an IP that spent its admin-token failure budget; call `adminFailed(req)` on each wrong token. */
  adminBudget: RequestHandler;
  adminFailed(req: Request): Promise<void>;
}

const pass: RequestHandler = (_req, _res, next) => next();

/** A short digest of a client identity, safe inside a hash tag (no braces) whatever the user id holds. */
function tag(parts: string[]): string {
  return `{${createHash('sha256').update(parts.map((p) => `${p.length}:${p}`).join('|')).digest('base64url').slice(0, 22)}}`;
}

function limiter(redis: RedisClient, prefix: string, name: LimitName, windows: Window[]): Limiter {
  return {
    name,
    windows: windows.map((w) => ({
      w,
      rl: new RateLimiterRedis({
        storeClient: redis,
        keyPrefix: `${prefix}:rl:${name}:${w.seconds}s`,
        points: w.points,
        duration: w.seconds,
        inMemoryBlockOnConsumed: w.points + 1,
        insuranceLimiter: new RateLimiterMemory({ points: w.points, duration: w.seconds }),
      }),
    })),
  };
}

function setHeaders(res: Response, l: Limiter, results: RateLimiterRes[]): void {
  res.set('RateLimit-Policy', l.windows.map(({ w }) => `"${l.name}-${w.seconds}s";q=${w.points};w=${w.seconds}`).join(', '));
  res.set(
    'RateLimit',
    results.map((r, i) => `"${l.name}-${l.windows[i]!.w.seconds}s";r=${Math.max(0, r.remainingPoints)};t=${Math.ceil(r.msBeforeNext / 1000)}`).join(', '),
  );
}

function rateLimited(name: LimitName, msBeforeNext: number): AppError {
  const s = Math.max(1, Math.ceil(msBeforeNext / 1000));
  return new AppError('rate-limited', 429, `Too many requests (${name} limit); retry in ${s} s.`, { limit: name }, { 'Retry-After': String(s) });
}

/**
 * Consumes one point of every window of `l` for `key`. @returns undefined when allowed (headers set), or the 429
 * problem when any window is spent.
 */
async function consume(l: Limiter, key: string, res: Response): Promise<AppError | undefined> {
  const results = await Promise.all(l.windows.map(({ rl }) => rl.consume(key).then((r) => ({ ok: true, r }), (r: unknown) => ({ ok: false, r }))));
  const failed = results.find((x) => !(x.r instanceof RateLimiterRes));
  if (failed) throw failed.r; // neither Redis nor the insurance limiter answered: a bug, not a limit
  const rs = results.map((x) => x.r as RateLimiterRes);
  setHeaders(res, l, rs);
  const over = results.filter((x) => !x.ok).map((x) => (x.r as RateLimiterRes).msBeforeNext);
  return over.length ? rateLimited(l.name, Math.max(...over)) : undefined;
}

function middleware(l: Limiter, keyOf: (req: Request) => string[]): RequestHandler {
  return (req, res, next) => {
    consume(l, tag(keyOf(req)), res).then(next, next);
  };
}

/**
 * Builds the limits of one API process from config. @param redis - the shared Redis; @param prefix - the key
 * prefix (keys are `<prefix>:rl:<limit>:<window>s:{<client digest>}`).
 */
export function createRateLimits(config: Config, redis: RedisClient): RateLimits {
  if (config.RATE_LIMITS === 'off') {
    return { ip: pass, purchase: pass, poll: pass, login: pass, adminBudget: pass, adminFailed: async () => undefined };
  }
  const p = config.REDIS_KEY_PREFIX;
  const ip = limiter(redis, p, 'ip', config.RATE_LIMIT_IP);
  const purchase = limiter(redis, p, 'purchase', config.RATE_LIMIT_PURCHASE);
  const poll = limiter(redis, p, 'poll', config.RATE_LIMIT_POLL);
  const login = limiter(redis, p, 'login', config.RATE_LIMIT_LOGIN);
  const admin = limiter(redis, p, 'adminFailures', config.RATE_LIMIT_ADMIN_FAILURES);
  const ipOf = (req: Request) => [req.ip ?? req.socket.remoteAddress ?? ''];
  return {
    ip: middleware(ip, ipOf),
    purchase: middleware(purchase, (req) => [req.userId ?? '', String(req.params.saleId).toLowerCase()]),
    poll: middleware(poll, (req) => [req.userId ?? '']),
    login: middleware(login, ipOf),
    adminBudget: (req, _res, next) => {
      const key = tag(ipOf(req));
      Promise.all(admin.windows.map(({ w, rl }) => rl.get(key).then((r) => (r && r.consumedPoints >= w.points ? r.msBeforeNext : -1))))
        .then((ms) => {
          const worst = Math.max(...ms);
          next(worst >= 0 ? rateLimited('adminFailures', worst) : undefined);
        }, () => next()); // Redis down: the admin routes answer 503 by themselves
    },
    async adminFailed(req) {
      const key = tag(ipOf(req));
      await Promise.all(admin.windows.map(({ rl }) => rl.penalty(key).catch(() => undefined)));
    },
  };
}

const byDeps = new WeakMap<object, RateLimits>();

/** The limits of an app's deps, built once per deps object so every router shares the same limiters. */
export function rateLimitsOf(d: { config: Config; redis: RedisClient }): RateLimits {
  let l = byDeps.get(d);
  if (!l) byDeps.set(d, (l = createRateLimits(d.config, d.redis)));
  return l;
}
