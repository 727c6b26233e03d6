// klingd dashboard: plain JavaScript, no build step. Reads the same JSON API as klingctl
// through the dashboard listener. The token comes in the address's fragment (never sent to
// any server), is kept in this tab's sessionStorage (isolated by origin, port included,
// unlike cookies) so a reload keeps working, and goes out as `Authorization: Bearer` on
// every request; videos play from short-lived links signed per job (docs/security.md).
'use strict';

const STATES = ['queued', 'submitting', 'generating', 'downloading', 'completed', 'failed', 'canceled'];
const TERMINAL = new Set(['completed', 'failed', 'canceled']);
const COLOR = {
  queued: '#8a94a6', submitting: '#7a5af8', generating: '#2f6fdf', downloading: '#0e9aa7',
  completed: '#1f9d55', failed: '#d64545', canceled: '#9aa1ab',
};
const PAGE = 50;

const TOKEN = (() => {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) {
    // The address bar (and history) should not keep it.
    history.replaceState(null, '', location.pathname + location.search);
    try { sessionStorage.setItem('klingd_token', fromHash); } catch (_) { /* storage off: this load only */ }
    return fromHash;
  }
  try { return sessionStorage.getItem('klingd_token') || ''; } catch (_) { return ''; }
})();
const AUTH = { Authorization: `Bearer ${TOKEN}` };

const $ = (sel) => document.querySelector(sel);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'color') e.style.setProperty('--c', v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, opts = {}) {
  const r = await fetch(path, { cache: 'no-store', credentials: 'omit', ...opts, headers: { ...AUTH, ...(opts.headers || {}) } });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    if (r.status === 401) showUnauthorized();
    throw new HttpError(r.status, (body && body.error && body.error.message) || `HTTP ${r.status}`);
  }
  return body;
}

function showUnauthorized() {
  setLive('bad', 'no access');
  toast('The dashboard needs its token: open the address `klingctl dashboard` prints.', true);
}

let toastTimer = null;
function toast(text, bad) {
  const t = $('#toast');
  t.textContent = text;
  t.className = bad ? 'toast bad' : 'toast';
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, bad ? 6000 : 2500);
}

function setLive(kind, text) {
  const l = $('#live');
  l.className = 'pill ' + (kind || '');
  l.textContent = text;
}

// ---- formatting ----------------------------------------------------------------------------

const shortModel = (m) => (m || '').replace(/^klingai\//, '').replace(/^video-/, '');
const usd = (v) => (v === null || v === undefined ? '' : '$' + Number(v).toFixed(Number(v) < 10 ? 3 : 2));
function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return d.toDateString() === today.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}
function promptOf(job) {
  const r = job.request || {};
  if (typeof r.prompt === 'string') return r.prompt;
  if (Array.isArray(r.multi_prompt)) return r.multi_prompt.map((p) => (typeof p === 'string' ? p : p.prompt)).join(' | ');
  return '';
}
function stateBadge(state) {
  return el('span', { class: 'state', color: COLOR[state], text: state });
}
// Requests may carry images as data: URIs of megabytes; show their start only.
function shorten(value) {
  return JSON.stringify(value, (k, v) => (typeof v === 'string' && v.length > 160 ? `${v.slice(0, 80)}… (${v.length} chars)` : v), 2);
}

// ---- state ---------------------------------------------------------------------------------

const view = {
  filter: { state: '', batch: '', label: '' },
  cursors: [null],   // cursors[i]: the `after` that loads page i
  page: 0,
  next: null,
  rows: new Map(),   // job id → { tr, job }
  selected: null,
  bulk: null,        // a bulk action asked about: { batch, verb, label, count }
  detail: null,      // the job shown in the detail panel
  lastSeq: 0,
};

// Coalesces refreshes: a burst of 10,000 events costs one request per kind per interval.
// A call that arrives while the same kind is being fetched marks it stale: the answer in flight
// may predate that event, so it runs once more afterwards (otherwise the last state change of a
// burst could be lost until the next event, e.g. a batch stuck at 2/3).
const timers = {};
function soon(name, fn, ms) {
  const t = timers[name] || (timers[name] = { pending: false, running: false, stale: false });
  if (t.running) { t.stale = true; return; }
  if (t.pending) return;
  t.pending = true;
  setTimeout(async () => {
    t.pending = false;
    t.running = true;
    try { await fn(); } catch (e) { if (e.status !== 401) console.warn(name, e); }
    t.running = false;
    if (t.stale) { t.stale = false; soon(name, fn, ms); }
  }, ms);
}

// ---- counts and status ---------------------------------------------------------------------

async function loadStatus() {
  const s = await api('/v1/status');
  $('#version').textContent = 'v' + s.version;
  $('#inflight').textContent = `${s.in_flight} in flight`;
  const p = $('#paused');
  p.hidden = !s.paused;
  p.textContent = s.paused ? 'paused: ' + s.paused : '';
  const b = $('#balance');
  b.hidden = !s.balance;
  b.textContent = s.balance ? `balance ${usd(s.balance.usd)}` : '';
  const box = $('#counts');
  box.replaceChildren(
    el('button', { class: 'count' + (view.filter.state === '' ? ' active' : ''), color: '#1d2330', type: 'button',
      onclick: () => setFilter({ state: '' }) }, el('b', { text: s.total }), el('span', { text: 'all jobs' })),
    ...STATES.map((st) => el('button', {
      class: 'count' + (view.filter.state === st ? ' active' : ''), color: COLOR[st], type: 'button',
      'data-state': st, onclick: () => setFilter({ state: st }),
    }, el('b', { text: s.counts[st] || 0 }), el('span', { text: st }))));
  return s;
}

// ---- batches -------------------------------------------------------------------------------

async function loadBatches() {
  const { batches } = await api('/v1/batches');
  const box = $('#batches');
  if (!batches.length) {
    box.replaceChildren(el('p', { class: 'muted', text: 'no batches yet' }));
    return;
  }
  box.replaceChildren(...batches.map((b) => {
    const c = b.counts;
    const done = c.completed + c.failed + c.canceled;
    const active = c.submitting + c.generating + c.downloading;
    const bar = el('div', { class: 'bar', title: STATES.map((s) => `${s}: ${c[s]}`).join(', ') });
    for (const [n, color] of [[c.completed, COLOR.completed], [c.failed, COLOR.failed], [c.canceled, COLOR.canceled],
      [active, COLOR.generating]]) {
      if (!n) continue;
      const seg = el('i');
      seg.style.width = `${(100 * n) / Math.max(b.total, 1)}%`;
      seg.style.background = color;
      bar.append(seg);
    }
    return el('div', {
      class: 'batch' + (view.filter.batch === b.batch ? ' active' : ''), 'data-batch': b.batch,
      title: `batch ${b.batch}, created ${when(b.created_at)}`, onclick: () => setFilter({ batch: b.batch }),
    }, el('code', { text: b.batch }), bar,
    el('span', { class: 'num', text: `${done}/${b.total}${c.failed ? ` · ${c.failed} failed` : ''}` }));
  }));
  renderBatchActions();
}

// Bulk actions on the batch in the filter (POST /v1/batches/{id}/retry|cancel, with the table's
// label filter): the first click asks the daemon with dry_run=1 how many jobs it would touch,
// and only the second click acts. view.bulk holds the question until it is answered.
const BULK = {
  retry: { label: 'Retry failed…', query: 'state=failed', what: 'failed', done: 'Retried' },
  cancel: { label: 'Cancel unfinished…', query: '', what: 'unfinished', done: 'Canceled' },
};
function bulkPath(batch, verb, dryRun) {
  const q = new URLSearchParams(BULK[verb].query);
  if (view.filter.label) q.append('label', view.filter.label);
  if (dryRun) q.set('dry_run', '1');
  return `/v1/batches/${encodeURIComponent(batch)}/${verb}?${q}`;
}
function renderBatchActions() {
  const box = $('#batch-actions');
  const batch = view.filter.batch;
  box.hidden = !batch;
  if (!batch) { view.bulk = null; box.replaceChildren(); return; }
  const scope = view.filter.label ? ` with label ${view.filter.label}` : '';
  const b = view.bulk && view.bulk.batch === batch && view.bulk.label === view.filter.label ? view.bulk : null;
  if (!b) {
    box.replaceChildren(el('span', {}, 'Batch ', el('code', { text: batch }), scope, ':'),
      el('button', { type: 'button', id: 'bulk-retry', class: 'secondary', onclick: () => askBulk(batch, 'retry') }, BULK.retry.label),
      el('button', { type: 'button', id: 'bulk-cancel', class: 'danger', onclick: () => askBulk(batch, 'cancel') }, BULK.cancel.label));
    return;
  }
  const back = el('button', { type: 'button', id: 'bulk-back', class: 'secondary', onclick: () => { view.bulk = null; renderBatchActions(); } }, 'Back');
  if (!b.count) {
    box.replaceChildren(el('span', { id: 'bulk-question', text: `No ${BULK[b.verb].what} jobs in batch ${batch}${scope}.` }), back);
    return;
  }
  box.replaceChildren(
    el('span', { id: 'bulk-question', text: `${b.verb === 'retry' ? 'Retry' : 'Cancel'} ${b.count} ${BULK[b.verb].what} job${b.count === 1 ? '' : 's'} of batch ${batch}${scope}?` }),
    el('button', { type: 'button', id: 'bulk-confirm', class: b.verb === 'cancel' ? 'danger' : '', onclick: () => doBulk(b) }, `Yes, ${b.verb} ${b.count}`),
    back);
}
async function askBulk(batch, verb) {
  try {
    const r = await api(bulkPath(batch, verb, true), { method: 'POST' });
    view.bulk = { batch, verb, label: view.filter.label, count: r.matched };
  } catch (e) {
    toast(`${verb} failed: ${e.message}`, true);
  }
  renderBatchActions();
}
async function doBulk(b) {
  view.bulk = null;
  try {
    const r = await api(bulkPath(b.batch, b.verb, false), { method: 'POST' });
    toast(`${BULK[b.verb].done} ${r.done} of ${r.matched} job(s)${r.refused.length ? `; ${r.refused.length} refused: ${r.refused[0].message}` : ''}`, r.refused.length > 0);
  } catch (e) {
    toast(`${b.verb} failed: ${e.message}`, true);
  }
  renderBatchActions();
  soon('batches', loadBatches, 0);
  soon('status', loadStatus, 0);
  loadJobs().catch(() => {});
}

// ---- spend ---------------------------------------------------------------------------------

async function loadSpend() {
  const box = $('#spend');
  let cost;
  try {
    cost = await api('/v1/cost');
  } catch (e) {
    box.replaceChildren(el('p', { class: 'muted', text: 'no cost data' }));
    return;
  }
  const total = cost.total || {};
  const days = (cost.by_day || []).slice(-14);
  const models = (cost.by_model || []).slice().sort((a, b) => (b.usd || 0) - (a.usd || 0)).slice(0, 6);
  if (!total.jobs && !days.length) {
    box.replaceChildren(el('p', { class: 'muted', text: 'no cost data' }));
    return;
  }
  box.replaceChildren(
    el('div', { class: 'total' }, el('b', { text: usd(total.usd || 0) }),
      ` · ${total.credits || 0} credits · ${total.jobs || 0} jobs`),
    el('div', { class: 'spend-grid' },
      el('div', {}, el('h3', { text: 'per day (USD)' }), dayChart(days)),
      el('div', {}, el('h3', { text: 'per model (USD)' }), modelChart(models))));
}

function dayChart(days) {
  const W = 320, H = 120, pad = 18;
  const max = Math.max(...days.map((d) => d.usd || 0), 0.001);
  const bw = Math.min((W - pad) / Math.max(days.length, 1), 48); // one day should not fill the chart
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'spend per day' });
  s.append(svg('line', { x1: 0, y1: H - pad, x2: W, y2: H - pad, stroke: '#d0d4db' }));
  days.forEach((d, i) => {
    const h = ((d.usd || 0) / max) * (H - pad - 14);
    const x = i * bw + 3;
    const bar = svg('rect', { x, y: H - pad - h, width: Math.max(bw - 6, 2), height: h, fill: '#2f6fdf', rx: 2 });
    bar.append(svg('title', {}, `${d.day}: ${usd(d.usd)} · ${d.credits} credits · ${d.jobs} jobs`));
    s.append(bar);
    if (days.length <= 8 || i % 2 === days.length % 2 || i === days.length - 1) {
      s.append(svg('text', { x: x + (bw - 6) / 2, y: H - 5, 'text-anchor': 'middle' }, String(d.day).slice(5)));
    }
    if (h > 0 && days.length <= 10) {
      s.append(svg('text', { x: x + (bw - 6) / 2, y: H - pad - h - 3, 'text-anchor': 'middle' }, usd(d.usd)));
    }
  });
  return s;
}

function modelChart(models) {
  const W = 220, row = 22, H = Math.max(models.length, 1) * row + 4;
  const max = Math.max(...models.map((m) => m.usd || 0), 0.001);
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'spend per model' });
  models.forEach((m, i) => {
    const w = ((m.usd || 0) / max) * (W - 60);
    const y = i * row + 2;
    s.append(svg('rect', { x: 0, y: y + 11, width: Math.max(w, 1), height: 8, fill: '#1f9d55', rx: 2 }));
    s.append(svg('text', { x: 0, y: y + 9 }, shortModel(m.model).slice(0, 34)));
    s.append(svg('text', { x: Math.max(w, 1) + 4, y: y + 19 }, usd(m.usd)));
  });
  return s;
}

// ---- job table -----------------------------------------------------------------------------

function jobQuery(after) {
  const q = new URLSearchParams({ limit: PAGE });
  for (const k of ['state', 'batch', 'label']) if (view.filter[k]) q.set(k, view.filter[k]);
  if (after) q.set('after', after);
  return '/v1/jobs?' + q;
}

function jobRow(job) {
  const labels = Object.entries(job.labels || {}).map(([k, v]) => el('span', { class: 'label', text: `${k}=${v}` }));
  const tr = el('tr', { 'data-id': job.id, 'data-state': job.state, onclick: () => select(job.id) },
    el('td', {}, el('code', { text: job.id, title: job.key ? `key ${job.key}` : null })),
    el('td', { class: 'state-cell' }, stateBadge(job.state)),
    el('td', { text: shortModel(job.model) }),
    el('td', { class: 'prompt', text: promptOf(job), title: promptOf(job) }),
    el('td', {}, labels),
    el('td', { text: when(job.created_at), title: job.created_at }),
    el('td', { class: 'num', text: job.cost ? usd(job.cost.usd) : '' }));
  if (job.id === view.selected) tr.classList.add('selected');
  return tr;
}

async function loadJobs() {
  const after = view.cursors[view.page];
  let res;
  try {
    res = await api(jobQuery(after));
  } catch (e) {
    if (e.status === 400) toast(e.message, true);
    throw e;
  }
  view.next = res.next;
  view.rows.clear();
  const body = $('#jobs tbody');
  const frag = document.createDocumentFragment();
  for (const job of res.jobs) {
    const tr = jobRow(job);
    view.rows.set(job.id, { tr, job });
    frag.append(tr);
  }
  if (!res.jobs.length) {
    frag.append(el('tr', { class: 'empty' }, el('td', { colspan: 7, text: 'no jobs match' })));
  }
  body.replaceChildren(frag);
  const first = view.page * PAGE + (res.jobs.length ? 1 : 0);
  $('#p-info').textContent = `page ${view.page + 1} · jobs ${first}–${view.page * PAGE + res.jobs.length}`;
  $('#p-prev').disabled = view.page === 0;
  $('#p-first').disabled = view.page === 0;
  $('#p-next').disabled = !view.next;
}

function setFilter(change) {
  Object.assign(view.filter, change);
  $('#f-state').value = view.filter.state;
  $('#f-batch').value = view.filter.batch;
  $('#f-label').value = view.filter.label;
  view.cursors = [null];
  view.page = 0;
  renderBatchActions();
  loadJobs().catch(() => {});
  soon('status', loadStatus, 0);
  soon('batches', loadBatches, 0);
}

// ---- job detail ----------------------------------------------------------------------------

async function select(id) {
  view.selected = id;
  for (const { tr, job } of view.rows.values()) tr.classList.toggle('selected', job.id === id);
  await loadDetail(true);
}

async function loadDetail(force) {
  if (!view.selected) return;
  const job = await api('/v1/jobs/' + encodeURIComponent(view.selected));
  const old = view.detail;
  // Re-rendering would restart a playing video: only when something changed.
  if (!force && old && old.id === job.id && old.state === job.state && old.history.length === job.history.length) return;
  view.detail = job;
  const link = job.state === 'completed' && job.video ? await videoLink(job.id) : null;
  renderDetail(job, link);
}

// A <video> cannot send the token: it plays from a link signed for this job that expires
// after a few minutes. A player whose link has expired (a seek after a long pause) gets a new one.
async function videoLink(id) {
  try {
    return (await api(`/v1/jobs/${encodeURIComponent(id)}/video_link`)).url;
  } catch (e) {
    return null;
  }
}

function relinkOnError(video, id) {
  let tries = 0;
  video.addEventListener('error', async () => {
    if (tries++ >= 2) return;
    const at = video.currentTime;
    const url = await videoLink(id);
    if (!url) return;
    video.src = url;
    video.currentTime = at;
  });
}

async function action(job, verb) {
  try {
    await api(`/v1/jobs/${encodeURIComponent(job.id)}/${verb}`, { method: 'POST' });
    toast(`${verb === 'retry' ? 'Retried' : 'Canceled'} ${job.id}`);
  } catch (e) {
    toast(`${verb} failed: ${e.message}`, true);
  }
  await loadDetail(true);
  soon('jobs', loadJobs, 0);
}

function renderDetail(job, link) {
  const cost = job.cost ? `${usd(job.cost.usd)}${job.cost.credits !== null && job.cost.credits !== undefined ? ` · ${job.cost.credits} credits` : ''}` : '—';
  const rows = [
    ['batch', el('code', { text: job.batch })], ['key', job.key || '—'], ['model', job.model], ['output', job.output],
    ['priority', job.priority], ['labels', Object.entries(job.labels || {}).map(([k, v]) => el('span', { class: 'label', text: `${k}=${v}` }))],
    ['attempts', `${job.attempts} (polls ${job.polls})`], ['provider', job.provider_status || '—'],
    ['generation', job.generation_id ? el('code', { text: job.generation_id }) : '—'],
    ['route', job.route ? `asked ${job.route.asked || 'provider default'} · served by ${job.route.served || '—'}` : '—'],
    ['created', when(job.created_at)], ['finished', job.finished_at ? when(job.finished_at) : '—'], ['cost', cost],
  ];
  const terminal = TERMINAL.has(job.state);
  const parts = [
    el('div', { class: 'actions' },
      el('code', { text: job.id }), stateBadge(job.state), el('span', { class: 'spacer' })),
    el('div', { class: 'actions' },
      el('button', { type: 'button', id: 'btn-cancel', class: 'danger', disabled: terminal, onclick: () => action(job, 'cancel') }, 'Cancel'),
      el('button', { type: 'button', id: 'btn-retry', disabled: !(job.state === 'failed' || job.state === 'canceled'), onclick: () => action(job, 'retry') }, 'Retry')),
  ];
  if (job.error) {
    parts.push(el('div', { class: 'error-box' }, el('b', { text: job.error.code }), ': ', job.error.message,
      job.error.http_status ? ` (HTTP ${job.error.http_status})` : ''));
  }
  if (job.state === 'completed' && job.video && link) {
    const player = el('video', { controls: true, preload: 'metadata', src: link, id: 'player' });
    relinkOnError(player, job.id);
    parts.push(player);
    const name = (job.output || job.id).split('/').pop();
    // The link in the page may have expired by the time it is clicked: fetch a fresh one.
    const download = async (ev) => {
      ev.preventDefault();
      const url = await videoLink(job.id);
      if (url) el('a', { href: url, download: name }).click();
    };
    parts.push(el('div', { class: 'muted' }, el('a', { href: link, download: name, onclick: download }, 'download'),
      job.video.bytes ? ` · ${(job.video.bytes / 1e6).toFixed(2)} MB` : ''));
  }
  parts.push(el('dl', {}, rows.map(([k, v]) => [el('dt', { text: k }), el('dd', {}, v)])));
  parts.push(el('h2', { text: 'History' }));
  parts.push(el('ol', { class: 'timeline' }, (job.history || []).map((h) => el('li', { color: COLOR[h.state] },
    el('b', { text: h.state }), h.step ? ` (${h.step})` : '', el('span', { class: 'at', text: when(h.at), title: h.at }),
    h.error ? el('div', { class: 'muted', text: `${h.error.code}: ${h.error.message}` }) : null))));
  parts.push(el('h2', { text: 'Request' }));
  parts.push(el('pre', { text: shorten(job.request) }));
  $('#detail-body').replaceChildren(...parts);
}

// ---- live events ---------------------------------------------------------------------------

function onEvent(e) {
  if (e.seq > view.lastSeq) view.lastSeq = e.seq;
  const row = view.rows.get(e.job);
  if (row) {
    row.job.state = e.state;
    row.tr.dataset.state = e.state;
    row.tr.querySelector('.state-cell').replaceChildren(stateBadge(e.state));
    row.tr.classList.remove('flash');
    void row.tr.offsetWidth; // restart the highlight
    row.tr.classList.add('flash');
    // Cost and video arrive with the terminal state: fetch the row's page again.
    if (TERMINAL.has(e.state)) soon('jobs', loadJobs, 500);
  } else if (!view.next) {
    // A job we do not show: new ones are listed last, so only the last page can gain rows.
    soon('jobs', loadJobs, 300);
  }
  if (e.job === view.selected) soon('detail', () => loadDetail(false), 200);
  soon('status', loadStatus, 400);
  soon('batches', loadBatches, 600);
  if (e.state === 'completed') soon('spend', loadSpend, 3000);
}

async function follow() {
  let backoff = 500;
  for (;;) {
    try {
      const r = await fetch(`/v1/events?since=${view.lastSeq}`, { cache: 'no-store', credentials: 'omit', headers: AUTH });
      if (r.status === 401) { showUnauthorized(); return; }
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      setLive('ok', 'live');
      backoff = 500;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim()) onEvent(JSON.parse(line));
        }
      }
    } catch (e) {
      console.warn('events', e);
    }
    setLive('warn', 'reconnecting…');
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 10000);
    // Whatever happened while away is replayed from lastSeq; the views catch up too.
    soon('status', loadStatus, 0);
    soon('jobs', loadJobs, 0);
  }
}

// ---- wiring --------------------------------------------------------------------------------

function wire() {
  $('#filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setFilter({ state: $('#f-state').value, batch: $('#f-batch').value.trim(), label: $('#f-label').value.trim() });
  });
  $('#f-clear').addEventListener('click', () => setFilter({ state: '', batch: '', label: '' }));
  $('#p-next').addEventListener('click', () => {
    if (!view.next) return;
    view.cursors[view.page + 1] = view.next;
    view.page += 1;
    loadJobs().catch(() => {});
  });
  $('#p-prev').addEventListener('click', () => {
    if (view.page === 0) return;
    view.page -= 1;
    loadJobs().catch(() => {});
  });
  $('#p-first').addEventListener('click', () => { view.page = 0; loadJobs().catch(() => {}); });
}

async function main() {
  wire();
  let status;
  try {
    status = await loadStatus();
  } catch (e) {
    return;
  }
  view.lastSeq = status.last_event_seq || 0;
  await Promise.allSettled([loadJobs(), loadBatches(), loadSpend()]);
  follow();
  setInterval(() => soon('spend', loadSpend, 0), 30000);
}

main();
