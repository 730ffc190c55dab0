// kube-reflexion operator console. No framework, no network beyond this API. Everything that came from the
// cluster or a model is put on the page as text (textContent), never parsed as HTML.
'use strict';

const TOKEN_KEY = 'kube-reflexion-token';
const STATES = ['reported', 'diagnosing', 'planning', 'awaiting_approval', 'executing', 'verifying',
  'resolved', 'escalated', 'failed', 'dismissed'];
const app = {
  token: sessionStorage.getItem(TOKEN_KEY),
  settings: null,
  lastEvent: null,
  filter: '',
  polling: null,
  refresh: null,
  started: false,
};

class Unauthorized extends Error {}

// el('p', {class: 'x'}, 'text', child): strings become text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (app.token) headers.Authorization = 'Bearer ' + app.token;
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, {
    method: opts.method || 'GET',
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  if (r.status === 401) throw new Unauthorized('the token was refused');
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!r.ok) throw new Error(data && data.error ? data.error.message : 'HTTP ' + r.status);
  return data;
}

const $ = (id) => document.getElementById(id);
const json = (v) => JSON.stringify(v, null, 2);

function age(at) {
  const s = Math.max(0, (Date.now() - Date.parse(at)) / 1000);
  if (s < 60) return Math.round(s) + ' s';
  if (s < 3600) return Math.round(s / 60) + ' min';
  if (s < 86400) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

// --- token -------------------------------------------------------------------------------------------------------

function showLogin(message) {
  $('main').replaceChildren();
  $('main').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('token-input').focus();
}

async function tokenAccepted() {
  if (!app.token) return false;
  try { await api('/api/v1/token'); return true; } catch (_) { return false; }
}

async function login(ev) {
  ev.preventDefault();
  app.token = $('token-input').value.trim();
  if (await tokenAccepted()) {
    sessionStorage.setItem(TOKEN_KEY, app.token);
    $('token-input').value = '';
    await begin();
  } else {
    app.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $('token-input').value = '';
    showLogin('That token was refused.');
  }
}

async function start() {
  $('login-form').addEventListener('submit', login);
  window.addEventListener('hashchange', render);
  let settings = null;
  try { settings = await api('/api/v1/settings'); } catch (e) { if (!(e instanceof Unauthorized)) throw e; }
  // With a token configured, nothing is shown before it is given, even where reads are open.
  if (!settings || (settings.auth && !(await tokenAccepted()))) { showLogin(); return; }
  app.settings = settings;
  await begin();
}

async function begin() {
  if (!app.settings) app.settings = await api('/api/v1/settings');
  $('login').hidden = true;
  $('main').hidden = false;
  await render();
  await header();
  if (!app.started) {
    app.started = true;
    setInterval(header, 15000);
    feed();
  }
}

// --- header ------------------------------------------------------------------------------------------------------

async function header() {
  const pills = [];
  try {
    const h = await (await fetch('/health')).json();
    pills.push(el('span', { class: 'pill ' + (h.database === 'ok' ? 'ok' : 'bad'), id: 'health-db' },
      'database ' + (h.database === 'ok' ? 'ok' : 'down')));
    const up = h.cluster && h.cluster.status === 'ok';
    pills.push(el('span', { class: 'pill ' + (up ? 'ok' : 'bad'), id: 'health-cluster' },
      'cluster ' + (up ? h.cluster.version : 'unreachable')));
  } catch (_) {
    pills.push(el('span', { class: 'pill bad' }, 'API unreachable'));
  }
  const s = app.settings;
  if (s) {
    pills.push(el('span', { class: 'pill', id: 'policy' }, 'policy ' + s.policy.default_mode));
    pills.push(el('span', { class: 'pill', id: 'llm' }, s.llm.configured ? 'LLM ' + s.llm.model : 'no LLM'));
  }
  $('status').replaceChildren(...pills);
}

// --- live feed ---------------------------------------------------------------------------------------------------

function setFeed(live) {
  $('feed').textContent = live ? 'live feed: connected' : 'live feed: reconnecting (polling meanwhile)';
  if (live && app.polling) { clearInterval(app.polling); app.polling = null; }
  if (!live && !app.polling) app.polling = setInterval(() => scheduleRefresh(null), 3000);
}

// Server-sent events read with fetch, because EventSource cannot send the bearer token.
async function feed() {
  try {
    const headers = { Accept: 'text/event-stream' };
    if (app.token) headers.Authorization = 'Bearer ' + app.token;
    const url = '/api/v1/events' + (app.lastEvent === null ? '' : '?after=' + app.lastEvent);
    const r = await fetch(url, { headers });
    if (r.status === 401) { showLogin('The token was refused.'); return; }
    if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
    setFeed(true);
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        onBlock(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (_) { /* the stream dropped: poll, and try again */ }
  setFeed(false);
  setTimeout(feed, 5000);
}

function onBlock(block) {
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('id:')) app.lastEvent = line.slice(3).trim();
    else if (line.startsWith('data:')) data += line.slice(5).trim();
  }
  if (!data) return;
  try { scheduleRefresh(JSON.parse(data).incident_id); } catch (_) { /* not a transition */ }
}

function scheduleRefresh(incident) {
  const [view, id] = route();
  if (view === 'incidents' && id && incident && incident !== id) return;
  if (view === 'memory') return;
  clearTimeout(app.refresh);
  app.refresh = setTimeout(render, 250);
}

// --- views -------------------------------------------------------------------------------------------------------

function route() {
  const parts = (location.hash || '#/incidents').slice(2).split('/');
  return [parts[0] || 'incidents', parts[1] ? decodeURIComponent(parts[1]) : null];
}

async function render() {
  if ($('main').hidden) return;
  const [view, id] = route();
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view);
  try {
    let content;
    if (view === 'incidents' && id) content = await incidentView(id);
    else if (view === 'memory') content = await memoryView();
    else if (view === 'learning') content = await learningView();
    else content = await incidentsView();
    const reason = $('reject-reason') ? $('reject-reason').value : null;
    $('main').replaceChildren(...content.filter((c) => c));
    if (reason && $('reject-reason')) $('reject-reason').value = reason;
  } catch (e) {
    if (e instanceof Unauthorized) { showLogin('The token was refused.'); return; }
    $('main').replaceChildren(el('p', { role: 'alert' }, 'Could not load this view: ' + e.message));
  }
}

async function incidentsView() {
  const q = '/api/v1/reflexion/incidents?limit=200' + (app.filter ? '&state=' + encodeURIComponent(app.filter) : '');
  const data = await api(q);
  // Those waiting for a person first, then newest first as the API sends them.
  const list = data.incidents.map((inc, i) => [inc, i])
    .sort((a, b) => (b[0].state === 'awaiting_approval') - (a[0].state === 'awaiting_approval') || a[1] - b[1])
    .map(([inc]) => inc);
  const filter = el('select', { id: 'state-filter', 'aria-label': 'Filter by state',
    onchange: (e) => { app.filter = e.target.value; render(); } },
  el('option', { value: '' }, 'all states'),
  ...STATES.map((s) => el('option', { value: s, selected: s === app.filter }, s.replace('_', ' '))));
  const open = (id) => { location.hash = '#/incidents/' + encodeURIComponent(id); };
  const rows = list.map((inc) => el('tr', {
    'data-id': inc.id, 'data-state': inc.state, tabindex: 0,
    onclick: () => open(inc.id),
    onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(inc.id); } },
  },
  el('td', {}, el('span', { class: 'state ' + inc.state }, inc.state.replace('_', ' '))),
  el('td', {}, inc.workload.kind + '/' + inc.workload.name),
  el('td', { class: 'hide-narrow' }, inc.namespace),
  el('td', {}, el('code', {}, inc.signature)),
  el('td', {}, String(inc.trials)),
  el('td', { class: 'hide-narrow' }, age(inc.created_at)),
  el('td', {}, inc.fixed_by || '')));
  return [
    el('div', { class: 'row' }, el('h2', {}, 'Incidents'), filter,
      el('span', { class: 'muted' }, list.length + ' shown')),
    list.length === 0
      ? el('p', { class: 'muted', id: 'no-incidents' }, 'No incidents. Failing pods appear here as the watcher reports them.')
      : el('div', { class: 'scroll' }, el('table', { id: 'incidents-table' },
        el('thead', {}, el('tr', {}, ...['State', 'Workload', 'Namespace', 'Signature', 'Trials', 'Age', 'Fixed by']
          .map((h, i) => el('th', { class: i === 2 || i === 5 ? 'hide-narrow' : null }, h)))),
        el('tbody', {}, ...rows))),
  ];
}

async function decide(id, verb, body) {
  for (const b of document.querySelectorAll('.approval button')) b.disabled = true;
  try {
    await api('/api/v1/reflexion/incidents/' + encodeURIComponent(id) + '/' + verb, { method: 'POST', body });
  } catch (e) {
    if (e instanceof Unauthorized) { showLogin('The token was refused.'); return; }
    alertText('Could not ' + verb + ': ' + e.message);
  }
  await render();
}

function alertText(message) {
  const box = $('decision-error');
  if (box) box.textContent = message;
}

// Who keeps the workload's desired state, and where the fix lands (live, Git, by hand).
function ownerLine(o) {
  if (!o || !o.owner) return null;
  const who = { live: 'nobody (live object)', flux: 'Flux Kustomization ' + o.owner.namespace + '/' + o.owner.name,
    argo_cd: 'Argo CD Application ' + (o.owner.namespace ? o.owner.namespace + '/' : '') + o.owner.name,
    helm: 'Helm release ' + o.owner.namespace + '/' + o.owner.release }[o.owner.kind] || o.owner.kind;
  const where = o.source ? ' · source ' + o.source.url + ' (' + o.source.branch + ', ' + o.source.path + ')' : '';
  return el('p', { id: 'owner' }, 'Owner of record: ', el('strong', {}, who), ' · fixes land: ', el('code', {}, o.fix_lands),
    where, o.note ? ' · ' + o.note : '');
}

function commitText(c) {
  return c.repo + ' · ' + c.branch + ' · commit ' + c.sha.slice(0, 12);
}

function gitLine(g) {
  if (!g) return null;
  const c = g.commit || g.proposal;
  if (!c) return null;
  const pr = c.pull_request;
  return el('p', { id: 'git' }, (g.commit ? 'Git change: ' : 'Proposed in Git: ') + commitText(c),
    pr ? ' · ' : '', pr ? el('a', { href: pr.url, rel: 'noreferrer', id: 'pull-request' }, 'pull request #' + pr.number) : null);
}

// The commit an approval merges: its branch, pull request and diff.
function proposalView(c) {
  if (!c) return null;
  return el('div', { id: 'proposal' },
    el('p', {}, 'As a commit in Git: ' + commitText(c) + (c.pull_request ? ' (approving merges pull request #' + c.pull_request.number + ')' : ' (approving merges the branch)')),
    c.diff ? el('pre', { class: 'diff' }, c.diff) : null);
}

function section(title, ...children) {
  return el('section', { class: 'card' }, el('h3', {}, title), ...children);
}

async function incidentView(id) {
  const path = '/api/v1/reflexion/incidents/' + encodeURIComponent(id);
  const [d, written] = await Promise.all([api(path),
    api(path + '/events').then((w) => w.events, (e) => { if (e instanceof Unauthorized) throw e; return e.message; })]);
  const out = [
    el('p', {}, el('a', { href: '#/incidents' }, '← all incidents')),
    el('h2', {}, d.workload.kind + '/' + d.workload.name + ' in ' + d.namespace),
    el('section', { class: 'card' },
      el('p', {}, 'State: ', el('span', { id: 'incident-state', class: 'state ' + d.state }, d.state.replace('_', ' ')),
        ' · signature ', el('code', {}, d.signature), ' · ', d.error_type, ' on pod ', d.pod_name,
        ' · trials ', String(d.trials), d.fixed_by ? ' · fixed by ' + d.fixed_by : ''),
      d.outcome ? el('p', { id: 'outcome' }, d.outcome) : null,
      ownerLine(d.owner),
      gitLine(d.git)),
  ];
  if (d.state === 'awaiting_approval' && d.pending_plan) {
    const plan = d.pending_plan;
    out.push(el('section', { class: 'card approval', id: 'approval' },
      el('h3', {}, 'Waiting for your approval'),
      el('p', {}, 'Approving runs exactly this:'),
      el('pre', { id: 'pending-command' }, plan.command),
      proposalView(plan.plan && plan.plan.proposal),
      plan.plan && plan.plan.rationale ? el('p', {}, 'Why: ' + plan.plan.rationale) : null,
      el('div', { class: 'row' },
        el('button', { id: 'approve', type: 'button', onclick: () => decide(id, 'approve', { by: 'console' }) }, 'Approve'),
        el('input', { id: 'reject-reason', type: 'text', maxlength: 256, placeholder: 'reason for rejecting', 'aria-label': 'Reason for rejecting' }),
        el('button', { id: 'reject', type: 'button', class: 'danger',
          onclick: () => decide(id, 'reject', { by: 'console', reason: $('reject-reason').value || 'rejected in the console' }) }, 'Reject')),
      el('p', { id: 'decision-error', role: 'alert' })));
  }
  out.push(section('Timeline', el('ol', { class: 'timeline', id: 'timeline' },
    ...d.transitions.map((t) => el('li', {}, el('span', { class: 'muted' }, t.at.replace('T', ' ').slice(0, 19)), ' ',
      el('span', { class: 'state ' + t.state }, t.state.replace('_', ' ')), ' — ', t.note)))));
  for (const e of d.episodes) {
    const verdict = e.success ? 'verified' : e.reverted ? 'did not hold, reverted' : 'did not hold';
    out.push(section('Trial ' + e.trial + ' · ' + e.source + ' · ' + verdict,
      el('p', {}, 'Command'), el('pre', { class: 'command' }, e.command),
      el('p', {}, 'Why: ' + e.rationale),
      el('details', {}, el('summary', {}, 'Dry run and execution'), el('pre', {}, json({ dry_run: e.dry_run, execution: e.execution }))),
      el('p', {}, 'Verification: ' + (e.verification && e.verification.detail ? e.verification.detail : json(e.verification))),
      el('p', {}, 'Reflection: ' + e.reflection),
      e.lessons_learned.length ? el('ul', {}, ...e.lessons_learned.map((l) => el('li', {}, l))) : null));
  }
  if (d.llm_calls.length) {
    out.push(section('LLM calls', ...d.llm_calls.map((c) => el('details', {},
      el('summary', {}, 'trial ' + c.trial + ' · ' + c.model + ' · ' + c.outcome + ' · ' + (c.prompt_tokens + c.completion_tokens) + ' tokens · ' + c.latency_ms + ' ms'),
      el('p', {}, 'Prompt'), el('pre', {}, c.prompt), el('p', {}, 'Answer'), el('pre', {}, c.response || '(none)')))));
  }
  out.push(section('Writes to the cluster (audit)', d.audit.length === 0 ? el('p', { class: 'muted' }, 'Nothing was written.')
    : el('div', { class: 'scroll' }, el('table', { id: 'audit' },
      el('thead', {}, el('tr', {}, ...['At', 'Verb', 'Target', 'Result'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...d.audit.map((a) => el('tr', {}, el('td', {}, a.at.replace('T', ' ').slice(0, 19)),
        el('td', {}, a.verb), el('td', {}, a.target), el('td', {}, a.result))))))));
  out.push(section('Events kube-reflexion wrote on the workload', typeof written === 'string'
    ? el('p', { class: 'muted' }, 'Could not read them from the cluster: ' + written)
    : written.length === 0 ? el('p', { class: 'muted' }, 'None yet.')
      : el('ul', { id: 'written-events' }, ...written.map((ev) => el('li', {},
        el('span', { class: 'muted' }, ev.at.replace('T', ' ').slice(0, 19)), ' ' + ev.type + ' ' + ev.reason + ': ' + ev.message)))));
  const events = ((d.evidence && d.evidence.events) || []);
  out.push(section('Kubernetes Events of the pod', events.length === 0 ? el('p', { class: 'muted' }, 'None recorded.')
    : el('ul', { id: 'pod-events' }, ...events.map((ev) => el('li', {}, (ev.type || '') + ' ' + (ev.reason || '') + ': ' + (ev.message || ''))))));
  out.push(section('Evidence', el('details', { open: true }, el('summary', {}, 'What diagnosis read'),
    el('pre', { id: 'evidence' }, json(d.evidence)))));
  out.push(section('Report', el('details', {}, el('summary', {}, 'The watcher\'s report'), el('pre', {}, json(d.report)))));
  return out;
}

async function clearMemory(what, label) {
  if (!window.confirm('Delete ' + label + '? Incidents and the audit log are kept.')) return;
  try { await api('/api/v1/memory/' + what, { method: 'DELETE' }); } catch (e) {
    if (e instanceof Unauthorized) { showLogin('The token was refused.'); return; }
  }
  await render();
}

async function memoryView() {
  const [s, e, v] = await Promise.all([api('/api/v1/reflexion/strategies?limit=1000'),
    api('/api/v1/reflexion/memory/episodic?limit=100'), api('/api/v1/memory/learned-values?limit=200')]);
  const lessons = e.episodes.flatMap((ep) => ep.lessons_learned.map((l) => [ep.signature, l]));
  return [
    el('h2', {}, 'Memory'),
    section('Strategies', s.strategies.length === 0 ? el('p', { class: 'muted' }, 'None learned yet.')
      : el('div', { class: 'scroll' }, el('table', { id: 'strategies' },
        el('thead', {}, el('tr', {}, ...['Signature', 'Action', 'Template', 'Successes', 'Failures', 'Confidence', 'Source'].map((h) => el('th', {}, h)))),
        el('tbody', {}, ...s.strategies.map((x) => el('tr', {}, el('td', {}, el('code', {}, x.signature)), el('td', {}, x.action),
          el('td', {}, el('code', {}, x.template)), el('td', {}, String(x.successes)), el('td', {}, String(x.failures)),
          el('td', {}, x.confidence.toFixed(2)), el('td', {}, x.source))))))),
    section('Lessons (from the last 100 trials)', lessons.length === 0 ? el('p', { class: 'muted' }, 'None yet.')
      : el('ul', { id: 'lessons' }, ...lessons.map(([sig, l]) => el('li', {}, el('code', {}, sig), ' ', l)))),
    section('Learned values', v.learned_values.length === 0 ? el('p', { class: 'muted' }, 'None yet.')
      : el('div', { class: 'scroll' }, el('table', { id: 'learned-values' },
        el('thead', {}, el('tr', {}, ...['Workload', 'Signature', 'Key', 'Value', 'Learned'].map((h) => el('th', {}, h)))),
        el('tbody', {}, ...v.learned_values.map((x) => el('tr', {},
          el('td', {}, x.namespace + '/' + x.workload.kind + '/' + x.workload.name), el('td', {}, el('code', {}, x.signature)),
          el('td', {}, x.key), el('td', {}, x.value), el('td', {}, age(x.updated_at) + ' ago'))))))),
    section('Clear', el('p', { class: 'muted' }, 'Incidents and the audit log are never cleared.'),
      el('div', { class: 'row' },
        el('button', { type: 'button', class: 'secondary', onclick: () => clearMemory('strategies', 'all strategies and learned values') }, 'Clear strategies'),
        el('button', { type: 'button', class: 'secondary', onclick: () => clearMemory('episodes', 'all episodes and lessons') }, 'Clear episodes'),
        el('button', { type: 'button', class: 'danger', onclick: () => clearMemory('clear', 'all learned memory') }, 'Clear all memory'))),
  ];
}

function chart(id, title, days, value, opts) {
  const W = 320; const H = 170; const L = 34; const B = 24; const T = 10; const R = 8;
  const values = days.map(value);
  const max = opts.max || Math.max(1, ...values.filter((v) => v !== null));
  const x = (i) => L + (days.length <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (days.length - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, id });
  g.append(svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
    svg('text', { x: 2, y: T + 8 }, opts.fmt(max)), svg('text', { x: 2, y: H - B }, opts.fmt(0)));
  if (days.length) {
    g.append(svg('text', { x: L, y: H - 6 }, days[0].day.slice(5)));
    if (days.length > 1) g.append(svg('text', { x: W - R - 28, y: H - 6 }, days[days.length - 1].day.slice(5)));
  }
  if (opts.bars) {
    const w = Math.max(4, Math.min(24, (W - L - R) / Math.max(1, days.length) - 4));
    values.forEach((v, i) => g.append(svg('rect', { class: 'bar', x: x(i) - w / 2, y: y(v || 0), width: w, height: H - B - y(v || 0) },
      svg('title', {}, days[i].day + ': ' + opts.fmt(v || 0)))));
  } else {
    const pts = values.map((v, i) => [v, i]).filter(([v]) => v !== null);
    if (pts.length > 1) g.append(svg('polyline', { class: 'line', points: pts.map(([v, i]) => x(i) + ',' + y(v)).join(' ') }));
    for (const [v, i] of pts) g.append(svg('circle', { class: 'dot', cx: x(i), cy: y(v), r: 3 }, svg('title', {}, days[i].day + ': ' + opts.fmt(v))));
  }
  return el('figure', { class: 'card chart' }, el('figcaption', {}, title), g);
}

async function learningView() {
  const [p, s] = await Promise.all([api('/api/v1/memory/learning-progression?days=30'), api('/api/v1/memory/statistics')]);
  const pct = (v) => Math.round(v * 100) + '%';
  const num = (v) => (Math.round(v * 10) / 10).toString();
  // Two weeks at least, days without incidents included, so a curve reads against time.
  const byDay = new Map(p.days.map((d) => [d.day, d]));
  const first = p.days.length ? Date.parse(p.days[0].day) : Date.now();
  const start = Math.min(first, Date.now() - 13 * 86400000);
  const days = [];
  for (let t = start; t <= Date.now(); t += 86400000) {
    const day = new Date(t).toISOString().slice(0, 10);
    days.push(byDay.get(day) || { day, incidents: 0, success_rate: null, mean_trials_to_fix: null, llm_free_share: null });
  }
  return [
    el('h2', {}, 'Learning'),
    el('p', { id: 'learning-summary' }, s.incidents.total + ' incidents · success rate ' + (s.success_rate === null ? '–' : pct(s.success_rate))
      + ' · mean trials to fix ' + (s.mean_trials_to_fix === null ? '–' : num(s.mean_trials_to_fix))
      + ' · ' + s.strategies + ' strategies · ' + s.lessons + ' lessons · ' + s.llm.calls + ' LLM calls'),
    p.days.length === 0 ? el('p', { class: 'muted' }, 'No incidents yet: the charts fill in as incidents are worked.') : null,
    el('div', { class: 'charts' },
      chart('chart-incidents', 'Incidents per day', days, (d) => d.incidents, { bars: true, fmt: (v) => String(Math.round(v)) }),
      chart('chart-success', 'Success rate', days, (d) => d.success_rate, { max: 1, fmt: pct }),
      chart('chart-trials', 'Trials to fix', days, (d) => d.mean_trials_to_fix, { fmt: num }),
      chart('chart-llm-free', 'Fixed without an LLM call', days, (d) => d.llm_free_share, { max: 1, fmt: pct })),
  ];
}

start().catch((e) => {
  document.getElementById('main').replaceChildren(el('p', { role: 'alert' }, 'The console could not start: ' + e.message));
});
