/**
 * The operator dashboard: follows GET /api/admin/stats/events (one snapshot a second) with the admin token, read
 * through fetch (EventSource cannot send an Authorization header), and drives the tiles, the two charts, the sale
 * table and the dead-letter panels. The DOM is built with textContent only: sale names and dead-letter reasons are
 * data, never markup.
 */
import { CategoryScale, Chart, Legend, LinearScale, LineController, LineElement, PointElement } from 'chart.js';

Chart.register(LineController, LineElement, PointElement, LinearScale, CategoryScale, Legend);

const HISTORY = 120;
const TOKEN_KEY = 'flash-sale-admin-token';
const $ = (id) => document.getElementById(id);
const fmt = (n, digits = 0) => (n === null || n === undefined ? '–' : Number(n).toFixed(digits));

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
let abort;
const dlqCounts = new Map();
const COLORS = ['#2f6fdf', '#d9822b', '#2e9e5b', '#b3261e', '#7b4fd6', '#0f8b8d', '#6b7280'];

function api(path, init = {}) {
  return fetch(path, { ...init, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', ...init.headers } });
}

function lineChart(canvas) {
  return new Chart(canvas, {
    type: 'line',
    data: { labels: [], datasets: [] },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      elements: { point: { radius: 0 } },
      scales: { x: { ticks: { maxTicksLimit: 6 } }, y: { beginAtZero: true } },
      plugins: { legend: { labels: { boxWidth: 10 } } },
    },
  });
}

const ratesChart = lineChart($('rates'));
const remainingChart = lineChart($('remaining'));
const RATE_SERIES = [
  ['accepted/s', 'accepted'],
  ['sold out/s', 'soldOut'],
  ['decisions/s', 'decisions'],
  ['429/s', 'http429'],
  ['503/s', 'http503'],
  ['5xx/s', 'http5xx'],
];
ratesChart.data.datasets = RATE_SERIES.map(([label], i) => ({ label, data: [], borderColor: COLORS[i], borderWidth: 1.5 }));

function push(chart, label, values) {
  chart.data.labels.push(label);
  if (chart.data.labels.length > HISTORY) chart.data.labels.shift();
  for (const ds of chart.data.datasets) {
    ds.data.push(values.get(ds.label) ?? null);
    if (ds.data.length > HISTORY) ds.data.shift();
  }
  chart.update();
  chart.canvas.dataset.points = String(chart.data.labels.length);
}

function render(s) {
  $('status').textContent = `live · ${new Date(s.at).toLocaleTimeString()}`;
  $('rate-accepted').textContent = fmt(s.rates.accepted);
  $('rate-soldout').textContent = fmt(s.rates.soldOut);
  $('rate-decisions').textContent = fmt(s.rates.decisions);
  $('rate-429').textContent = fmt(s.rates.http429);
  $('rate-503').textContent = fmt(s.rates.http503);
  $('rate-5xx').textContent = fmt(s.rates.http5xx);
  $('latency-p50').textContent = s.latency ? `${fmt(s.latency.p50)} ms` : '–';
  $('latency-p99').textContent = s.latency ? `${fmt(s.latency.p99)} ms` : '–';
  const purchases = s.queues.find((q) => q.queue === 'purchases');
  $('queue-depth').textContent = purchases ? `${purchases.messages} (${purchases.consumers} consumers)` : '–';

  const label = new Date(s.at).toLocaleTimeString();
  push(ratesChart, label, new Map(RATE_SERIES.map(([l, k]) => [l, s.rates[k]])));
  for (const sale of s.sales) {
    if (!remainingChart.data.datasets.some((d) => d.label === sale.name)) {
      const color = COLORS[remainingChart.data.datasets.length % COLORS.length];
      remainingChart.data.datasets.push({ label: sale.name, data: remainingChart.data.labels.map(() => null), borderColor: color, borderWidth: 1.5 });
    }
  }
  push(remainingChart, label, new Map(s.sales.map((x) => [x.name, x.remaining])));

  renderSales(s.sales);
  for (const q of ['purchases', 'reservations']) {
    const count = s.queues.find((x) => x.queue === `${q}.dead`)?.messages ?? 0;
    if (dlqCounts.get(q) !== count) {
      dlqCounts.set(q, count);
      void loadDeadLetters(q);
    }
  }
}

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = String(text);
  row.append(td);
  return td;
}

/** What an End-now click answered, per sale: kept across the re-renders of each snapshot. */
const endOutcomes = new Map();

function renderSales(sales) {
  const body = $('sales');
  const rows = sales.map((s) => {
    const tr = document.createElement('tr');
    tr.dataset.testid = `sale-${s.id}`;
    cell(tr, s.name).title = s.id;
    for (const v of [s.stock, s.remaining, s.held, s.inflight, s.orders.pending_payment, s.orders.paid, s.orders.expired]) cell(tr, v);
    tr.children[2].dataset.testid = 'remaining';
    const end = document.createElement('button');
    end.textContent = endOutcomes.get(s.id) ?? 'End now';
    end.disabled = endOutcomes.has(s.id);
    end.dataset.testid = `end-${s.id}`;
    end.addEventListener('click', async () => {
      end.disabled = true;
      endOutcomes.set(s.id, 'Ending…');
      const res = await api(`/api/admin/sales/${s.id}/end`, { method: 'POST' });
      const outcome = res.ok ? 'Ended' : `Failed (${res.status})`;
      endOutcomes.set(s.id, outcome);
      // The row may have been drawn again since the click (a snapshot a second): label the one on the page.
      const current = document.querySelector(`[data-testid="end-${s.id}"]`) ?? end;
      current.textContent = outcome;
    });
    cell(tr, '').append(end);
    return tr;
  });
  body.replaceChildren(...rows);
}

async function loadDeadLetters(queue) {
  const res = await api(`/api/admin/dlq?queue=${queue}&limit=5`);
  if (!res.ok) return;
  const { count, messages } = await res.json();
  let panel = document.querySelector(`[data-testid=dlq-${queue}]`);
  if (!panel) {
    panel = document.createElement('article');
    panel.dataset.testid = `dlq-${queue}`;
    $('dlq').append(panel);
  }
  const title = document.createElement('h3');
  title.textContent = `${queue}.dead: `;
  const n = document.createElement('span');
  n.dataset.testid = `dlq-count-${queue}`;
  n.textContent = String(count);
  title.append(n);
  const list = document.createElement('ol');
  for (const m of messages) {
    const li = document.createElement('li');
    const id = document.createElement('code');
    id.textContent = m.messageId ?? '(no id)';
    li.append(id, document.createTextNode(` — ${m.reason}`));
    list.append(li);
  }
  const replay = document.createElement('button');
  replay.textContent = 'Replay all';
  replay.dataset.testid = `replay-${queue}`;
  replay.disabled = count === 0;
  const result = document.createElement('span');
  result.dataset.testid = `replay-result-${queue}`;
  replay.addEventListener('click', async () => {
    replay.disabled = true;
    const r = await api('/api/admin/dlq/replay', { method: 'POST', body: JSON.stringify({ queue }) });
    const body = await r.json();
    result.textContent = r.ok ? ` Replayed ${body.replayed}` : ` Failed: ${body.detail}`;
    dlqCounts.delete(queue);
  });
  const old = panel.querySelector(`[data-testid=replay-result-${queue}]`);
  if (old?.textContent) result.textContent = old.textContent;
  panel.replaceChildren(title, list, replay, result);
}

/** Reads the SSE stream through fetch; reconnects after a second when it ends. */
async function follow() {
  abort?.abort();
  abort = new AbortController();
  let res;
  try {
    res = await fetch('/api/admin/stats/events', { headers: { Authorization: `Bearer ${token}` }, signal: abort.signal });
  } catch {
    return setTimeout(follow, 1000);
  }
  if (res.status === 401) return signOut('The admin token was refused.');
  if (!res.ok || !res.body) return setTimeout(follow, 1000);
  $('login').hidden = true;
  $('main').hidden = false;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
        if (data) render(JSON.parse(data));
      }
    }
  } catch {
    /* the stream broke: reconnect */
  }
  $('status').textContent = 'reconnecting…';
  setTimeout(follow, 1000);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  token = '';
  $('main').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('status').textContent = 'signed out';
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  token = $('token').value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $('login-error').textContent = '';
  void follow();
});

$('create').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const res = await api('/api/admin/sales', {
    method: 'POST',
    body: JSON.stringify({ name: f.get('name'), stock: Number(f.get('stock')), perUserLimit: Number(f.get('perUserLimit')) }),
  });
  const body = await res.json();
  $('create-result').textContent = res.ok ? `Created ${body.name} (${body.id})` : `Failed: ${body.detail}`;
});

if (token) void follow();
