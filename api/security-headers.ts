/**
 * Security headers through helmet (https://helmetjs.github.io/): a Content-Security-Policy the demo page passes
 * (its script and styles are files of its own origin, nothing inline), `X-Content-Type-Options: nosniff`,
 * `frame-ancestors 'none'` (no framing, so no clickjacking), `Referrer-Policy: no-referrer`, and HSTS only in
 * production (a development server on http://localhost must not pin browsers to HTTPS).
 *
 * helmet decides the headers; it is asked once per variant, at start, and its answer is replayed on every response.
 * With our options its headers depend on nothing in the request (no CSP nonces), and running its thirteen
 * middleware functions per request cost more than the copy; the answers outside Express (api/sold-out-shortcut.ts)
 * send the same list.
 */
import type { Request, RequestHandler, Response } from 'express';
import helmet from 'helmet';
import type { Config } from '../core/config.ts';

/** Header name and value pairs, in the order helmet set them. */
export type HeaderList = readonly (readonly [string, string])[];

/**
 * The headers of every response but Swagger UI's (`/docs`), which writes two inline `<style>` blocks and so alone
 * allows inline styles (never inline scripts).
 */
export function securityHeaderList(config: Config, page: 'strict' | 'docs' = 'strict'): HeaderList {
  return captured(helmetFor(config, page === 'docs' ? ["'self'", "'unsafe-inline'"] : ["'self'"]));
}

/** @returns the middleware setting the headers. */
export function securityHeaders(config: Config): RequestHandler {
  const strict = securityHeaderList(config, 'strict');
  const docs = securityHeaderList(config, 'docs');
  return (req, res, next) => {
    for (const [name, value] of req.path.startsWith('/docs') ? docs : strict) res.setHeader(name, value);
    next();
  };
}

function helmetFor(config: Config, styleSrc: string[]): RequestHandler {
  const production = config.NODE_ENV === 'production';
  return helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc,
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        fontSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        ...(production ? { upgradeInsecureRequests: [] } : {}),
      },
    },
    referrerPolicy: { policy: 'no-referrer' },
    strictTransportSecurity: production ? { maxAge: 31_536_000, includeSubDomains: true } : false,
    crossOriginEmbedderPolicy: false,
  });
}

/**
 * The headers a middleware sets, recorded on a stand-in response.
 * @throws when it reads the request, does anything but set and remove headers, or does not finish at once: then
 *   its headers could differ per request and must not be computed once.
 */
function captured(mw: RequestHandler): HeaderList {
  const headers: [string, string][] = [];
  let done = false;
  const req = new Proxy({}, { get: (_t, p) => { throw new Error(`helmet read req.${String(p)}: its headers may depend on the request`); } });
  const res = {
    setHeader: (name: string, value: unknown) => void headers.push([name, String(value)]),
    removeHeader: () => undefined,
  };
  mw(req as Request, res as unknown as Response, (err?: unknown) => {
    if (err) throw err;
    done = true;
  });
  if (!done) throw new Error('helmet did not finish at once: its headers cannot be computed once');
  return headers;
}
