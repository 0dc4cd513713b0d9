/**
 * Builds the operator dashboard (dashboard/ → web/admin/, served by the API at /admin/): one module script and one
 * stylesheet, no inline script or style, Chart.js bundled (no CDN).
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/admin/',
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../web/admin/', import.meta.url)),
    emptyOutDir: true,
    // Keep the module script and the stylesheet as files (a CSP without 'unsafe-inline' allows them).
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
