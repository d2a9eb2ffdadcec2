'use strict';
// The approval page: one queue of pending holds, each decidable from its
// card. All content from holds is inserted as text, never as HTML.

const $ = (sel, el = document) => el.querySelector(sel);
const cards = new Map(); // id -> { hold, el }
let csrf = null;
let selected = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch (_) { /* not JSON */ }
  return { status: res.status, data };
}

// ---- the draft, rendered for a person --------------------------------------

function highlighter(summary) {
  const s = (summary || '').toLowerCase();
  return (value) => {
    const t = String(value).trim().toLowerCase();
    return t.length >= 2 && s.includes(t);
  };
}

function jsonNodes(value, indent, hl, out) {
  const pad = '  '.repeat(indent);
  if (Array.isArray(value)) {
    if (value.length === 0) { out.push('[]'); return; }
    out.push('[\n');
    value.forEach((v, i) => {
      out.push(pad + '  ');
      jsonNodes(v, indent + 1, hl, out);
      out.push(i < value.length - 1 ? ',\n' : '\n');
    });
    out.push(pad + ']');
  } else if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 0) { out.push('{}'); return; }
    out.push('{\n');
    keys.forEach((k, i) => {
      out.push(pad + '  ' + JSON.stringify(k) + ': ');
      jsonNodes(value[k], indent + 1, hl, out);
      out.push(i < keys.length - 1 ? ',\n' : '\n');
    });
    out.push(pad + '}');
  } else {
    const text = JSON.stringify(value);
    out.push(value !== null && hl(value) ? el('mark', { text }) : text);
  }
}

// Headers every client sends: listed, but not called out.
const ROUTINE_HEADERS = new Set(['host', 'content-length', 'content-type', 'accept', 'accept-encoding',
  'accept-language', 'user-agent', 'connection', 'authorization', 'x-api-key', 'cookie', 'content-encoding']);

function renderHeaders(h) {
  const headers = Object.entries((h.request || {}).headers || {});
  if (headers.length === 0) return null;
  const notable = headers.map(([k]) => k).filter((k) => !ROUTINE_HEADERS.has(k.toLowerCase()));
  const label = `${headers.length} request header${headers.length === 1 ? '' : 's'}` +
    (notable.length ? ` — ${notable.join(', ')}` : '');
  const box = el('details', { class: 'headers' }, el('summary', { text: label }));
  if (notable.length) { fillHeaders(box, h); box.open = true; }
  return box;
}

/// The table is made when first shown (the queue's `toggle` listener): a
/// thousand closed ones cost nothing.
function fillHeaders(box, h) {
  if (box.querySelector('table')) return;
  const table = el('table');
  for (const [k, v] of Object.entries((h.request || {}).headers || {})) {
    table.append(el('tr', {}, el('th', { text: k }), el('td', { text: v })));
  }
  box.append(table);
}

function renderAmbiguities(h) {
  const list = (h.request || {}).ambiguities || [];
  if (list.length === 0) return null;
  return el('div', { class: 'ambiguous', role: 'note' },
    el('strong', { text: 'Read with care: this request can be read more than one way.' }),
    el('ul', {}, ...list.map((a) => el('li', { text: a }))));
}

/// A JSON value pretty-printed, the parts the summary names marked.
function jsonPre(value, hl) {
  const parts = [];
  jsonNodes(value, 0, hl, parts);
  // Adjacent text in one node: a thousand cards stay cheap to lay out.
  const merged = [];
  for (const p of parts) {
    if (typeof p === 'string' && typeof merged[merged.length - 1] === 'string') merged[merged.length - 1] += p;
    else merged.push(p);
  }
  return el('pre', {}, ...merged);
}

/// `{name, arguments}` of one MCP `tools/call` request, else null.
function toolCall(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  if (typeof value.method !== 'string' || value.method.trim().toLowerCase() !== 'tools/call') return null;
  const params = value.params;
  if (params === null || typeof params !== 'object' || typeof params.name !== 'string') return null;
  return { name: params.name, arguments: params.arguments };
}

function renderDraft(h) {
  const req = h.request || {};
  const box = el('div', { class: 'draft', 'aria-label': 'What would be sent' });
  const type = (req.content_type || '').toLowerCase();
  if (req.body_decoded_from) {
    box.append(el('p', { class: 'decoded', text: `Shown decoded from ${req.body_decoded_from}; sent as received.` }));
  }
  if (req.body == null || req.body === '') {
    box.append(el('p', { text: req.body_size ? `${req.body_size} bytes` : 'No body' }));
    return box;
  }
  if (req.body_encoding === 'base64') {
    box.append(el('p', { text: `${req.body_size} bytes of ${req.content_type || 'binary data'} (not text)` }));
    return box;
  }
  // With more than one reading, the text as sent: a parsed view would keep
  // only one of two duplicate keys.
  const ambiguous = (req.ambiguities || []).length > 0;
  if (!ambiguous && (type.includes('json') || /^\s*[{[]/.test(req.body))) {
    try {
      const value = JSON.parse(req.body);
      const hl = highlighter(h.summary);
      const call = toolCall(value);
      if (call) {
        // An MCP tool call: the tool and its arguments first, the whole
        // message (with its protocol envelope) a click away.
        box.append(el('p', { class: 'tool' }, 'MCP tool ', el('code', { text: call.name })),
          jsonPre(call.arguments === undefined ? {} : call.arguments, hl),
          el('details', { class: 'message' }, el('summary', { text: 'The whole JSON-RPC message' }), jsonPre(value, hl)));
        return box;
      }
      if (Array.isArray(value) && value.some(toolCall)) {
        box.append(el('p', { class: 'tool', text: `A batch of ${value.length} JSON-RPC messages: every call in it is sent.` }));
      }
      box.append(jsonPre(value, hl));
      return box;
    } catch (_) { /* shown as text below */ }
  }
  if (type.includes('x-www-form-urlencoded')) {
    const hl = highlighter(h.summary);
    const table = el('table');
    for (const [k, v] of new URLSearchParams(req.body)) {
      table.append(el('tr', {}, el('th', { text: k }), el('td', {}, hl(v) ? el('mark', { text: v }) : v)));
    }
    box.append(table);
    return box;
  }
  box.append(el('pre', { text: req.body }));
  if (!req.body_decoded_from && req.body_size > req.body.length) box.append(el('p', { text: `… ${req.body_size} bytes in all` }));
  return box;
}

// ---- cards -----------------------------------------------------------------

function left(expires) {
  const s = Math.max(0, Math.round((Date.parse(expires) - Date.now()) / 1000));
  if (s <= 0) return 'expiring now';
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d > 0) return `expires in ${d}d ${hh}h`;
  if (hh > 0) return `expires in ${hh}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `expires in ${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `expires in ${s}s`;
}

function target(h) {
  try {
    const u = new URL(h.url);
    return `${h.method} ${u.host}${u.pathname}${u.search}`;
  } catch (_) { return `${h.method} ${h.url}`; }
}

function escalatedBadge() {
  return el('span', { class: 'badge-escalated', title: 'Still pending past its escalation time: the backup was told', text: 'escalated' });
}

/// "1 of 2 approvals · alice" for a rule that asks for more than one.
function quorumText(h) {
  const names = (h.approvals || []).map((a) => a.by).join(', ');
  return `${(h.approvals || []).length} of ${h.approvals_needed} approvals${names ? ` · ${names}` : ''}`;
}

function refreshQuorum(c) {
  const q = $('.quorum', c.el);
  if (q) q.textContent = quorumText(c.hold);
}

/// Drafts of cards far from the viewport are drawn when they come near it:
/// a thousand cards cost their frames, not their contents.
const drafts = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (!e.isIntersecting) continue;
    drafts.unobserve(e.target);
    const c = cards.get(e.target.dataset.id);
    if (c) drawDraft(c);
  }
}, { rootMargin: '1500px 0px' });

/// A card's draft in place of its slot; from the whole hold when the list
/// carried only the start of its body.
async function drawDraft(c) {
  if (c.hold.request && c.hold.request.body_truncated) {
    const r = await api('GET', `/api/holds/${c.hold.id}`);
    if (r.status === 200) c.hold.request = r.data.request;
  }
  const slot = c.el.querySelector('.draft-slot');
  if (!slot) return;
  const headers = renderHeaders(c.hold);
  if (headers) slot.after(headers);
  slot.replaceWith(renderDraft(c.hold));
}

/// Every card starts as a copy of this one: cloning is one native call where
/// building is a dozen, and a thousand cards are drawn at once.
const PROTO = el('article', { class: 'card', tabindex: '-1' },
  el('p', { class: 'trigger' }),
  el('h2', { class: 'summary' }),
  el('p', { class: 'meta' },
    el('span', { class: 'agent' }),
    el('span', { class: 'rule' }),
    el('code', { class: 'target' }),
    el('span', { class: 'countdown' })),
  el('div', { class: 'draft draft-slot', 'aria-label': 'What would be sent' }),
  el('div', { class: 'actions' },
    el('button', { type: 'button', class: 'approve', 'data-act': 'approve', text: 'Approve' }),
    el('input', { class: 'reason', type: 'text', placeholder: 'Reason (optional)', 'aria-label': 'Reason for dismissing' }),
    el('button', { type: 'button', class: 'dismiss', 'data-act': 'dismiss', text: 'Dismiss' })),
  el('p', { class: 'error', role: 'alert', hidden: '' }));

function card(h, lazy = false) {
  const node = PROTO.cloneNode(true);
  const [trigger, summary, meta, slot, actions] = node.children;
  const [agent, rule, code, countdown] = meta.children;
  node.dataset.id = h.id;
  node.setAttribute('aria-label', h.summary);
  if (h.escalated) {
    node.classList.add('escalated');
    trigger.append(escalatedBadge());
  }
  trigger.prepend(h.trigger ?? '');
  summary.textContent = h.summary;
  agent.textContent = `agent ${h.agent}`;
  if (h.agent_label) {
    agent.append(el('span', { class: 'unverified', title: 'A name the agent gave itself; airlock did not check it', text: ` · calls itself "${h.agent_label}" (unverified)` }));
  }
  rule.textContent = h.label && h.label !== h.trigger ? `rule ${h.rule} · ${h.label}` : `rule ${h.rule}`;
  code.textContent = target(h);
  if (h.approvals_needed > 1) countdown.before(el('span', { class: 'quorum', text: quorumText(h) }));
  countdown.dataset.expires = h.expires_at;
  countdown.textContent = left(h.expires_at);
  const ambiguities = renderAmbiguities(h);
  if (ambiguities) slot.before(ambiguities);
  // The draft and the headers: at once, or when the card comes near, or
  // once the whole hold is read when the list cut its body.
  if (lazy) drafts.observe(node);
  else if (!(h.request && h.request.body_truncated)) {
    const headers = renderHeaders(h);
    if (headers) slot.after(headers);
    slot.replaceWith(renderDraft(h));
  }
  if (h.rule_snippet) {
    actions.before(el('details', { class: 'snippet' },
      el('summary', { text: 'No rule matched: a rule to classify requests like this' }),
      el('pre', { text: h.rule_snippet })));
  }
  if (h.allow_edit) {
    actions.append(el('button', { type: 'button', class: 'edit', 'data-act': 'edit', text: 'Edit & approve' }));
  }
  return node;
}

/// One listener for every card: selecting, the buttons, the header tables.
function listen(queue) {
  queue.addEventListener('click', (ev) => {
    const node = ev.target.closest('.card');
    if (!node) return;
    const id = node.dataset.id;
    select(id);
    const act = ev.target.closest('button[data-act]');
    if (!act || act.disabled) return;
    if (act.dataset.act === 'approve') decide(id, 'approve', {});
    else if (act.dataset.act === 'dismiss') {
      const reason = $('.reason', node).value;
      decide(id, 'dismiss', reason ? { reason } : {});
    } else if (act.dataset.act === 'edit') edit(id);
  });
  queue.addEventListener('toggle', (ev) => {
    const box = ev.target;
    if (!box.matches || !box.matches('details.headers') || !box.open) return;
    const c = cards.get(box.closest('.card').dataset.id);
    if (c) fillHeaders(box, c.hold);
  }, true);
}

function insert(h) {
  const node = card(h);
  cards.set(h.id, { hold: h, el: node });
  const queue = $('#queue');
  const later = [...cards.values()].find((c) => c.el.isConnected && c.hold.expires_at > h.expires_at);
  queue.insertBefore(node, later ? later.el : null);
  if (!selected) select(h.id);
  updateCount();
}

function remove(id, note) {
  const c = cards.get(id);
  if (!c) return;
  if (selected === id) {
    const next = c.el.nextElementSibling || c.el.previousElementSibling;
    selected = null;
    if (next && next.dataset.id) select(next.dataset.id);
  }
  c.el.remove();
  cards.delete(id);
  updateCount();
  if (note) notice(`“${c.hold.summary}” — ${note}`);
}

function notice(text) {
  const p = el('p', { text });
  $('#notices').prepend(p);
  setTimeout(() => p.remove(), 8000);
}

function updateCount() {
  $('#count').textContent = String(cards.size);
  $('#empty').hidden = cards.size > 0;
}

function select(id) {
  if (selected && cards.has(selected)) cards.get(selected).el.classList.remove('selected');
  selected = id;
  const c = cards.get(id);
  if (c) {
    c.el.classList.add('selected');
    c.el.focus({ preventScroll: true });
    c.el.scrollIntoView({ block: 'nearest' });
  }
}

function move(step) {
  const ids = [...$('#queue').querySelectorAll('.card')].map((n) => n.dataset.id);
  if (ids.length === 0) return;
  const i = Math.max(0, Math.min(ids.length - 1, ids.indexOf(selected) + step));
  select(ids[i]);
}

async function decide(id, action, payload) {
  const c = cards.get(id);
  if (!c) return;
  const error = $('.error', c.el);
  c.el.querySelectorAll('button').forEach((b) => { b.disabled = true; });
  const r = await api('POST', `/api/holds/${id}/${action}`, payload);
  if (r.status === 200 && action === 'approve' && r.data && r.data.state === 'pending') {
    // Short of the rule's quorum: it waits for another reviewer.
    c.hold.approvals = r.data.approvals;
    refreshQuorum(c);
    c.el.querySelectorAll('button').forEach((b) => { b.disabled = b.classList.contains('approve') || b.classList.contains('edit'); });
    notice(`“${c.hold.summary}” — your approval counted: ${quorumText(c.hold)}`);
    return;
  }
  if (r.status === 200) {
    remove(id, action === 'approve' ? 'approved by you' : 'dismissed by you');
    return;
  }
  c.el.querySelectorAll('button').forEach((b) => { b.disabled = false; });
  error.hidden = false;
  if (r.status === 409 && r.data && /already approved/.test(r.data.error || '')) {
    error.textContent = r.data.error;
  } else if (r.status === 409) {
    const now = await api('GET', `/api/holds/${id}`);
    const who = now.data && now.data.decided_by ? ` by ${now.data.decided_by}` : '';
    error.textContent = `Too late: this hold was already ${now.data ? now.data.state : 'decided'}${who}. Nothing was changed.`;
    setTimeout(() => remove(id), 4000);
  } else if (r.status === 401) {
    error.textContent = 'Your session has ended: log in again.';
  } else {
    error.textContent = (r.data && r.data.error) || `The decision failed (${r.status}).`;
  }
}

async function edit(id) {
  const c = cards.get(id);
  if (!c || $('.editor', c.el)) return;
  const full = await api('GET', `/api/holds/${id}`);
  const area = el('textarea', { class: 'editor', 'aria-label': 'Body to send' });
  area.value = (full.data && full.data.request && full.data.request.body) || '';
  const send = el('button', { type: 'button', class: 'approve', text: 'Approve edited', onclick: () => decide(id, 'approve', { body: area.value }) });
  $('.actions', c.el).before(area, el('div', { class: 'actions' }, send));
  area.focus();
}

// ---- live updates, history, session ----------------------------------------

const NOTES = {
  approved: (e) => `approved by ${e.actor}`,
  dismissed: (e) => `dismissed by ${e.actor}`,
  expired: () => 'expired: nobody decided in time, not sent',
};

function follow() {
  const es = new EventSource('/api/events');
  es.addEventListener('approval', async (ev) => {
    const e = JSON.parse(ev.data);
    const c = cards.get(e.id);
    if (!c) return;
    const now = await api('GET', `/api/holds/${e.id}`);
    if (now.data && now.data.approvals) {
      c.hold.approvals = now.data.approvals;
      refreshQuorum(c);
    }
  });
  es.addEventListener('held', async (ev) => {
    const e = JSON.parse(ev.data);
    if (cards.has(e.id)) return;
    const r = await api('GET', `/api/holds/${e.id}`);
    if (r.status === 200 && r.data.state === 'pending' && !cards.has(e.id)) insert(r.data);
  });
  es.addEventListener('escalated', (ev) => {
    const e = JSON.parse(ev.data);
    const c = cards.get(e.id);
    if (!c || c.hold.escalated) return;
    c.hold.escalated = true;
    c.el.classList.add('escalated');
    c.el.querySelector('.trigger').append(escalatedBadge());
  });
  for (const kind of ['approved', 'dismissed', 'expired', 'released', 'failed', 'interrupted']) {
    es.addEventListener(kind, (ev) => {
      const e = JSON.parse(ev.data);
      if (cards.has(e.id)) remove(e.id, (NOTES[kind] || (() => kind))(e));
      if (!$('#history').hidden) loadHistory();
    });
  }
  return es;
}

/// Cards drawn before the browser is let paint: about a screen's worth.
const FIRST_SCREEN = 12;
/// Bytes of each body the whole queue's list carries: a thousand cards stay
/// a light answer; a longer body is read whole when its card comes near.
const PREVIEW = 0;

function nextFrame() {
  return new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
}

/// The queue: its first screen from a small request, painted, then the
/// rest from the whole list, asked for at the same time.
async function loadQueue(firstPage, whole) {
  const draw = (list, lazy) => {
    const frag = document.createDocumentFragment();
    for (const h of list) {
      if (cards.has(h.id)) continue; // already here, or came over the event stream
      const node = card(h, lazy);
      const c = { hold: h, el: node };
      cards.set(h.id, c);
      frag.append(node);
      // A body the list cut: its card reads the hold whole.
      if (!lazy && h.request && h.request.body_truncated) drawDraft(c);
    }
    $('#queue').append(frag);
    updateCount();
  };
  const f = await firstPage;
  if (f.status !== 200) return;
  draw(f.data.holds, false);
  if (f.data.holds[0]) select(f.data.holds[0].id);
  await nextFrame();
  document.body.dataset.firstMs = String(Math.round(performance.now()));
  if (f.data.next_cursor) {
    const r = await whole;
    if (r.status === 200) draw(r.data.holds, true);
  }
  await openLinked();
}

// Notifications link to `/#hold=<id>`: bring that card forward, or say what
// became of the hold so nobody acts on a stale message.
async function openLinked() {
  const m = /^#hold=([0-9a-f-]{36})$/.exec(location.hash);
  if (!m) return;
  const id = m[1];
  if (cards.has(id)) {
    select(id);
    cards.get(id).el.scrollIntoView({ block: 'center' });
    return;
  }
  const r = await api('GET', `/api/holds/${id}`);
  if (r.status !== 200) { notice('The linked hold does not exist.'); return; }
  const h = r.data;
  if (h.state === 'pending') {
    // Beyond the first 1000 the queue loaded: bring it in.
    if (!cards.has(h.id)) insert(h);
    select(h.id);
    cards.get(h.id).el.scrollIntoView({ block: 'center' });
    return;
  }
  const by = h.decided_by ? ` by ${h.decided_by}` : '';
  notice(`“${h.summary}” is already ${h.state}${by}: nothing to decide.`);
}

async function loadHistory() {
  const r = await api('GET', '/api/holds?limit=200');
  if (r.status !== 200) return;
  const rows = r.data.holds.filter((h) => h.state !== 'pending').map((h) => el('tr', {},
    el('td', { text: (h.decided_at || h.created_at || '').replace('T', ' ').slice(0, 19) }),
    el('td', { text: h.summary }),
    el('td', { text: h.rule }),
    el('td', { class: `state-${h.state}`, text: h.state + (h.response ? ` (${h.response.status})` : '') }),
    el('td', { text: h.decided_by || (h.state === 'expired' ? 'nobody' : '') }),
    el('td', { text: h.note || h.reason || h.error || '' }),
  ));
  const table = el('table', {},
    el('thead', {}, el('tr', {}, ...['When', 'Summary', 'Rule', 'Outcome', 'Who', 'Note / reason'].map((t) => el('th', { text: t })))),
    el('tbody', {}, ...rows));
  $('#history').replaceChildren(rows.length ? table : el('p', { class: 'empty', text: 'No decided holds yet.' }));
}

function duration(secs) {
  if (secs == null) return '–';
  if (secs < 90) return `${Math.round(secs)} s`;
  if (secs < 5400) return `${Math.round(secs / 60)} min`;
  return `${(secs / 3600).toFixed(1)} h`;
}

async function loadHealth() {
  const r = await api('GET', '/api/stats?since=30d');
  if (r.status !== 200) return;
  const f = r.data;
  const rows = f.rules.map((x) => el('tr', {},
    el('td', { text: x.rule }),
    el('td', { text: String(x.holds) }),
    el('td', { text: String(x.approved) }),
    el('td', { text: String(x.dismissed) }),
    el('td', { text: String(x.expired) }),
    el('td', { text: x.approval_rate == null ? '–' : `${Math.round(x.approval_rate * 100)}%` }),
    el('td', { text: duration(x.median_decision_secs) }),
    el('td', { text: duration(x.p90_decision_secs) }),
    el('td', { text: String(x.escalated) }),
  ));
  const findings = (f.findings || []).map((x) => el('li', { class: `finding finding-${x.kind}` },
    el('span', { text: x.message }),
    x.snippet ? el('pre', { text: x.snippet }) : null));
  const oldest = f.oldest_pending ? `, oldest waiting since ${f.oldest_pending.replace('T', ' ').slice(0, 16)} UTC` : '';
  $('#health').replaceChildren(
    el('p', { text: `Last 30 days. ${f.queue_depth} pending now${oldest}.` }),
    el('table', {},
      el('thead', {}, el('tr', {}, ...['Rule', 'Holds', 'Approved', 'Dismissed', 'Expired', 'Approval rate', 'Median decision', 'p90 decision', 'Escalated'].map((t) => el('th', { text: t })))),
      el('tbody', {}, ...rows)),
    el('h2', { text: 'Findings' }),
    findings.length ? el('ul', { class: 'findings' }, ...findings) : el('p', { text: 'No findings: the queue holds what it should.' }));
}

function show(view) {
  document.querySelectorAll('.tab').forEach((t) => t.setAttribute('aria-pressed', String(t.dataset.view === view)));
  $('#queue').hidden = view !== 'queue';
  $('#history').hidden = view !== 'history';
  $('#health').hidden = view !== 'health';
  if (view === 'history') loadHistory();
  if (view === 'health') loadHealth();
}

function keys(ev) {
  if (ev.target.closest('input, textarea') || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === 'j') move(1);
  else if (ev.key === 'k') move(-1);
  else if (ev.key === 'a' && selected) decide(selected, 'approve', {});
  else if (ev.key === 'd' && selected) {
    const c = cards.get(selected);
    const reason = c ? $('.reason', c.el).value : '';
    decide(selected, 'dismiss', reason ? { reason } : {});
  } else return;
  ev.preventDefault();
}

/// What the page came with: the session and the queue's first screen
/// (`#boot`), when the reviewer was signed in; else the page asks the API.
function booted() {
  const node = document.getElementById('boot');
  if (!node) return null;
  try { return JSON.parse(node.textContent); } catch (_) { return null; }
}

async function start() {
  // Events first, so a hold made while the queue loads is not missed.
  const events = follow();
  const boot = booted();
  // The queue past the first screen at once, beside the session, not after it.
  const whole = api('GET', `/api/holds?state=pending&limit=1000&preview=${PREVIEW}`);
  let firstPage, s;
  if (boot) {
    firstPage = Promise.resolve({ status: 200, data: boot.queue });
    s = { status: 200, data: boot.session };
  } else {
    firstPage = api('GET', `/api/holds?state=pending&limit=${FIRST_SCREEN}`);
    s = await api('GET', '/api/session');
  }
  if (s.status !== 200) {
    events.close();
    $('#login').hidden = false;
    $('#queue').hidden = true;
    return;
  }
  csrf = s.data.csrf;
  $('#who').textContent = s.data.reviewer + (s.data.admin ? ' (admin)' : '');
  $('#logout').hidden = false;
  $('#logout').addEventListener('click', async () => { await api('POST', '/logout'); location.assign('/'); });
  document.querySelectorAll('.tab').forEach((t) => t.addEventListener('click', () => show(t.dataset.view)));
  document.addEventListener('keydown', keys);
  listen($('#queue'));
  window.addEventListener('hashchange', openLinked);
  const t0 = performance.now();
  await loadQueue(firstPage, whole);
  // Read by the page benchmark: fetching and drawing the queue, and the
  // whole load from navigation, both once the browser has laid the cards
  // out and painted (the frame after they were added), not merely when
  // they entered the document; `firstMs` when the first screen was.
  await nextFrame();
  document.body.dataset.queueMs = String(Math.round(performance.now() - t0));
  document.body.dataset.loadMs = String(Math.round(performance.now()));
  setInterval(() => {
    document.querySelectorAll('.countdown').forEach((n) => {
      n.textContent = left(n.dataset.expires);
      n.classList.toggle('soon', Date.parse(n.dataset.expires) - Date.now() < 5 * 60 * 1000);
    });
  }, 1000);
  document.body.dataset.ready = 'true';
}

start();
