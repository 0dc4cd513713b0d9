/**
 * Flash-sale demo page logic: demo login (session cookie), one sale with live stock, and a purchase followed to
 * its final status over Server-Sent Events, falling back to ETag polling when the stream keeps failing. A sale with
 * a waiting room is joined first (its proof of work solved in pow-worker.js), the ticket followed the same way, and
 * the Buy button shown once the shopper is admitted, its purchase carrying the Admission-Token.
 * Plain browser ES module: no build step, no framework, no external resources.
 */

const STORAGE_KEY = 'flash-sale.user';
const USER_ID = /^[\x21-\x7e]{1,128}$/;
const SALE_REFRESH_MS = 2000;
/** Automatic attempts of one Buy click (network errors and 503s) before the shopper is asked to retry. */
const SUBMIT_ATTEMPTS = 5;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10_000;
/** Stream failures in a row after which the page polls instead. */
const SSE_MAX_FAILURES = 3;
const POLL_MS = 1000;
/** How often the "pay within" countdown is redrawn. */
const PAY_TICK_MS = 15_000;

const STATE_LABELS = { upcoming: 'Upcoming', live: 'Live', sold_out: 'Sold out', ended: 'Ended' };
const STATUS_LABELS = { queued: 'queued', succeeded: 'succeeded', sold_out: 'sold out', rejected: 'rejected', failed: 'failed' };
const TICKET_LABELS = { prequeue: 'pre-queue', waiting: 'waiting', admitted: 'your turn', done: 'done', sold_out: 'sold out', expired: 'expired' };
/** Ticket states after which the page stops following the ticket (the server closes its stream too). */
const TICKET_SETTLED = new Set(['admitted', 'done', 'expired']);

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ui = {
  account: $('account'),
  signedInName: $('signed-in-name'),
  signOut: $('sign-out'),
  login: $('login'),
  loginForm: /** @type {HTMLFormElement} */ ($('login-form')),
  loginName: /** @type {HTMLInputElement} */ ($('login-name')),
  loginSubmit: /** @type {HTMLButtonElement} */ ($('login-submit')),
  loginError: $('login-error'),
  sale: $('sale'),
  pickerRow: $('sale-picker-row'),
  picker: /** @type {HTMLSelectElement} */ ($('sale-picker')),
  saleName: $('sale-name'),
  saleState: $('sale-state'),
  saleTimes: $('sale-times'),
  saleBody: $('sale-body'),
  meter: $('sale-meter'),
  meterFill: $('sale-meter-fill'),
  remaining: $('sale-remaining'),
  stock: $('sale-stock'),
  limit: $('sale-limit'),
  buyForm: /** @type {HTMLFormElement} */ ($('buy-form')),
  quantityField: $('quantity-field'),
  quantity: /** @type {HTMLInputElement} */ ($('quantity')),
  buy: /** @type {HTMLButtonElement} */ ($('buy')),
  buyHint: $('buy-hint'),
  purchase: $('purchase'),
  purchaseStatus: $('purchase-status'),
  purchaseBadge: $('purchase-badge'),
  purchaseMessage: $('purchase-message'),
  purchaseDetail: $('purchase-detail'),
  pay: /** @type {HTMLButtonElement} */ ($('pay')),
  payResult: $('pay-result'),
  queue: $('queue'),
  queueIntro: $('queue-intro'),
  queueJoin: /** @type {HTMLButtonElement} */ ($('queue-join')),
  queueFigures: $('queue-figures'),
  queueTicket: $('queue-ticket'),
  queueState: $('queue-state'),
  queueMessage: $('queue-message'),
  queuePosition: $('queue-position'),
  queueAhead: $('queue-ahead'),
  queueWait: $('queue-wait'),
  queueMeter: $('queue-meter'),
  queueMeterFill: $('queue-meter-fill'),
  problem: $('problem'),
  problemTitle: $('problem-title'),
  problemDetail: $('problem-detail'),
  problemErrors: $('problem-errors'),
};

const page = {
  /** @type {{ userId: string, expiresAt: string } | null} */
  user: null,
  /** @type {any[]} */
  sales: [],
  /** @type {any | null} */
  sale: null,
  refreshTimer: 0,
  refreshing: false,
  /** True from the Buy click until the purchase has a final status. */
  busy: false,
  /**
   * The Buy click whose answer never arrived: its Idempotency-Key is sent again by the next click, so a retry
   * cannot buy twice. @type {{ key: string, saleId: string, quantity: number } | null}
   */
  pendingClick: null,
  /** @type {StreamWatch | null} */
  watch: null,
  /**
   * The shopper's ticket in the shown sale's waiting room: its latest view, the admission token once admitted,
   * the most people ever seen ahead (the progress bar's start) and the stream following it.
   * @type {{ saleId: string, view: any, admissionToken: string | null, mostAhead: number, watch: StreamWatch | null } | null}
   */
  queue: null,
  /** `saleId|userId` whose ticket was looked up, so a reload resumes an existing ticket once. */
  queueLookedUp: '',
  /** The join in progress: its proof-of-work worker, if solving. @type {{ worker: Worker | null } | null} */
  joining: null,
  /** @type {string | null} */
  orderId: null,
  payTimer: 0,
  /** Bumped whenever the shown purchase is dropped (sign-out, other sale), so late answers are ignored. */
  generation: 0,
};

// ---------------------------------------------------------------------------------------------------------------
// HTTP helpers

/** A problem answer (RFC 9457) or a local failure shaped like one, so the page shows both the same way. */
class Problem extends Error {
  /** @param {{ type?: string, title?: string, status?: number, detail?: string, [k: string]: unknown }} body */
  constructor(body, retryAfterMs = 0) {
    super(body.detail ?? body.title ?? 'Request failed');
    this.body = body;
    this.status = body.status ?? 0;
    this.title = body.title ?? 'Something went wrong';
    this.detail = body.detail ?? '';
    /** The last path segment of `type`, e.g. "sold-out". */
    this.slug = typeof body.type === 'string' ? (body.type.split('/').pop() ?? '') : '';
    this.retryAfterMs = retryAfterMs;
  }
}

/** Thrown when the server could not be reached at all (as opposed to answering with an error). */
class NetworkFailure extends Error {}

/** Reads an error answer as a Problem, whatever its body. */
async function problemOf(res) {
  let body = {};
  try {
    if (/json/.test(res.headers.get('Content-Type') ?? '')) body = await res.json();
  } catch {
    // A body that is not JSON is described by the status alone.
  }
  if (typeof body !== 'object' || body === null) body = {};
  return new Problem(
    { title: res.statusText || `HTTP ${res.status}`, detail: `The server answered ${res.status}.`, status: res.status, ...body },
    retryAfterOf(res),
  );
}

/** Retry-After as ms: either delay-seconds or an HTTP date (RFC 9110 §10.2.3). */
function retryAfterOf(res) {
  const value = res.headers.get('Retry-After');
  if (!value) return 0;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? 0 : Math.max(0, at - Date.now());
}

/** Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)). */
function backoff(attempt, base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS) {
  return Math.random() * Math.min(cap, base * 2 ** attempt);
}

/** Resolves after `ms`, or rejects as soon as `signal` aborts. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(undefined);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A random UUID; `crypto.randomUUID` exists only in secure contexts, so a plain-http demo needs the fallback. */
function newIdempotencyKey() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

async function getJson(url, headers = {}) {
  let res;
  try {
    res = await fetch(url, { headers: { Accept: 'application/json', ...headers }, cache: 'no-store' });
  } catch {
    throw new NetworkFailure('The server could not be reached.');
  }
  if (!res.ok) throw await problemOf(res);
  return res.json();
}

// ---------------------------------------------------------------------------------------------------------------
// Messages

function showProblem(p) {
  const problem = p instanceof Problem ? p : new Problem({ title: 'Connection problem', detail: p?.message ?? String(p) });
  ui.problem.dataset.problemType = problem.slug || 'local';
  ui.problemTitle.textContent = problem.title;
  ui.problemDetail.textContent = problem.detail;
  ui.problemErrors.replaceChildren(
    ...(Array.isArray(problem.body.errors) ? problem.body.errors : []).map((e) => {
      const li = document.createElement('li');
      li.textContent = `${e.field}: ${e.message}`;
      return li;
    }),
  );
  ui.problem.hidden = false;
}

function clearProblem() {
  ui.problem.hidden = true;
  delete ui.problem.dataset.problemType;
  ui.problemTitle.textContent = '';
  ui.problemDetail.textContent = '';
  ui.problemErrors.replaceChildren();
}

// ---------------------------------------------------------------------------------------------------------------
// Session

function loadUser() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? 'null');
    // An expired cookie would only earn a 401 on the first Buy; ask for the name again instead.
    if (saved && typeof saved.userId === 'string' && typeof saved.token === 'string' && Date.parse(saved.expiresAt) > Date.now()) return saved;
  } catch {
    // Storage unavailable or corrupt: start signed out.
  }
  return null;
}

function saveUser(user) {
  try {
    if (user) localStorage.setItem(STORAGE_KEY, JSON.stringify(user));
    else localStorage.removeItem(STORAGE_KEY);
  } catch {
    // Private mode may refuse storage; the session still works for this page's lifetime.
  }
}

/** The Authorization header of the signed-in shopper (state-changing requests need it; the cookie is not enough). */
function authorization() {
  return page.user?.token ? { Authorization: `Bearer ${page.user.token}` } : {};
}

function setUser(user) {
  page.user = user;
  saveUser(user);
  ui.account.hidden = !user;
  ui.login.hidden = Boolean(user);
  ui.signedInName.textContent = user?.userId ?? '';
  renderBuy();
  renderQueue();
}

async function signIn(event) {
  event.preventDefault();
  const userId = ui.loginName.value.trim();
  if (!USER_ID.test(userId)) {
    showLoginError('Use 1–128 letters, digits or symbols, without spaces.');
    return;
  }
  showLoginError('');
  ui.loginSubmit.disabled = true;
  try {
    let res;
    try {
      res = await fetch('/api/session', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ userId }),
      });
    } catch {
      throw new NetworkFailure('The server could not be reached. Check your connection and try again.');
    }
    if (!res.ok) throw await problemOf(res);
    const body = await res.json();
    clearProblem();
    resetPurchase();
    resetQueue();
    // The cookie serves EventSource and reads; purchases and payments carry the token in Authorization, which a
    // cross-site form cannot send (CSRF).
    setUser({ userId: body.userId, expiresAt: body.expiresAt, token: body.token });
    ui.buy.focus();
  } catch (err) {
    showLoginError(err instanceof Problem ? `${err.title}. ${err.detail}` : err.message);
  } finally {
    ui.loginSubmit.disabled = false;
  }
}

function showLoginError(message) {
  ui.loginError.textContent = message;
  ui.loginError.hidden = !message;
  ui.loginName.setAttribute('aria-invalid', message ? 'true' : 'false');
}

/** Forgets the name locally; the cookie stays until the next sign-in replaces it or it expires. */
function signOut() {
  resetPurchase();
  resetQueue();
  clearProblem();
  setUser(null);
  ui.loginName.value = '';
  ui.loginName.focus();
}

// ---------------------------------------------------------------------------------------------------------------
// Sale

function wantedSaleId() {
  return new URLSearchParams(location.search).get('sale');
}

async function loadSales() {
  try {
    const { sales } = await getJson('/api/sales');
    page.sales = sales;
    const wanted = wantedSaleId();
    let sale = wanted ? sales.find((s) => s.id === wanted) : sales[0];
    // The list holds only the newest sales; a linked older one is fetched on its own. The list does not say
    // whether a sale has a waiting room: the shown one is always read on its own.
    if (wanted || sale) {
      const listed = Boolean(sale);
      sale = await getJson(`/api/sales/${encodeURIComponent(listed ? sale.id : wanted)}`);
      page.sales = listed ? sales.map((s) => (s.id === sale.id ? sale : s)) : [sale, ...sales];
    }
    renderPicker();
    selectSale(sale ?? null);
  } catch (err) {
    page.sale = null;
    renderSale();
    ui.saleName.textContent = 'Sale unavailable';
    if (wantedSaleId() && err instanceof Problem && err.status === 404) {
      const link = document.createElement('a');
      link.href = location.pathname;
      link.textContent = 'See the newest sale instead';
      ui.saleTimes.replaceChildren(link);
    }
    showProblem(err);
    // The API may just be starting or briefly down: try again. A 4xx (e.g. an unknown ?sale=) will not heal.
    if (!(err instanceof Problem) || err.status >= 500) {
      clearTimeout(page.refreshTimer);
      page.refreshTimer = window.setTimeout(loadSales, SALE_REFRESH_MS * 2);
    }
  }
}

function renderPicker() {
  ui.picker.replaceChildren(
    ...page.sales.map((s) => {
      const option = document.createElement('option');
      option.value = s.id;
      option.textContent = `${s.name} (${STATE_LABELS[s.state] ?? s.state})`;
      return option;
    }),
  );
  ui.pickerRow.hidden = page.sales.length < 2;
}

function selectSale(sale) {
  if (page.sale?.id !== sale?.id) {
    resetPurchase();
    resetQueue();
    clearProblem();
  }
  page.sale = sale;
  if (sale) ui.picker.value = sale.id;
  renderSale();
  scheduleRefresh();
}

function onPick() {
  const sale = page.sales.find((s) => s.id === ui.picker.value);
  if (!sale) return;
  const url = new URL(location.href);
  url.searchParams.set('sale', sale.id);
  history.replaceState(null, '', url);
  selectSale(sale);
  refreshSale();
}

function formatTime(iso) {
  return new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(iso));
}

/** The time of day of an instant, e.g. 14:05. */
function formatClock(iso) {
  return new Intl.DateTimeFormat(undefined, { timeStyle: 'short' }).format(new Date(iso));
}

function renderSale() {
  const s = page.sale;
  ui.sale.setAttribute('aria-busy', 'false');
  if (!s) {
    ui.saleName.textContent = 'No sale right now';
    ui.saleState.hidden = true;
    ui.saleTimes.textContent = 'Come back soon.';
    ui.saleBody.hidden = true;
    renderBuy();
    return;
  }
  ui.saleBody.hidden = false;
  ui.saleName.textContent = s.name;
  ui.saleState.hidden = false;
  ui.saleState.textContent = STATE_LABELS[s.state] ?? s.state;
  ui.saleState.dataset.state = s.state;
  ui.saleState.className = `badge badge-${s.state}`;
  if (s.state === 'upcoming') ui.saleTimes.textContent = `Starts ${formatTime(s.startsAt)}`;
  else if (s.state === 'ended') ui.saleTimes.textContent = s.endsAt ? `Ended ${formatTime(s.endsAt)}` : 'Ended';
  else ui.saleTimes.textContent = s.endsAt ? `Ends ${formatTime(s.endsAt)}` : 'On while stock lasts';

  const share = s.stock > 0 ? Math.max(0, Math.min(1, s.remaining / s.stock)) : 0;
  ui.remaining.textContent = String(s.remaining);
  ui.stock.textContent = String(s.stock);
  ui.limit.textContent = `· at most ${s.perUserLimit} per shopper`;
  ui.meter.setAttribute('aria-valuemax', String(s.stock));
  ui.meter.setAttribute('aria-valuenow', String(s.remaining));
  ui.meter.setAttribute('aria-valuetext', `${s.remaining} of ${s.stock} left`);
  ui.meterFill.style.width = `${(share * 100).toFixed(2)}%`;
  ui.meter.classList.toggle('meter-low', share > 0 && share <= 0.2);

  ui.quantityField.hidden = s.perUserLimit <= 1;
  ui.quantity.max = String(s.perUserLimit);
  renderBuy();
  renderQueue();
}

/**
 * The Buy button stays usable whatever the shown state: stock can come back when reservations expire, and the
 * server's answer (sold out, not open yet) is authoritative and explained to the shopper.
 */
function renderBuy() {
  const s = page.sale;
  ui.buy.disabled = !page.user || !s || page.busy;
  ui.buy.textContent = page.pendingClick && !page.busy ? 'Retry purchase' : 'Buy now';
  const admitted = ticketOf(s)?.view.state === 'admitted' ? ticketOf(s) : null;
  if (!page.user) ui.buyHint.textContent = 'Sign in to buy.';
  else if (admitted?.view.sessionExpiresAt) ui.buyHint.textContent = `Your turn! Buy before ${formatClock(admitted.view.sessionExpiresAt)}.`;
  else if (s?.state === 'upcoming') ui.buyHint.textContent = 'The sale has not started yet.';
  else if (s?.state === 'sold_out') ui.buyHint.textContent = 'Everything is reserved right now; units may come back.';
  else if (s?.state === 'ended') ui.buyHint.textContent = 'The sale has ended.';
  else ui.buyHint.textContent = '';
}

function scheduleRefresh() {
  clearTimeout(page.refreshTimer);
  if (document.hidden || !page.sale) return;
  page.refreshTimer = window.setTimeout(refreshSale, SALE_REFRESH_MS);
}

async function refreshSale() {
  const s = page.sale;
  if (!s || page.refreshing) return;
  page.refreshing = true;
  try {
    const fresh = await getJson(`/api/sales/${encodeURIComponent(s.id)}`);
    // The shopper may have picked another sale meanwhile.
    if (page.sale?.id === fresh.id) {
      page.sale = fresh;
      page.sales = page.sales.map((x) => (x.id === fresh.id ? fresh : x));
      renderSale();
    }
  } catch {
    // A missed refresh is harmless: the next one comes shortly.
  } finally {
    page.refreshing = false;
    scheduleRefresh();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Waiting room

/** The shopper's ticket in `sale`'s waiting room, when the page holds one. */
function ticketOf(sale) {
  return sale && page.queue?.saleId === sale.id && page.queue.view ? page.queue : null;
}

/** The Admission-Token header of a purchase in `saleId`, once admitted there (the server judges it). */
function admissionOf(saleId) {
  const q = page.queue;
  return q?.saleId === saleId && q.admissionToken ? { 'Admission-Token': q.admissionToken } : {};
}

/** Forgets the ticket shown (another sale, another shopper): its stream and any proof of work in progress. */
function resetQueue() {
  page.queue?.watch?.stop();
  page.queue = null;
  page.queueLookedUp = '';
  page.joining?.worker?.terminate();
  page.joining = null;
}

/**
 * Shows a waiting room's part of the sale: the Join button, then the ticket (state, position, people ahead,
 * estimated wait, progress); the Buy button only once admitted. A sale without a waiting room shows none of it.
 */
function renderQueue() {
  const s = page.sale;
  const room = s?.waitingRoom ?? null;
  ui.queue.hidden = !room;
  const q = ticketOf(s);
  ui.buyForm.hidden = Boolean(room) && q?.view.state !== 'admitted';
  if (!room) return;
  if (page.user && !q && page.queueLookedUp !== `${s.id}|${page.user.userId}`) lookUpTicket(false);
  ui.queueIntro.hidden = Boolean(q);
  ui.queueJoin.hidden = Boolean(q);
  ui.queueJoin.disabled = !page.user || Boolean(page.joining);
  if (!page.joining) ui.queueJoin.textContent = page.user ? 'Join the queue' : 'Sign in to join the queue';
  ui.queueTicket.hidden = !q;
  if (!q) return;
  const v = q.view;
  ui.queueState.textContent = TICKET_LABELS[v.state] ?? v.state;
  ui.queueState.dataset.state = v.state;
  ui.queueState.className = `badge badge-ticket-${v.state}`;
  ui.queueMessage.textContent = ticketMessage(v);
  ui.queueFigures.hidden = TICKET_SETTLED.has(v.state);
  ui.queuePosition.textContent = v.position ?? '–';
  ui.queueAhead.textContent = v.ahead ?? '–';
  ui.queueWait.textContent = formatWait(v.estimatedWaitSeconds);
  // From the most people ever seen ahead to none; admitted is the end of the line.
  const share = v.state === 'admitted' || v.state === 'done' ? 1 : typeof v.ahead === 'number' ? (q.mostAhead - v.ahead) / (q.mostAhead + 1) : 0;
  const percent = Math.round(Math.max(0, Math.min(1, share)) * 100);
  ui.queueMeter.setAttribute('aria-valuenow', String(percent));
  ui.queueMeter.setAttribute('aria-valuetext', v.ahead === null ? ui.queueMessage.textContent : `${v.ahead} ahead of you`);
  ui.queueMeterFill.style.width = `${percent}%`;
}

function ticketMessage(v) {
  switch (v.state) {
    case 'prequeue':
      return 'You are in the pre-queue: the order is drawn when the sale starts.';
    case 'waiting':
      return v.ahead === 0 ? 'You are next.' : 'You are in line; keep this page open.';
    case 'admitted':
      return 'It is your turn: buy now.';
    case 'done':
      return 'Your purchase was decided.';
    case 'sold_out':
      return 'Sold out for now: the line is closed, and you keep your place if units come back.';
    case 'expired':
      return 'Your turn passed: you were away, or the time to buy ran out.';
    default:
      return '';
  }
}

/** Seconds as the shopper reads them. */
function formatWait(seconds) {
  if (typeof seconds !== 'number') return '–';
  if (seconds <= 0) return 'any moment';
  if (seconds < 90) return `about ${seconds} s`;
  return `about ${Math.round(seconds / 60)} min`;
}

/**
 * Reads the shopper's ticket once (`GET …/queue/me`): after a reload it resumes the ticket they hold; after a
 * purchase or a refused one it shows where the ticket went. A 404 means no ticket: the Join button stays.
 */
async function lookUpTicket(force) {
  const sale = page.sale;
  if (!sale?.waitingRoom || !page.user) return;
  const looking = `${sale.id}|${page.user.userId}`;
  if (!force && page.queueLookedUp === looking) return;
  page.queueLookedUp = looking;
  try {
    onTicket(sale.id, await getJson(`/api/sales/${encodeURIComponent(sale.id)}/queue/me`, authorization()));
  } catch {
    // No ticket yet (404), or a transient failure: joining reports its own problem.
  }
}

async function onJoin() {
  const sale = page.sale;
  if (!sale?.waitingRoom || !page.user || page.joining) return;
  const joining = { worker: null };
  page.joining = joining;
  clearProblem();
  renderQueue();
  const stale = () => page.joining !== joining;
  const say = (text) => {
    if (!stale()) ui.queueJoin.textContent = text;
  };
  try {
    const body = {};
    const pow = sale.waitingRoom.proofOfWork;
    if (pow) {
      say('Getting a challenge…');
      const challenge = await getJson(pow.challengeUrl, authorization());
      if (stale()) return;
      say('Checking your browser…');
      body.altcha = await solveProofOfWork(challenge, joining, (share) => say(`Checking your browser… ${Math.round(share * 100)} %`));
    }
    if (stale()) return;
    say('Joining…');
    let res;
    try {
      res = await fetch(`/api/sales/${encodeURIComponent(sale.id)}/queue`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...authorization() },
        body: JSON.stringify(body),
      });
    } catch {
      throw new NetworkFailure('Joining the queue failed: check your connection and try again.');
    }
    if (!res.ok) throw await problemOf(res);
    const ticket = await res.json();
    if (stale()) return;
    page.joining = null;
    onTicket(sale.id, ticket);
  } catch (err) {
    if (stale()) return;
    showProblem(err instanceof NetworkFailure ? new Problem({ title: 'Connection problem', detail: err.message }) : err);
    if (err instanceof Problem && err.slug === 'unauthorized') setUser(null);
  } finally {
    if (!stale()) page.joining = null;
    renderQueue();
  }
}

/**
 * Solves an ALTCHA challenge in a Web Worker of our own origin (pow-worker.js), so the page stays responsive.
 * @returns the `altcha` member of the join: base64 of the payload ALTCHA's widget would send.
 */
function solveProofOfWork(challenge, joining, onProgress) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('pow-worker.js', import.meta.url));
    joining.worker = worker;
    const fail = (detail) => reject(new Problem({ title: 'The browser check failed', detail }));
    worker.addEventListener('message', (e) => {
      if (typeof e.data.progress === 'number') return onProgress(e.data.progress);
      worker.terminate();
      joining.worker = null;
      if (typeof e.data.number !== 'number') return fail(e.data.error ?? 'No solution was found.');
      const { algorithm, challenge: hash, salt, signature } = challenge;
      resolve(btoa(JSON.stringify({ algorithm, challenge: hash, number: e.data.number, salt, signature })));
    });
    worker.addEventListener('error', (e) => {
      worker.terminate();
      joining.worker = null;
      fail(e.message || 'The worker stopped.');
    });
    worker.postMessage({ challenge: challenge.challenge, salt: challenge.salt, maxnumber: challenge.maxnumber });
  });
}

/** Shows a ticket's view (from the join, the stream or a poll) and follows it until it settles. */
function onTicket(saleId, view) {
  if (page.sale?.id !== saleId) return;
  if (page.queue?.saleId !== saleId) {
    page.queue?.watch?.stop();
    page.queue = { saleId, view, admissionToken: null, mostAhead: 0, watch: null };
  }
  const q = page.queue;
  q.view = view;
  q.admissionToken = view.admissionToken ?? null;
  if (typeof view.ahead === 'number') q.mostAhead = Math.max(q.mostAhead, view.ahead);
  if (TICKET_SETTLED.has(view.state)) {
    q.watch?.stop();
    q.watch = null;
  } else if (!q.watch) {
    q.watch = new StreamWatch({
      statusUrl: `${view.queueUrl}/me`,
      eventsUrl: `${view.queueUrl}/events`,
      event: 'queue',
      isFinal: (v) => TICKET_SETTLED.has(v.state),
      onUpdate: (v) => onTicket(saleId, v),
      onProblem: (p) => {
        if (page.queue === q) q.watch = null;
        showProblem(p);
      },
    });
    q.watch.start();
  }
  page.queueLookedUp = `${saleId}|${page.user?.userId ?? ''}`;
  renderQueue();
  renderBuy();
}

// ---------------------------------------------------------------------------------------------------------------
// Purchase

async function onBuy(event) {
  event.preventDefault();
  const sale = page.sale;
  if (!sale || !page.user || page.busy) return;
  const quantity = Math.max(1, Math.min(sale.perUserLimit, Math.trunc(Number(ui.quantity.value)) || 1));
  const pending = page.pendingClick;
  const click =
    pending && pending.saleId === sale.id && pending.quantity === quantity ? pending : { key: newIdempotencyKey(), saleId: sale.id, quantity };
  page.pendingClick = click;

  resetPurchase();
  clearProblem();
  const generation = page.generation;
  page.busy = true;
  renderBuy();
  showStatus('sending', 'Sending your order…');
  try {
    const accepted = await submitPurchase(click, generation);
    if (generation !== page.generation) return;
    page.pendingClick = null;
    follow(accepted.requestId, accepted);
  } catch (err) {
    if (generation !== page.generation) return;
    page.busy = false;
    if (err instanceof Problem && err.slug !== 'service-unavailable') page.pendingClick = null;
    hideStatus();
    onPurchaseProblem(err);
  } finally {
    renderBuy();
  }
}

/**
 * Sends one Buy click, retrying network failures and 503s with the same Idempotency-Key (503 after its
 * Retry-After), so at most one purchase results however often it is sent. Gives up quietly once the shopper
 * has moved on (`generation` changed).
 * @returns the 202 answer.
 */
async function submitPurchase(click, generation) {
  const stale = () => generation !== page.generation;
  const url = `/api/sales/${encodeURIComponent(click.saleId)}/purchases`;
  const body = JSON.stringify(click.quantity > 1 ? { quantity: click.quantity } : {});
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0 && stale()) throw new Error('abandoned');
    const last = attempt + 1 >= SUBMIT_ATTEMPTS;
    let res;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          Accept: 'application/json',
          'Idempotency-Key': click.key,
          ...authorization(),
          ...admissionOf(click.saleId),
        },
        body,
      });
    } catch {
      if (last) throw new NetworkFailure('Your order could not be sent. Press "Retry purchase": you will not be charged twice.');
      if (stale()) throw new Error('abandoned');
      const wait = backoff(attempt);
      showStatus('sending', `Connection problem; retrying in ${Math.ceil(wait / 1000)} s…`);
      await sleep(wait);
      continue;
    }
    if (res.status === 202) return res.json();
    const problem = await problemOf(res);
    if (problem.status !== 503 || last || stale()) throw problem;
    const wait = Math.max(problem.retryAfterMs, backoff(attempt));
    showStatus('sending', `The shop is busy; retrying in ${Math.ceil(wait / 1000)} s…`);
    await sleep(wait);
  }
}

function onPurchaseProblem(err) {
  if (err instanceof NetworkFailure) {
    showProblem(new Problem({ title: 'Connection problem', detail: err.message }));
    return;
  }
  showProblem(err);
  if (!(err instanceof Problem)) return;
  switch (err.slug) {
    case 'unauthorized':
      // The session cookie is gone or expired: ask for the name again, keeping the explanation visible.
      setUser(null);
      ui.loginName.focus();
      break;
    case 'duplicate-purchase':
      // The shopper already has a request for this sale: show where that one stands.
      if (typeof err.body.requestId === 'string' && err.body.requestId) {
        page.busy = true;
        follow(err.body.requestId);
      }
      break;
    case 'sold-out':
    case 'sale-not-active':
      refreshSale();
      break;
    case 'not-admitted':
      // The session in the waiting room ended (or never began): show where the ticket stands.
      lookUpTicket(true);
      break;
    default:
      break;
  }
}

/** Follows a purchase request until its final status. */
function follow(requestId, accepted) {
  page.watch?.stop();
  showStatus('queued', 'You are in line. Hold on…');
  const statusUrl = accepted?.statusUrl ?? `/api/purchases/${encodeURIComponent(requestId)}`;
  const eventsUrl = accepted?.eventsUrl ?? `${statusUrl}/events`;
  page.watch = new StreamWatch({
    statusUrl,
    eventsUrl,
    event: 'status',
    isFinal: (s) => s.status !== 'queued',
    onUpdate: onPurchaseStatus,
    onProblem: onWatchProblem,
  });
  page.watch.start();
}

function onWatchProblem(problem) {
  page.busy = false;
  page.watch = null;
  hideStatus();
  renderBuy();
  showProblem(problem);
  if (problem instanceof Problem && problem.slug === 'unauthorized') setUser(null);
}

function onPurchaseStatus(s) {
  switch (s.status) {
    case 'queued':
      showStatus('queued', 'You are in line. Hold on…');
      return;
    case 'succeeded':
      showStatus('succeeded', 'Reserved! Pay soon to keep it.');
      ui.purchaseDetail.textContent = s.orderId ? `Order ${s.orderId}` : '';
      page.orderId = s.orderId ?? null;
      if (s.orderId) loadOrder(s.orderId);
      break;
    case 'sold_out':
      showStatus('sold_out', 'Sold out. Every unit went before your turn.');
      ui.purchaseDetail.textContent = s.reason ?? '';
      break;
    case 'rejected':
      showStatus('rejected', 'Not accepted: you already hold the most this sale allows.');
      ui.purchaseDetail.textContent = s.reason ?? '';
      break;
    case 'failed':
      showStatus('failed', 'Your purchase could not be completed.');
      ui.purchaseDetail.textContent = s.reason ?? 'Nothing was charged or reserved. Please try again.';
      break;
    default:
      showStatus(String(s.status), 'Unknown status.');
  }
  // Final: the shopper may act again, and the stock has moved; in a waiting room, the ticket is done.
  page.busy = false;
  page.watch = null;
  renderBuy();
  refreshSale();
  if (page.queue) lookUpTicket(true);
}

function showStatus(status, message) {
  ui.purchase.hidden = false;
  ui.purchaseStatus.dataset.status = status;
  ui.purchaseBadge.className = `badge badge-status-${status}`;
  ui.purchaseBadge.textContent = STATUS_LABELS[status] ?? status;
  ui.purchaseMessage.textContent = message;
}

function hideStatus() {
  ui.purchase.hidden = true;
  delete ui.purchaseStatus.dataset.status;
  ui.purchaseBadge.textContent = '';
  ui.purchaseMessage.textContent = '';
  ui.purchaseDetail.textContent = '';
  ui.pay.hidden = true;
  ui.payResult.textContent = '';
  clearInterval(page.payTimer);
}

function resetPurchase() {
  page.generation += 1;
  page.watch?.stop();
  page.watch = null;
  page.busy = false;
  page.orderId = null;
  hideStatus();
}

/** Shows where an order stands: awaiting payment (with its deadline), paid, or expired. */
function renderOrder(order) {
  if (!order || page.orderId !== order.orderId) return;
  clearInterval(page.payTimer);
  ui.pay.hidden = order.status !== 'pending_payment';
  if (order.status === 'paid') {
    ui.purchaseMessage.textContent = 'Paid! Your order is confirmed.';
  } else if (order.status === 'expired') {
    ui.purchaseMessage.textContent = 'Your reservation expired; the units went back on sale.';
  } else if (typeof order.expiresAt === 'string') {
    const tick = () => showPayWindow(order.expiresAt);
    tick();
    page.payTimer = window.setInterval(tick, PAY_TICK_MS);
  }
}

function showPayWindow(expiresAt) {
  const ms = Date.parse(expiresAt) - Date.now();
  if (!Number.isFinite(ms)) return;
  if (ms <= 0) {
    clearInterval(page.payTimer);
    ui.pay.hidden = true;
    ui.purchaseMessage.textContent = 'The payment window has closed.';
    return;
  }
  const minutes = Math.ceil(ms / 60_000);
  ui.purchaseMessage.textContent = `Reserved! Pay within ${minutes} minute${minutes === 1 ? '' : 's'} (by ${formatClock(expiresAt)}).`;
}

/** Reads the order behind a success; without it the generic "pay soon" text and the Pay button stay. */
async function loadOrder(orderId) {
  ui.pay.hidden = false;
  try {
    renderOrder(await getJson(`/api/orders/${encodeURIComponent(orderId)}`));
  } catch {
    // An API without orders, or a transient failure: paying still reports its own problem.
  }
}

async function onPay() {
  const orderId = page.orderId;
  if (!orderId) return;
  ui.pay.disabled = true;
  ui.payResult.textContent = 'Paying…';
  clearProblem();
  try {
    let res;
    try {
      res = await fetch(`/api/orders/${encodeURIComponent(orderId)}/pay`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...authorization() },
        body: '{}',
      });
    } catch {
      throw new NetworkFailure('The payment could not be sent. Try again.');
    }
    if (!res.ok) throw await problemOf(res);
    ui.payResult.textContent = '';
    renderOrder(await res.json());
  } catch (err) {
    ui.payResult.textContent = '';
    if (err instanceof Problem && err.body.order) renderOrder(err.body.order);
    showProblem(err instanceof NetworkFailure ? new Problem({ title: 'Connection problem', detail: err.message }) : err);
  } finally {
    ui.pay.disabled = false;
  }
}

/**
 * Follows one purchase request or waiting-room ticket: Server-Sent Events first (the session cookie authenticates
 * them), closed by the page once a final state arrives so EventSource does not reconnect to a stream the server
 * has finished. A failed stream is reopened with backoff from the last event id; after SSE_MAX_FAILURES failures in
 * a row, or without EventSource, the state is polled with If-None-Match instead.
 */
class StreamWatch {
  /**
   * @param {{ statusUrl: string, eventsUrl: string, event: string, isFinal: (s: any) => boolean,
   *   onUpdate: (s: any) => void, onProblem: (p: unknown) => void }} o
   */
  constructor(o) {
    this.o = o;
    this.stopped = false;
    /** @type {EventSource | null} */
    this.source = null;
    this.lastEventId = '';
    this.failures = 0;
    this.timer = 0;
    this.abort = new AbortController();
  }

  start() {
    if (typeof EventSource === 'function') this.connect();
    else this.poll();
  }

  stop() {
    this.stopped = true;
    this.source?.close();
    this.source = null;
    clearTimeout(this.timer);
    this.abort.abort(new DOMException('stopped', 'AbortError'));
  }

  connect() {
    if (this.stopped) return;
    const url = new URL(this.o.eventsUrl, location.href);
    // A fresh EventSource cannot send Last-Event-ID; the server reads the same value from the query.
    if (this.lastEventId) url.searchParams.set('lastEventId', this.lastEventId);
    const source = new EventSource(url);
    this.source = source;
    source.addEventListener(this.o.event, (e) => {
      if (this.stopped) return;
      if (e.lastEventId) this.lastEventId = e.lastEventId;
      this.failures = 0;
      let s;
      try {
        s = JSON.parse(e.data);
      } catch {
        return;
      }
      if (this.o.isFinal(s)) this.stop();
      this.o.onUpdate(s);
    });
    source.addEventListener('error', () => {
      // Either the connection dropped or it was refused (401/404 answers end EventSource for good): both are
      // handled by reconnecting ourselves, and polling, which reports a refusal's problem, takes over in the end.
      source.close();
      if (this.stopped || this.source !== source) return;
      this.source = null;
      this.failures += 1;
      if (this.failures >= SSE_MAX_FAILURES) this.poll();
      else this.timer = window.setTimeout(() => this.connect(), backoff(this.failures - 1));
    });
  }

  async poll() {
    const signal = this.abort.signal;
    let etag = '';
    let errors = 0;
    while (!this.stopped) {
      let wait = POLL_MS * (0.5 + Math.random());
      try {
        const res = await fetch(this.o.statusUrl, {
          headers: { Accept: 'application/json', ...(etag ? { 'If-None-Match': etag } : {}) },
          cache: 'no-store',
          signal,
        });
        if (res.status === 200) {
          etag = res.headers.get('ETag') ?? '';
          const s = await res.json();
          errors = 0;
          if (this.o.isFinal(s)) this.stop();
          this.o.onUpdate(s);
        } else if (res.status === 304) {
          errors = 0;
        } else {
          const problem = await problemOf(res);
          if (problem.status < 500) {
            this.stop();
            this.o.onProblem(problem);
            return;
          }
          wait = Math.max(problem.retryAfterMs, backoff(errors++));
        }
      } catch {
        if (this.stopped) return;
        wait = backoff(errors++);
      }
      try {
        await sleep(wait, signal);
      } catch {
        return;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Wiring

ui.loginForm.addEventListener('submit', signIn);
ui.signOut.addEventListener('click', signOut);
ui.buyForm.addEventListener('submit', onBuy);
ui.pay.addEventListener('click', onPay);
ui.queueJoin.addEventListener('click', onJoin);
ui.picker.addEventListener('change', onPick);
ui.loginName.addEventListener('input', () => showLoginError(''));
document.addEventListener('visibilitychange', () => {
  // Polling a hidden tab only costs the server; catch up at once when the shopper looks again.
  if (document.hidden) clearTimeout(page.refreshTimer);
  else refreshSale();
});

setUser(loadUser());
loadSales();
