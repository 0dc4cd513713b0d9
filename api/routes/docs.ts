/**
 * The API's contract: `GET /openapi.json` (OpenAPI 3.1, built once at start from the routes' zod schemas, see
 * api/openapi.ts) and `GET /docs`, Swagger UI (swagger-ui-express, its assets served from the package, no CDN).
 */
import { Router } from 'express';
import swaggerUi from 'swagger-ui-express';
import { openApiDocument } from '../openapi.ts';

export function docsRoutes(): Router {
  const r = Router();
  const document = openApiDocument();
  r.get('/openapi.json', (_req, res) => {
    res.set('Cache-Control', 'public, max-age=60').json(document);
  });
  r.use('/docs', swaggerUi.serve, swaggerUi.setup(undefined, { swaggerOptions: { url: '/openapi.json' }, customSiteTitle: 'Flash sale API' }));
  return r;
}
