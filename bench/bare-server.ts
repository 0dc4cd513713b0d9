/**
 * The ceiling the accept path is compared with: Express 5 with the same JSON body parser and settings as the API
 * and nothing behind it, in its own process like the API, answering 202 with a body shaped like the API's. What the
 * API loses against this is the cost of its own work (token check, Redis admission, publisher confirm), not of
 * Node or Express. Listens on PORT.
 */
import express from 'express';
import { randomUUID } from 'node:crypto';

const app = express();
app.disable('x-powered-by');
app.set('etag', false);
app.use(express.json({ limit: '16kb', type: ['application/json', 'application/*+json'] }));
app.post('/api/sales/:saleId/purchases', (req, res) => {
  const requestId = randomUUID();
  const statusUrl = `/api/purchases/${requestId}`;
  res.status(202).location(statusUrl).json({ requestId, saleId: req.params.saleId, status: 'queued', statusUrl, eventsUrl: `${statusUrl}/events` });
});

const server = app.listen(Number(process.env.PORT ?? 0));
server.keepAliveTimeout = 65_000;
process.once('SIGTERM', () => server.close(() => process.exit(0)));
