/**
 * Security headers through helmet (https://helmetjs.github.io/): a Content-Security-Policy the demo page passes
 * (its script and styles are files of its own origin, nothing inline), `X-Content-Type-Options: nosniff`,
 * `frame-ancestors 'none'` (no framing, so no clickjacking), `Referrer-Policy: no-referrer`, and HSTS only in
 * production (a development server on http://localhost must not pin browsers to HTTPS).
 */
import type { RequestHandler } from 'express';
import helmet from 'helmet';
import type { Config } from '../core/config.ts';

/**
 * @returns the middleware setting the headers. Swagger UI (`/docs`) writes two inline `<style>` blocks, so its pages
 * alone allow inline styles (never inline scripts).
 */
export function securityHeaders(config: Config): RequestHandler {
  const strict = headers(config, ["'self'"]);
  const docs = headers(config, ["'self'", "'unsafe-inline'"]);
  return (req, res, next) => (req.path.startsWith('/docs') ? docs : strict)(req, res, next);
}

function headers(config: Config, styleSrc: string[]): RequestHandler {
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
