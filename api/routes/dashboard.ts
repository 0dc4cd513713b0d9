/**
 * The operator dashboard's stream (admin token): `GET /api/admin/stats/events`, Server-Sent Events, one
 * `event: stats` a second with the snapshot of api/admin-stats.ts. The page itself is static, at `/admin/`
 * (built from dashboard/ with vite into web/admin/).
 */
import { openEventStream } from '../event-stream.ts';
import { Router } from 'express';
import { AdminStats } from '../admin-stats.ts';
import { requireAdmin } from '../auth.ts';
import type { ApiDeps } from '../deps.ts';

export function dashboardRoutes(d: ApiDeps): Router {
  const r = Router();
  const stats = new AdminStats(d);
  r.get('/api/admin/stats/events', requireAdmin(d.config.ADMIN_TOKEN), (req, res) => {
    openEventStream(res);
    const unsubscribe = stats.subscribe((s) => res.write(`event: stats\nid: ${s.at}\ndata: ${JSON.stringify(s)}\n\n`));
    res.on('close', unsubscribe);
  });
  return r;
}
