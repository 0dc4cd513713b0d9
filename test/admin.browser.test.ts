/**
 * The operator dashboard in Chromium (playwright-core, Debian's chromium) against the real API and worker: it opens
 * with the admin token, its charts draw, a purchase made here moves its numbers, a sale created and ended from the
 * page does what it says, and a dead letter is replayed from the page. No inline script or style runs: the page is
 * served under a strict Content-Security-Policy for this test. Set ADMIN_SCREENSHOT=/path.png to keep a picture.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startSystem, type TestSystem } from './support/system.ts';

const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const WAIT_MS = 30_000;
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'";

let sys: TestSystem;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`Chromium not found at ${CHROMIUM_PATH}: install it (apt-get install -y chromium) or set CHROMIUM_PATH.`);
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  sys = await startSystem();
});
afterAll(async () => {
  await browser?.close();
  await sys?.stop();
});
afterEach(() => sys.assertInvariants());

async function openDashboard(): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  // Serve the page under a CSP without 'unsafe-inline': an inline script or style would be refused and reported.
  await page.route((url) => url.pathname.startsWith('/admin/'), async (route) => {
    const res = await route.fetch();
    await route.fulfill({ response: res, headers: { ...res.headers(), 'content-security-policy': CSP } });
  });
  await page.goto(`${sys.url}/admin/`);
  return { page, errors };
}

/** For the README's picture only (ADMIN_SCREENSHOT): a small crowd in waves for a few seconds, then the page. */
async function screenshotUnderLoad(page: Page, path: string): Promise<void> {
  const saleId = await sys.createSale({ name: 'Sneakers drop', stock: 300 });
  for (let wave = 0; wave < 8; wave++) {
    const tokens = await Promise.all(Array.from({ length: 60 }, () => sys.token(`crowd-${randomUUID()}`)));
    await Promise.all(tokens.map((t) => sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${t}`).send({})));
    await new Promise((r) => setTimeout(r, 700));
  }
  await new Promise((r) => setTimeout(r, 2500));
  await page.screenshot({ path, fullPage: true });
  await sys.http.post(`/api/admin/sales/${saleId}/end`).set('Authorization', `Bearer ${ADMIN_TOKEN}`);
}

describe('operator dashboard', () => {
  it('when opened with the admin token, then it shows live numbers, draws its charts, and a purchase moves them', async () => {
    const saleId = await sys.createSale({ name: `Dash ${randomUUID().slice(0, 8)}`, stock: 5 });
    const { page, errors } = await openDashboard();
    await page.fill('[data-testid=token]', 'wrong-token-0123456789');
    await page.click('[data-testid=open]');
    await page.waitForSelector('[data-testid=login-error]:has-text("refused")');
    errors.length = 0; // Chromium reports the expected 401 on the console

    await page.fill('[data-testid=token]', ADMIN_TOKEN);
    await page.click('[data-testid=open]');
    const row = page.locator(`[data-testid=sale-${saleId}]`);
    await row.waitFor();
    await expect.poll(() => row.locator('[data-testid=remaining]').textContent(), { timeout: WAIT_MS }).toBe('5');

    const token = await sys.token(`dash-${randomUUID()}`);
    const res = await sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${token}`).send({});
    expect(res.status).toBe(202);
    await sys.waitForFinal(saleId, res.body.requestId);
    await expect.poll(() => row.locator('[data-testid=remaining]').textContent(), { timeout: WAIT_MS }).toBe('4');
    await expect.poll(() => row.locator('td').nth(5).textContent(), { timeout: WAIT_MS }).toBe('1'); // pending payment
    // Both charts have drawn several points by now.
    for (const chart of ['rates-chart', 'remaining-chart']) {
      await expect.poll(async () => Number(await page.getAttribute(`[data-testid=${chart}]`, 'data-points')), { timeout: WAIT_MS }).toBeGreaterThan(1);
    }
    expect(await page.textContent('[data-testid=queue-depth]')).toMatch(/consumers/);
    if (process.env.ADMIN_SCREENSHOT) await screenshotUnderLoad(page, process.env.ADMIN_SCREENSHOT);
    expect(errors).toEqual([]);
    await page.context().close();
  });

  it('when a sale is created and ended from the page, then it is live, then refuses purchases', async () => {
    const { page, errors } = await openDashboard();
    await page.fill('[data-testid=token]', ADMIN_TOKEN);
    await page.click('[data-testid=open]');
    const name = `Made here ${randomUUID().slice(0, 8)}`;
    await page.fill('[data-testid=create] input[name=name]', name);
    await page.fill('[data-testid=create] input[name=stock]', '3');
    await page.click('[data-testid=create] button');
    const created = await page.waitForSelector('[data-testid=create-result]:has-text("Created")');
    const saleId = /\(([0-9a-f-]{36})\)/.exec((await created.textContent()) ?? '')![1]!;
    await page.click(`[data-testid=end-${saleId}]`);
    // The button says so until the next snapshot leaves the ended sale out of the live list.
    await page.waitForFunction((id) => {
      const { document } = globalThis as unknown as { document: { querySelector(s: string): { textContent: string | null } | null } };
      const end = document.querySelector(`[data-testid="end-${id}"]`);
      return !end || end.textContent === 'Ended';
    }, saleId);
    const token = await sys.token(`dash-${randomUUID()}`);
    const refused = await sys.http.post(`/api/sales/${saleId}/purchases`).set('Authorization', `Bearer ${token}`).send({});
    expect(refused.body).toMatchObject({ type: '/problems/sale-not-active', state: 'ended' });
    expect(errors).toEqual([]);
    await page.context().close();
  });

  it('when a message is dead-lettered, then the page lists it with its reason and replays it', async () => {
    const { page, errors } = await openDashboard();
    await page.fill('[data-testid=token]', ADMIN_TOKEN);
    await page.click('[data-testid=open]');
    await page.waitForSelector('[data-testid=rate-accepted]:not(:has-text("–"))');
    const t = sys.api.deps.topology;
    const deadOnce = sys.workerEvent('dead-lettered');
    await sys.api.deps.broker.publish(t.purchaseExchange, t.purchaseRoutingKey, Buffer.from('{"not":"a purchase"}'), { messageId: `poison-${randomUUID()}` });
    await deadOnce;
    await page.waitForSelector('[data-testid=dlq-count-purchases]:has-text("1")');
    expect(await page.textContent('[data-testid=dlq-purchases]')).toContain('poison message');
    // The replayed poison goes back to the worker, which dead-letters it again: the replay did reach the queue.
    const deadAgain = sys.workerEvent('dead-lettered');
    await page.click('[data-testid=replay-purchases]');
    await page.waitForSelector('[data-testid=replay-result-purchases]:has-text("Replayed 1")');
    await deadAgain;
    expect(errors).toEqual([]);
    await page.context().close();
  });
});
