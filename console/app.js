// perf-hub console: plain JS over the HTTP API (no build step). The operator signs in once with
// a token (POST /api/session); the hub answers with an HttpOnly session cookie that the browser
// sends with every call. The token itself is never stored in the page.
(() => {
  'use strict';
  const $ = (s) => document.querySelector(s);
  // Capture kinds (label, timed, flame graph, heap analysis) come from the hub's one table.
  let KINDS = [];
  const kindOf = (name) => KINDS.find((k) => k.name === name) || {};
  let signedIn = false;
  // Who signed in: {name, role, apps}. Buttons a role can't use are not offered.
  let me = { role: 'viewer' };
  const RANK = { viewer: 0, operator: 1, admin: 2 };
  const may = (role) => RANK[me.role] >= RANK[role];
  let selected = null;
  let charts = [];

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? '' : String(c)));
    return e;
  }

  function toast(msg, isError) {
    const d = el('div', { class: isError ? 'error' : '' }, msg);
    $('#toast').append(d);
    setTimeout(() => d.remove(), isError ? 10000 : 5000);
  }

  async function api(method, path, body) {
    const res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    if (res.status === 401) {
      // The session ended (signed out elsewhere, token revoked, hub restarted).
      if (signedIn) showLogin('Signed out: sign in again.');
      signedIn = false;
      throw new Error('unauthorized');
    }
    return res;
  }

  /** GET every page of a list route (its `Link: <…>; rel="next"` header), at most `maxPages`. */
  async function all(path, maxPages = 20) {
    const items = [];
    for (let next = path, n = 0; next && n < maxPages; n++) {
      const res = await api('GET', next);
      const data = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(data.error || `${res.status}`);
      items.push(...data);
      const link = /^<([^>]+)>;\s*rel="next"/.exec(res.headers.get('link') || '');
      next = link && link[1];
    }
    return items;
  }

  async function json(method, path, body) {
    const res = await api(method, path, body);
    const data = await res.json().catch(() => ({}));
    if (!res.ok && res.status !== 409) throw new Error(data.error || `${res.status}`);
    return { status: res.status, data };
  }

  function showLogin(msg) {
    $('#main').hidden = true;
    $('#logout').hidden = true;
    $('#login').hidden = false;
    if (msg) toast(msg, true);
  }

  /** Bytes as B / KB / MB / GB (a 40 KB profile is not "0.0 MB"). */
  const mb = (b) => {
    if (b == null) return '';
    const neg = b < 0 ? '-' : '';
    let v = Math.abs(b);
    for (const unit of ['B', 'KB', 'MB', 'GB']) {
      if (v < 1000 || unit === 'GB') return `${neg}${unit === 'B' ? v : v.toFixed(v < 10 ? 2 : 1)} ${unit}`;
      v /= 1000;
    }
    return '';
  };
  const agoText = (t) => {
    const s = Math.round((Date.now() - Date.parse(t)) / 1000);
    return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : s < 86400 ? `${Math.round(s / 3600)}h ago` : new Date(t).toLocaleString();
  };
  /** A relative time, the absolute one on hover. */
  const ago = (t) => el('time', { datetime: t, title: new Date(t).toLocaleString() }, agoText(t));

  // The API's answer to a capture button, shown in that process's row until the next capture.
  const captureErrors = new Map();

  async function capture(p, kind) {
    const seconds = Number($('#seconds').value) || 10;
    const body = { kind, ...(kindOf(kind).timed ? { seconds } : {}) };
    try {
      const { status, data } = await json('POST', `/api/processes/${p.id}/commands`, body);
      if (status === 409) {
        captureErrors.set(p.id, `${kind} refused: ${data.error}`);
        return refresh();
      }
      captureErrors.delete(p.id);
      const e = data.artifact && data.artifact.estimate;
      toast(e ? `Heap snapshot started: heap ${mb(e.heap_used_bytes)}, pause ~${(e.pause_ms / 1000).toFixed(1)} s, needs ~${mb(e.extra_memory_bytes)}` : `${kind} started`);
      refresh();
    } catch (err) {
      if (err.message === 'unauthorized') return;
      captureErrors.set(p.id, `${kind}: ${err.message}`);
      refresh();
    }
  }

  // Recent history per visible process (sparklines, the columns and the sort): one bounded
  // request per row every SPARK_EVERY_MS, with the table, for at most SPARK_ROWS rows. The
  // first asks for the last SPARK_WINDOW_MS, each later one only for the samples after those it
  // has (at most SPARK_LIMIT each time); the page keeps three figures a sample, for the window.
  const recent = new Map(); // id -> { at, points: [{ts, cpu, heap, eld}], last: the newest sample }
  const latest = { get: (id) => recent.get(id)?.last };
  const cpuOf = (x) => (x && x.native && x.native.process ? x.native.process.cpu_user_percent + x.native.process.cpu_system_percent : null);
  const heapOf = (x) => (x && x.js && x.js.heap ? x.js.heap.used_bytes : null);
  const eldOf = (x) => (x && x.js && x.js.event_loop ? x.js.event_loop.delay_p99_ms : null);
  const SPARK_WINDOW_MS = 5 * 60 * 1000;
  const SPARK_LIMIT = 1000;
  const SPARK_POINTS = 60;
  const SPARK_ROWS = 100;
  const SPARK_EVERY_MS = 10000;

  /** At most `n` samples, evenly spread, the last one kept. */
  function thin(rows, n) {
    if (rows.length <= n) return rows;
    const step = (rows.length - 1) / (n - 1);
    return Array.from({ length: n }, (_, i) => rows[Math.round(i * step)]);
  }

  async function refreshRecent(procs) {
    const ids = new Set(procs.map((p) => p.id));
    for (const id of recent.keys()) if (!ids.has(id)) recent.delete(id);
    const now = Date.now();
    const start = now - SPARK_WINDOW_MS;
    const stale = procs.filter((p) => p.connected).slice(0, SPARK_ROWS).filter((p) => !(now - (recent.get(p.id)?.at || 0) < SPARK_EVERY_MS));
    await Promise.all(stale.map(async (p) => {
      const prev = recent.get(p.id) || { points: [] };
      const newest = prev.points.length ? prev.points[prev.points.length - 1].ts : null;
      const since = Number.isFinite(newest) ? Math.max(newest + 1, start) : start;
      const res = await api('GET', `/api/processes/${p.id}/metrics?since=${since}&limit=${SPARK_LIMIT}`).catch(() => null);
      const rows = res && res.ok ? await res.json().catch(() => []) : [];
      const added = rows.filter((x) => Number.isFinite(x.ts)).map((x) => ({ ts: x.ts, cpu: cpuOf(x), heap: heapOf(x), eld: eldOf(x) }));
      const points = prev.points.concat(added).filter((x) => x.ts >= start).slice(-SPARK_LIMIT);
      recent.set(p.id, { at: now, points, last: rows.length ? rows[rows.length - 1] : prev.last });
    }));
  }

  const SVG = 'http://www.w3.org/2000/svg';
  /** A small line of `values` (nulls skipped), 0 at the bottom unless values go below it. */
  function sparkline(values) {
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('viewBox', '0 0 60 16');
    svg.setAttribute('aria-hidden', 'true');
    const vs = values.filter((v) => v != null);
    if (vs.length < 2) return svg;
    const min = Math.min(0, ...vs);
    const span = Math.max(...vs) - min || 1;
    const pts = values.map((v, i) => (v == null ? null : `${((60 * i) / (values.length - 1)).toFixed(1)},${(15 - (14 * (v - min)) / span).toFixed(1)}`)).filter(Boolean);
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', pts.join(' '));
    svg.append(line);
    return svg;
  }

  /** A figure's cell: its latest value, the sparkline of the last minutes, min–max on hover. */
  function metricCell(p, name, key, of, format) {
    const r = recent.get(p.id);
    if (!r || !r.last) return el('td', { class: 'num', 'data-metric': name });
    const values = thin(r.points, SPARK_POINTS).map((x) => x[key]).map((v) => (v == null || Number.isNaN(v) ? null : v));
    const vs = values.filter((v) => v != null);
    const title = vs.length ? `${name}, last ${SPARK_WINDOW_MS / 60000} min: ${format(Math.min(...vs))} – ${format(Math.max(...vs))}` : null;
    return el('td', { class: 'num', 'data-metric': name, title }, el('span', { class: 'spark-cell' }, sparkline(values), el('span', {}, format(of(r.last)))));
  }

  const SORTS = {
    last_seen: (a, b) => b.last_seen.localeCompare(a.last_seen),
    cpu: (a, b) => (cpuOf(latest.get(b.id)) ?? -1) - (cpuOf(latest.get(a.id)) ?? -1),
    heap: (a, b) => (heapOf(latest.get(b.id)) ?? -1) - (heapOf(latest.get(a.id)) ?? -1),
    eld: (a, b) => (eldOf(latest.get(b.id)) ?? -1) - (eldOf(latest.get(a.id)) ?? -1),
  };

  /** The filter box matches an app, a host, a pid or a `key=value` label (all words must match). */
  function matchesFilter(p) {
    const words = $('#proc-filter').value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const hay = [p.app, p.hostname, String(p.pid), p.state, ...Object.entries(p.labels).map(([k, v]) => `${k}=${v}`)].join(' ').toLowerCase();
    return words.every((w) => hay.includes(w));
  }

  const fmt1 = (v, unit) => (v == null ? '' : `${v.toFixed(1)} ${unit}`);

  /** The state badge; a blocked process says for how long, and since when on hover. */
  function stateBadge(p) {
    if (p.state !== 'blocked') return el('span', { class: `badge ${p.state}` }, p.state);
    const since = new Date(Date.parse(p.last_seen) - p.blocked_ms);
    return el('span', { class: 'badge blocked', title: `event loop blocked since ${since.toLocaleString()}` }, `blocked for ${(p.blocked_ms / 1000).toFixed(1)} s`);
  }

  function processRow(p) {
    const buttons = KINDS.filter((k) => p.capabilities.includes(k.name)).map(({ name, label }) =>
      el('button', { disabled: !p.connected || !may('operator'), title: may('operator') ? (p.connected ? null : 'the process is not connected') : `needs role operator (you are ${me.role})`, 'data-kind': name, onclick: (ev) => { ev.stopPropagation(); capture(p, name); } }, label));
    const x = latest.get(p.id);
    const error = captureErrors.get(p.id);
    const sig = JSON.stringify([p, x && x.ts, selected === p.id, me.role, KINDS.length, error]);
    // A row is a control: Enter (or a click) opens its charts; the buttons in it stay buttons.
    const open = (ev) => { if (!ev.target.closest('button')) selectProcess(p); };
    return el('tr', { 'data-id': p.id, 'data-sig': sig, 'data-state': p.state, class: [selected === p.id ? 'selected' : '', p.state === 'blocked' ? 'blocked-row' : ''].join(' ').trim(), tabindex: 0, 'aria-selected': String(selected === p.id), title: 'Enter or click: metric charts', onclick: open, onkeydown: (ev) => { if (ev.key === 'Enter') open(ev); } },
      el('td', {}, p.app),
      el('td', {}, `${p.hostname} · ${p.pid}`),
      el('td', {}, ...Object.entries(p.labels).map(([k, v]) => el('span', { class: 'label' }, `${k}=${v}`))),
      el('td', {}, stateBadge(p)),
      metricCell(p, 'CPU', 'cpu', cpuOf, (v) => fmt1(v, '%')),
      metricCell(p, 'Heap', 'heap', heapOf, mb),
      metricCell(p, 'ELD p99', 'eld', eldOf, (v) => fmt1(v, 'ms')),
      el('td', {}, p.node_version),
      el('td', {}, ago(p.last_seen)),
      el('td', { class: 'actions' }, ...buttons, ...(error ? [el('span', { class: 'error row-error', role: 'alert' }, error)] : [])));
  }

  async function download(a) {
    const res = await api('GET', `/api/artifacts/${a.id}/download`);
    if (!res.ok) return toast(`download failed: ${res.status}`, true);
    const url = URL.createObjectURL(await res.blob());
    const link = el('a', { href: url, download: `${a.app}-${a.file_name}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function openViewer(title, { frame, body = !frame }) {
    $('#viewer-title').textContent = title;
    $('#viewer-frame').hidden = !frame;
    $('#viewer-body').hidden = !body;
    if (body) $('#viewer-body').replaceChildren();
    $('#viewer').hidden = false;
    $('#viewer').scrollIntoView({ block: 'nearest' });
  }

  /** Polls an analysis URL (202 while the hub works on it) and renders the result. */
  async function showAnalysis(title, path, render) {
    openViewer(title, { frame: false });
    const body = $('#viewer-body');
    for (;;) {
      const res = await api('GET', path);
      const data = await res.json().catch(() => ({}));
      if (res.status === 202) {
        const pct = data.total ? ` ${Math.round((100 * data.done) / data.total)}%` : '';
        body.replaceChildren(el('p', { class: 'hint' }, `Analysing… ${data.stage || data.status}${pct}`));
        await new Promise((r) => setTimeout(r, 700));
        continue;
      }
      if (!res.ok) return body.replaceChildren(el('p', { class: 'error' }, data.error || `error ${res.status}`));
      return body.replaceChildren(...render(data));
    }
  }

  const table = (head, rows, cls) => el('table', { class: cls }, el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))),
    el('tbody', {}, ...rows.map((r) => el('tr', {}, ...r.map((c) => el('td', {}, c))))));
  const signed = (n, f = (x) => x) => (n > 0 ? `+${f(n)}` : `${f(n)}`);
  const pathText = (o) => (o.path || []).map((s) => s.edge).join(' → ');

  function renderAnalysis(a) {
    const s = a.snapshot || {};
    return [
      el('p', {}, `${s.node_count ?? ''} objects, heap ${mb(s.total_size)}`),
      ...(a.leak_suspects && a.leak_suspects.length
        ? [el('h3', {}, 'Leak suspects'), el('ul', {}, ...a.leak_suspects.map((x) => el('li', {}, x.description || x.reason || JSON.stringify(x))))]
        : []),
      el('h3', {}, 'Constructors by retained size'),
      table(['Constructor', 'Count', 'Shallow', 'Retained', '%'], a.classes.slice(0, 40).map((c) =>
        [c.name, c.count, mb(c.shallow_size), mb(c.retained_size), c.retained_percent.toFixed(1)])),
      el('h3', {}, 'Largest objects'),
      table(['Object', 'Retained', 'Retainer path'], (a.largest_objects || []).slice(0, 20).map((o) =>
        [`${o.class || o.name} @${o.id}`, mb(o.retained_size), pathText(o)])),
    ];
  }

  function renderDiff(d) {
    return [
      el('p', {}, `heap ${signed(d.total_size_delta, mb)}, ${d.new_objects_count} new objects (${mb(d.new_objects_size)}), ${d.deleted_objects_count} freed`),
      table(['Constructor', 'Count Δ', 'New', 'Freed', 'Shallow Δ', 'Retained Δ'], d.classes.slice(0, 40).map((c) =>
        [c.name, signed(c.count_delta), c.new_count, c.deleted_count, signed(c.shallow_delta, mb), signed(c.retained_delta, mb)])),
    ];
  }

  async function showFlamegraph(a) {
    const path = `/api/artifacts/${a.id}/flamegraph.svg`;
    // Ask first, so an error is a message rather than an error page in the frame.
    const res = await api('HEAD', path);
    if (!res.ok) return toast(`flame graph: ${res.status}`, true);
    openViewer(`Flame graph · ${a.kind} · ${a.app}`, { frame: true });
    // The SVG is a standalone document (inferno's zoom/search script works) with its own
    // sandboxing policy from the hub; the session cookie unlocks it.
    $('#viewer-frame').src = path;
  }

  /** speedscope (bundled, same origin) loads the profile with the session cookie: no token in the URL. */
  const speedscopeUrl = (a) => `/speedscope/index.html#profileURL=${encodeURIComponent(`/api/artifacts/${a.id}/profile/${a.file_name}`)}&title=${encodeURIComponent(`${a.kind} · ${a.app} · ${a.created_at}`)}`;

  /** A differential flame graph of two profiles (red: grew) and the functions that got hotter. */
  async function showComparison(before, after) {
    const svg = `/api/artifacts/${before.id}/diff-flamegraph/${after.id}.svg`;
    openViewer(`Compare · ${before.kind} · ${before.created_at} → ${after.created_at}`, { frame: true, body: true });
    const body = $('#viewer-body');
    body.replaceChildren(el('p', { class: 'hint' }, 'Comparing…'));
    try {
      const res = await api('GET', `/api/artifacts/${before.id}/diff-functions/${after.id}`);
      const data = await res.json().catch(() => ({}));
      if (!res.ok) return body.replaceChildren(el('p', { class: 'error' }, data.error || `error ${res.status}`));
      $('#viewer-frame').src = svg;
      const pct = (x) => `${x.toFixed(1)} %`;
      body.replaceChildren(el('h3', {}, 'Hotter functions first (share of samples with the function on top)'),
        table(['Function', 'Before', 'After', 'Δ', 'Total before', 'Total after'], data.slice(0, 30).map((f) =>
          [f.function, pct(f.self_before), pct(f.self_after), signed(Number(f.self_delta.toFixed(1))), pct(f.total_before), pct(f.total_after)]), 'hotter'));
    } catch (err) {
      if (err.message !== 'unauthorized') body.replaceChildren(el('p', { class: 'error' }, err.message));
    }
  }

  /** A role too low: the button is there, disabled, and says which role it needs. */
  const needs = (role, attrs) => (may(role) ? attrs : { ...attrs, disabled: true, title: `needs role ${role} (you are ${me.role})` });

  /** Asks the hub for a one-time DevTools URL; pages can't open devtools://, so it is shown to copy. */
  async function openInDevtools(a) {
    openViewer(`DevTools · ${a.app} · ${a.created_at}`, { frame: false });
    const body = $('#viewer-body');
    try {
      const res = await api('POST', `/api/artifacts/${a.id}/devtools`);
      const data = await res.json().catch(() => ({}));
      if (!res.ok) return body.replaceChildren(el('p', { class: 'error' }, data.error || `error ${res.status}`));
      const field = el('input', { id: 'devtools-url', class: 'url', readonly: true, value: data.url, 'aria-label': 'DevTools URL' });
      body.replaceChildren(
        el('p', {}, 'Paste this URL into the address bar of Chrome (or Chromium, Edge), then press "Take snapshot" in the Memory panel: it loads this stored snapshot. The URL works once, until ', el('time', { datetime: data.expires_at, title: data.expires_at }, new Date(data.expires_at).toLocaleTimeString()), '.'),
        field,
        el('button', { onclick: () => { field.select(); navigator.clipboard.writeText(data.url).then(() => toast('Copied'), () => toast('Select the URL and copy it', true)); } }, 'Copy'));
      field.select();
    } catch (err) {
      if (err.message !== 'unauthorized') body.replaceChildren(el('p', { class: 'error' }, err.message));
    }
  }

  // --- Heap explorer: the hub keeps an index of the snapshot; the page asks for one small list at a time.
  const objectText = (n) => `${n.label} · ${mb(n.shallow_size)} shallow · ${mb(n.retained_size)} retained (${n.retained_percent.toFixed(1)} %)${n.distance == null ? '' : ` · distance ${n.distance}`}`;

  /** A tree item whose children load on the first click of its toggle (a button: keyboard-usable). */
  function treeItem(kind, attrs, label, loadChildren) {
    const list = el('ul', { class: 'tree', hidden: true });
    let loaded = false;
    const toggle = el('button', { class: 'toggle', 'aria-expanded': 'false', 'aria-label': 'expand' }, '▸');
    toggle.addEventListener('click', async () => {
      const open = list.hidden;
      list.hidden = !open;
      toggle.textContent = open ? '▾' : '▸';
      toggle.setAttribute('aria-expanded', String(open));
      if (open && !loaded) {
        loaded = true;
        list.replaceChildren(el('li', { class: 'hint' }, 'Loading…'));
        try {
          list.replaceChildren(...(await loadChildren()));
        } catch (err) {
          loaded = false;
          list.replaceChildren(el('li', { class: 'error' }, err.message));
        }
      }
    });
    return el('li', { 'data-kind': kind, ...attrs }, toggle, el('span', { class: 'tree-label' }, ...[].concat(label)), list);
  }

  async function getJson(path) {
    const res = await api('GET', path);
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.error || `error ${res.status}`);
    return data;
  }

  /** Items of a page, and a "more" item loading the next page in place. */
  function paged(page, render, next) {
    const items = page.items.map(render);
    const shown = page.offset + page.items.length;
    if (shown < page.total) {
      const more = el('li', {}, el('button', { onclick: async () => more.replaceWith(...paged(await next(shown), render, next)) }, `${page.total - shown} more…`));
      items.push(more);
    }
    if (!items.length) items.push(el('li', { class: 'hint' }, 'none'));
    return items;
  }

  function objectItem(base, n, kind = 'object', edge) {
    const label = edge ? [el('b', {}, edge.name), ` (${edge.edge_type}) ${kind === 'retainer' ? 'in' : '→'} `, objectText(n)] : [objectText(n)];
    return treeItem(kind, { 'data-node': n.node }, label, async () => {
      const d = await getJson(`${base}/nodes/${n.node}`);
      const list = (name) => (offset) => getJson(`${base}/nodes/${n.node}/${name}?offset=${offset}`);
      const retainers = treeItem('group', {}, `Retainers (${d.retainers.total})`, async () => paged(d.retainers, (r) => objectItem(base, r.node, 'retainer', r), list('retainers')));
      const refs = treeItem('group', {}, `References (${d.references.total})`, async () => paged(d.references, (r) => objectItem(base, r.node, 'reference', r), list('references')));
      const dom = treeItem('group', {}, `Keeps alive alone (${d.dominated.total})`, async () => paged(d.dominated, (c) => objectItem(base, c), list('dominated')));
      // Retainers first and open: the way up to a GC root is what a leak hunt needs.
      setTimeout(() => retainers.querySelector('.toggle').click());
      return [retainers, refs, dom];
    });
  }

  async function showExplorer(a) {
    const base = `/api/artifacts/${a.id}/heap`;
    openViewer(`Heap explorer · ${a.app} · ${a.created_at}`, { frame: false });
    const body = $('#viewer-body');
    for (;;) {
      const res = await api('GET', `${base}/classes?limit=100`);
      const data = await res.json().catch(() => ({}));
      if (res.status === 202) {
        const pct = data.total ? ` ${Math.round((100 * data.done) / data.total)}%` : '';
        body.replaceChildren(el('p', { class: 'hint' }, `Indexing the snapshot… ${data.stage}${pct}`));
        await new Promise((r) => setTimeout(r, 700));
        continue;
      }
      if (!res.ok) return body.replaceChildren(el('p', { class: 'error' }, data.error || `error ${res.status}`));
      const classItem = (c) => treeItem('class', { 'data-class': c.index }, [el('b', {}, c.name), ` ×${c.count} · ${mb(c.shallow_size)} shallow · ${mb(c.retained_size)} retained (${c.retained_percent.toFixed(1)} %)`],
        async () => paged(await getJson(`${base}/classes/${c.index}/instances`), (n) => objectItem(base, n), (offset) => getJson(`${base}/classes/${c.index}/instances?offset=${offset}`)));
      const dominators = treeItem('group', {}, 'Dominator tree (from the root)', async () => {
        const d = await getJson(`${base}/nodes/0/dominated`);
        return paged(d, (c) => objectItem(base, c), (offset) => getJson(`${base}/nodes/0/dominated?offset=${offset}`));
      });
      return body.replaceChildren(
        el('p', {}, `${data.node_count} objects, ${mb(data.total_size)} · `, data.strings_shown ? 'string contents shown (admin)' : el('span', { class: 'hint' }, 'string contents hidden: admins only')),
        el('ul', { class: 'tree', id: 'explorer' }, dominators, ...paged(data.classes, classItem, (offset) => getJson(`${base}/classes?offset=${offset}&limit=100`).then((x) => x.classes))));
    }
  }

  // Shared with console/heap.js (heap comparison and leak-report views).
  window.perfConsole = { el, api, getJson, mb, toast, treeItem, paged, objectItem, openViewer, showExplorer, needs, may, refresh: () => refresh(), role: () => me.role };

  /** A write whose outcome (or the API's error, e.g. a route this hub doesn't have yet) is shown at once. */
  async function artifactAction(method, path, done) {
    try {
      const res = await api(method, path);
      const data = await res.json().catch(() => ({}));
      if (!res.ok) return toast(`${method} ${path}: ${data.error || (res.status === 404 || res.status === 405 ? `this hub has no such route (${res.status})` : res.status)}`, true);
      toast(`Artifact ${done}`);
      refresh();
    } catch (err) {
      if (err.message !== 'unauthorized') toast(err.message, true);
    }
  }

  /** The kind, and who asked: a rule's capture is marked "auto · rule NAME" with its reason on hover. */
  function kindCell(a) {
    if (!a.trigger) return el('span', { title: a.requested_by ? `requested by ${a.requested_by}` : null }, a.kind);
    return el('span', {}, a.kind, ' ', el('span', { class: 'badge auto', 'data-rule': a.trigger.rule, title: a.trigger.reason, tabindex: 0 }, `auto · rule ${a.trigger.rule}`));
  }

  function artifactRow(a, procs, arts) {
    const p = procs.get(a.process_id);
    let status = a.status;
    if (a.progress && (a.status === 'running') && a.progress.total > 0) status += ` ${Math.round((100 * a.progress.done) / a.progress.total)}%`;
    if (a.status === 'uploading' && a.size) status += ` ${Math.round((100 * a.uploaded_bytes) / a.size)}%`;
    const details = a.error ? el('span', { class: 'error' }, a.error) : (a.notes || []).join(' ');
    const actions = [];
    if (a.status === 'ready') {
      // Raw heap snapshots hold the app's secrets: admins only.
      if (may(a.kind === 'heap_snapshot' ? 'admin' : 'operator')) actions.push(el('button', { 'data-action': 'download', onclick: () => download(a) }, 'Download'));
      if (kindOf(a.kind).flamegraph) {
        actions.push(el('button', { onclick: () => showFlamegraph(a) }, 'Flame graph'));
        actions.push(el('a', { class: 'button', href: speedscopeUrl(a), target: '_blank', rel: 'noopener' }, 'Speedscope'));
        // Compare with the previous ready profile of the same kind and app (another worker, or before a deploy).
        const prev = arts.find((b) => b.kind === a.kind && b.status === 'ready' && b.app === a.app && b.created_at < a.created_at);
        if (prev) actions.push(el('button', { onclick: () => showComparison(prev, a) }, 'Compare with previous'));
      }
      if (kindOf(a.kind).heap_analysis) {
        actions.push(el('button', { onclick: () => showExplorer(a) }, 'Explore heap'));
        // The bridge hands over the raw snapshot (it holds the app's secrets): admins only.
        actions.push(el('button', needs('admin', { onclick: () => openInDevtools(a) }), 'Open in DevTools'));
        actions.push(el('button', { onclick: () => showAnalysis(`Analysis · ${a.app} · ${a.created_at}`, `/api/artifacts/${a.id}/analysis`, renderAnalysis) }, 'Analysis'));
        // Diff against the previous ready snapshot of the same process (object ids match).
        const prev = arts.find((b) => b.kind === a.kind && b.status === 'ready' && b.process_id === a.process_id && b.created_at < a.created_at);
        if (prev) actions.push(el('button', { onclick: () => showAnalysis(`Diff · ${prev.created_at} → ${a.created_at}`, `/api/artifacts/${prev.id}/diff/${a.id}`, renderDiff) }, 'Diff with previous'));
      }
    }
    if (window.perfHeap) actions.push(...window.perfHeap.actions(a, arts));
    // Retention: pinned artifacts are kept past --retain-days / --retain-max-gb (operator); delete is admin.
    if (a.status !== 'deleted') {
      actions.push(el('button', needs('operator', { 'data-action': 'pin', onclick: () => artifactAction(a.pinned ? 'DELETE' : 'POST', `/api/artifacts/${a.id}/pin`, a.pinned ? 'unpinned' : 'pinned') }), a.pinned ? 'Unpin' : 'Pin'));
      actions.push(el('button', needs('admin', { 'data-action': 'delete', class: 'danger', onclick: () => { if (confirm(`Delete this ${a.kind} of ${a.app}? Its file is removed.`)) artifactAction('DELETE', `/api/artifacts/${a.id}`, 'deleted'); } }), 'Delete'));
    }
    if (a.pinned) actions.unshift(el('span', { class: 'badge pinned', title: 'kept past retention' }, 'pinned'));
    const sig = JSON.stringify([a, arts.length, p && p.pid, me.role]);
    return el('tr', { 'data-id': a.id, 'data-status': a.status, 'data-sig': sig },
      el('td', {}, ago(a.created_at)),
      el('td', {}, `${a.app} · ${p ? p.pid : a.process_id.slice(0, 8)}`),
      el('td', {}, kindCell(a)),
      el('td', {}, el('span', { class: `badge ${a.status}` }, status)),
      el('td', {}, mb(a.size)),
      el('td', {}, details),
      el('td', { class: 'actions' }, ...actions));
  }

  async function selectProcess(p) {
    selected = p.id;
    $('#metrics-title').textContent = `${p.app} · ${p.hostname} · ${p.pid}`;
    $('#metrics-panel').hidden = false;
    await drawMetrics();
    refresh();
  }

  // Each chart in its own unit; the axis says it (no bare "0,000").
  const UNITS = {
    bytes: (v) => mb(v),
    percent: (v) => `${Number(v.toFixed(1))} %`,
    ms: (v) => `${Number(v.toFixed(v < 10 ? 2 : 0))} ms`,
    s: (v) => `${Number(v.toFixed(1))} s`,
  };
  const SERIES = [
    ['RSS', 'bytes', (s) => (s.native && s.native.process ? s.native.process.rss_bytes : null)],
    ['Heap used', 'bytes', heapOf],
    ['CPU', 'percent', cpuOf],
    ['Event loop delay p99', 'ms', eldOf],
    ['Blocked', 's', (s) => (s.blocked_ms == null ? null : s.blocked_ms / 1000)],
  ];

  const CHART_POINTS = 600;
  /** The window the charts show: `#range` long, ending at `#range-end` (empty: now). */
  function chartWindow() {
    const ms = (Number($('#range').value) || 30) * 60 * 1000;
    const endValue = $('#range-end').value;
    const end = endValue ? Date.parse(endValue) : null;
    return { ms, until: Number.isFinite(end) ? end : null };
  }

  /** Moves the window by `dir` of its length (earlier: -1, later: +1); at or past now it follows now. */
  function shiftWindow(dir) {
    const { ms, until } = chartWindow();
    const next = (until ?? Date.now()) + dir * ms;
    $('#range-end').value = next >= Date.now() ? '' : localInput(next);
    drawMetrics();
  }
  /** A time as a datetime-local input's value (local time, minutes). */
  const localInput = (t) => { const d = new Date(t - new Date(t).getTimezoneOffset() * 60000); return d.toISOString().slice(0, 16); };

  async function drawMetrics() {
    if (!selected || typeof uPlot === 'undefined') return;
    const { ms, until } = chartWindow();
    const end = until ?? Date.now();
    const since = end - ms;
    // At most ~CHART_POINTS samples a chart (the hub keeps the first of each step): a week is not 20,000 points.
    const step = Math.max(1000, Math.round(ms / CHART_POINTS));
    const data = await all(`/api/processes/${selected}/metrics?since=${since}${until == null ? '' : `&until=${until}`}&step=${step}`).catch((err) => {
      $('#metrics-range').replaceChildren(el('span', { class: 'error' }, `metrics: ${err.message}`));
      return null;
    });
    if (!data) return;
    $('#metrics-range').replaceChildren(`${data.length} samples from `, el('time', { datetime: new Date(since).toISOString(), title: new Date(since).toISOString() }, new Date(since).toLocaleString()),
      ' to ', until == null ? 'now' : el('time', { datetime: new Date(until).toISOString(), title: new Date(until).toISOString() }, new Date(until).toLocaleString()));
    const xs = data.map((s) => s.ts / 1000);
    charts.forEach((c) => c.destroy());
    const width = Math.max(280, Math.min(400, ($('#charts').clientWidth - 48) / 3));
    charts = SERIES.map(([label, unit, f]) => {
      const ys = data.map((s) => { const v = f(s); return v == null || Number.isNaN(v) ? null : v; });
      const last = ys.filter((v) => v != null).pop();
      return new uPlot({
        title: `${label}${last == null ? '' : ` · ${UNITS[unit](last)}`}`, width, height: 170,
        // Gaps (a sample without that figure) are bridged; single points are drawn as dots.
        series: [{}, { label, stroke: '#2f6fd6', spanGaps: true, points: { show: ys.length < 60 }, value: (u, v) => (v == null ? '' : UNITS[unit](v)) }],
        axes: [{}, { size: 70, values: (u, vals) => vals.map((v) => UNITS[unit](v)) }],
        scales: { x: { range: () => [since / 1000, end / 1000] }, y: { range: (u, min, max) => [Math.min(0, min ?? 0), max > 0 ? max * 1.1 : 1] } },
        legend: { show: false },
        // One cursor across the charts: the same moment in every figure.
        cursor: { sync: { key: 'perf-metrics' } },
      }, [xs, ys], $('#charts'));
    });
    $('#metrics-empty').hidden = data.length > 0;
  }

  // --- Operations: rules, tokens, audit. Each panel says why when the role can't use it.
  function roleNote(role, what) {
    return el('p', { class: 'hint' }, `${what} needs role ${role} (you are ${me.role}).`);
  }

  function apiError(res, data) {
    if (res.status === 404 || res.status === 405) return `this hub does not serve this route yet (${res.status})`;
    return data.error || `error ${res.status}`;
  }

  /** A rule's trigger as a sentence. */
  function whenText(w) {
    if (w.blocked_ms != null) return `event loop blocked ≥ ${w.blocked_ms} ms`;
    if (w.heap_used_ratio != null) return `heap used ≥ ${Math.round(w.heap_used_ratio * 100)} % of its limit`;
    if (w.rss_bytes != null) return `RSS ≥ ${mb(w.rss_bytes)}`;
    if (w.cpu_percent != null) return `CPU ≥ ${w.cpu_percent} % for ${w.for_secs} s`;
    return JSON.stringify(w);
  }
  const captureText = (c) => `${c.kind}${c.seconds ? ` ${c.seconds} s` : ''}`;

  /** Scrolls to an artifact's row and marks it for a moment. */
  function showArtifact(id) {
    const row = document.querySelector(`#artifacts tr[data-id="${id}"]`);
    if (!row) return toast('That capture is not in the newest 50 artifacts.', true);
    row.scrollIntoView({ block: 'center' });
    row.classList.add('flash');
    setTimeout(() => row.classList.remove('flash'), 3000);
  }

  /** When the rule last took a capture (relative, absolute and the reason on hover), and a way to it. */
  function lastFiredCell(r) {
    const f = r.last_fired;
    if (!f) return el('span', { class: 'hint', 'data-last-fired': '' }, 'never');
    return el('span', { 'data-last-fired': f.at, title: `${new Date(f.at).toLocaleString()}: ${f.reason}` }, ago(f.at), ' ',
      el('button', { 'data-action': 'show-artifact', onclick: () => showArtifact(f.artifact) }, 'Show capture'));
  }

  let rulesSig = '';
  async function loadRules() {
    const box = $('#rules-body');
    // Rules are an operator's: a viewer is told so, and the page does not ask.
    if (!may('operator')) return box.replaceChildren(roleNote('operator', 'Seeing and changing capture rules'));
    const res = await api('GET', '/api/rules');
    const data = await res.json().catch(() => ({}));
    if (!res.ok) return box.replaceChildren(el('p', { class: 'error' }, `Rules: ${apiError(res, data)}`));
    const rules = Array.isArray(data) ? data : data.rules || [];
    const sig = JSON.stringify(rules);
    // Unchanged: only the relative times move (a table replaced under the pointer swallows a click).
    if (sig === rulesSig && box.querySelector('table')) return box.querySelectorAll('time').forEach((t) => { t.textContent = agoText(t.dateTime); });
    rulesSig = sig;
    const rows = rules.map((r) => [
      r.name, whenText(r.when), captureText(r.capture), [(r.apps || []).join(', ') || 'all apps', ...Object.entries(r.labels || {}).map(([k, v]) => `${k}=${v}`)].join(' · '), `${r.cooldown_secs} s`, lastFiredCell(r),
      r.source === 'config' ? el('span', { class: 'hint', title: 'remove it from the hub\'s config file' }, 'config file')
        : el('span', {}, el('button', { 'data-action': 'delete-rule', class: 'danger', onclick: (ev) => deleteRule(r.name, ev.target) }, 'Delete'), el('span', { class: 'error row-error' }))]);
    box.replaceChildren(rows.length ? table(['Name', 'When', 'Capture', 'Applies to', 'Cooldown', 'Last fired', ''], rows, 'rules')
      : el('p', { class: 'hint' }, 'No rules yet: add one below, and a stall or a near-OOM is captured while it happens, with nobody at the console.'));
    box.querySelectorAll('table.rules tbody tr').forEach((tr, i) => tr.setAttribute('data-rule', rules[i].name));
  }

  async function deleteRule(name, button) {
    const res = await api('DELETE', `/api/rules/${encodeURIComponent(name)}`);
    const data = await res.json().catch(() => ({}));
    // The error goes next to the button that was pressed.
    if (!res.ok) { button.nextElementSibling.textContent = apiError(res, data); return; }
    toast(`Rule ${name} deleted`);
    loadRules();
  }

  /** The rule form: a trigger and a capture, validated by the hub. */
  async function addRule(ev) {
    ev.preventDefault();
    const f = ev.target;
    const trigger = f.trigger.value;
    const value = Number(f.threshold.value);
    const when = trigger === 'cpu_percent' ? { cpu_percent: value, for_secs: Number(f.for_secs.value) || 10 } : { [trigger]: value };
    const capture = { kind: f.capture.value, ...(kindOf(f.capture.value).timed ? { seconds: Number(f.rule_seconds.value) || 5 } : {}) };
    const body = { name: f.rule_name.value.trim(), when, capture, ...(f.rule_apps.value.trim() ? { apps: f.rule_apps.value.split(',').map((x) => x.trim()).filter(Boolean) } : {}) };
    const res = await api('POST', '/api/rules', body);
    const data = await res.json().catch(() => ({}));
    const msg = $('#rule-error');
    if (!res.ok) { msg.textContent = apiError(res, data); return; }
    msg.textContent = '';
    f.reset();
    ruleTriggerChanged();
    toast(`Rule ${body.name} added`);
    loadRules();
  }

  async function loadTokens() {
    const box = $('#tokens-body');
    if (!may('admin')) return box.replaceChildren(roleNote('admin', 'Managing tokens'));
    const res = await api('GET', '/api/tokens');
    const data = await res.json().catch(() => ({}));
    if (!res.ok) return box.replaceChildren(el('p', { class: 'error' }, `Tokens: ${apiError(res, data)}`));
    const rows = data.map((t) => [t.name, t.role, t.apps.join(', ') || 'all', ago(t.created_at), t.expires_at ? el('time', { datetime: t.expires_at, title: t.expires_at }, new Date(t.expires_at).toLocaleString()) : 'never',
      t.revoked_at ? el('span', { class: 'badge failed' }, 'revoked') : el('button', { 'data-action': 'revoke', onclick: () => revokeToken(t.name) }, 'Revoke')]);
    box.replaceChildren(rows.length ? table(['Name', 'Role', 'Apps', 'Created', 'Expires', ''], rows, 'tokens') : el('p', { class: 'hint' }, 'No tokens yet (only the bootstrap token).'));
  }

  async function revokeToken(name) {
    if (!confirm(`Revoke token ${name}? It stops working at once.`)) return;
    const res = await api('DELETE', `/api/tokens/${encodeURIComponent(name)}`);
    const data = await res.json().catch(() => ({}));
    if (!res.ok) return toast(`revoke ${name}: ${apiError(res, data)}`, true);
    toast(`Token ${name} revoked`);
    loadTokens();
  }

  async function createToken(ev) {
    ev.preventDefault();
    const f = ev.target;
    const body = { name: f.token_name.value.trim(), role: f.token_role.value, apps: f.token_apps.value.split(',').map((x) => x.trim()).filter(Boolean), ...(f.token_days.value ? { expires_days: Number(f.token_days.value) } : {}) };
    const res = await api('POST', '/api/tokens', body);
    const data = await res.json().catch(() => ({}));
    const out = $('#token-created');
    if (!res.ok) return out.replaceChildren(el('span', { class: 'error' }, apiError(res, data)));
    f.reset();
    // Shown once: the hub keeps only its hash.
    out.replaceChildren(el('p', {}, `Token ${data.name} (${data.role}) — copy it now, it is not shown again:`), el('input', { id: 'new-token', class: 'url', readonly: true, value: data.token }));
    loadTokens();
  }

  let auditRows = [];
  async function loadAudit() {
    const box = $('#audit-body');
    if (!may('admin')) return box.replaceChildren(roleNote('admin', 'The audit trail'));
    const res = await api('GET', '/api/audit?limit=1000');
    const data = await res.json().catch(() => ({}));
    if (!res.ok) return box.replaceChildren(el('p', { class: 'error' }, `Audit: ${apiError(res, data)}`));
    auditRows = data;
    renderAudit();
  }

  function renderAudit() {
    const who = $('#audit-who').value.trim().toLowerCase();
    const what = $('#audit-what').value.trim().toLowerCase();
    const app = $('#audit-app').value.trim().toLowerCase();
    const rows = auditRows.filter((e) => e.actor.toLowerCase().includes(who) && e.action.toLowerCase().includes(what) && (!app || JSON.stringify(e.detail).toLowerCase().includes(app) || e.target.toLowerCase().includes(app)));
    $('#audit-body').replaceChildren(rows.length ? table(['When', 'Who', 'What', 'Target', 'Result', 'Detail'], rows.slice(0, 300).map((e) => [ago(e.ts), e.actor, e.action, e.target, e.result, JSON.stringify(e.detail)]), 'audit') : el('p', { class: 'hint' }, 'No audit entries match.'));
  }

  // Per trigger: the threshold's unit and the capture that suits it (the hub's defaults: a CPU
  // profile for a stall or hot CPU, a heap sampling profile — cheap, no pause — near an OOM).
  const TRIGGER_FORM = {
    blocked_ms: ['ms blocked, e.g. 1000', 'cpu_profile'],
    heap_used_ratio: ['ratio, e.g. 0.8', 'heap_sampling'],
    rss_bytes: ['bytes, e.g. 2000000000', 'heap_sampling'],
    cpu_percent: ['% (100 = one core)', 'cpu_profile'],
  };
  function ruleTriggerChanged() {
    const f = $('#rule-form');
    const [hint, kind] = TRIGGER_FORM[f.trigger.value] || ['threshold', ''];
    f.threshold.placeholder = hint;
    f.for_secs.hidden = f.trigger.value !== 'cpu_percent';
    if ([...f.capture.options].some((o) => o.value === kind)) f.capture.value = kind;
  }

  function loadOperations() {
    $('#rule-form').hidden = !may('operator');
    $('#rule-role').replaceChildren(...(may('operator') ? [] : [roleNote('operator', 'Adding and deleting rules')]));
    $('#token-form').hidden = !may('admin');
    $('#audit-filters').hidden = !may('admin');
    const caps = KINDS.filter((k) => k.name !== 'leak_hunt').map((k) => el('option', { value: k.name }, k.label));
    if (!$('#rule-form').capture.options.length) {
      $('#rule-form').capture.append(...caps);
      ruleTriggerChanged();
    }
    loadRules().catch(() => {});
    loadTokens().catch(() => {});
    loadAudit().catch(() => {});
  }

  /**
   * Puts `rows` (each with data-id and data-sig) into `tbody`, touching only rows whose data
   * changed: a row replaced under the pointer would swallow a click. Times are updated in place.
   */
  function patchRows(tbody, rows) {
    const old = [...tbody.children];
    const sameOrder = old.length === rows.length && old.every((r, i) => r.dataset.id === rows[i].dataset.id);
    if (!sameOrder) return tbody.replaceChildren(...rows);
    rows.forEach((row, i) => {
      if (old[i].dataset.sig !== row.dataset.sig) return old[i].replaceWith(row);
      const [a, b] = [old[i].querySelectorAll('time'), row.querySelectorAll('time')];
      a.forEach((t, k) => { if (b[k] && t.textContent !== b[k].textContent) t.textContent = b[k].textContent; });
    });
  }

  const EMPTY_PROCESSES = 'No processes yet — start an app with the agent: PERF_AGENT_HUB=HOST:7070 PERF_AGENT_APP=NAME PERF_AGENT_SECRET=… node -r @corp/perf-agent/register app.js (the hub needs --app NAME:SECRET; see the README).';

  // One refresh at a time; a refresh asked for meanwhile runs once after it.
  let refreshing = null;
  let refreshAgain = false;
  function refresh() {
    if (refreshing) { refreshAgain = true; return refreshing; }
    refreshing = refreshOnce().finally(() => {
      refreshing = null;
      if (refreshAgain) { refreshAgain = false; refresh(); }
    });
    return refreshing;
  }

  let rulesAt = 0;
  async function refreshOnce() {
    if (!signedIn) return;
    try {
      if (!KINDS.length) KINDS = (await json('GET', '/api/capture-kinds')).data;
      const [procs, { data: arts }] = await Promise.all([all('/api/processes'), json('GET', '/api/artifacts?limit=50')]);
      const filtered = procs.filter(matchesFilter);
      await refreshRecent(filtered);
      // Blocked processes first, whatever the sort: they are what an operator looks for.
      const order = SORTS[$('#proc-sort').value] || SORTS.last_seen; // the API pages in id order
      const shown = filtered.sort((a, b) => (b.state === 'blocked') - (a.state === 'blocked') || order(a, b));
      $('#login').hidden = true;
      $('#main').hidden = false;
      $('#logout').hidden = false;
      const byId = new Map(procs.map((p) => [p.id, p]));
      patchRows($('#processes tbody'), shown.map(processRow));
      $('#processes-empty').textContent = procs.length === 0 ? EMPTY_PROCESSES : shown.length === 0 ? 'No process matches the filter.' : '';
      $('#artifacts-empty').textContent = arts.length === 0 ? `No artifacts yet: ${may('operator') ? 'take a capture with the buttons above, or add a rule below to capture automatically' : 'an operator takes captures, or a rule does'}.` : '';
      patchRows($('#artifacts tbody'), arts.map((a) => artifactRow(a, byId, arts)));
      const connected = procs.filter((p) => p.connected).length;
      const blocked = procs.filter((p) => p.state === 'blocked').length;
      $('#summary').textContent = `${connected} connected${blocked ? ` · ${blocked} blocked` : ''} · ${procs.length - connected} disconnected · ${arts.length} artifacts`;
      // The rules' "last fired" follows the captures they take.
      if (Date.now() - rulesAt > 5000) { rulesAt = Date.now(); loadRules().catch(() => {}); }
    } catch (err) {
      if (err.message !== 'unauthorized') toast(`refresh failed: ${err.message}`, true);
    }
  }

  async function showSignedIn(who) {
    signedIn = true;
    me = who;
    $('#whoami').textContent = `${who.name} (${who.role}${who.apps ? `: ${who.apps.join(', ')}` : ''})`;
    await refresh();
    loadOperations();
  }

  $('#login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const field = $('#token');
    const res = await fetch('/api/session', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: field.value.trim() }),
    });
    field.value = ''; // the cookie stands for it from now on
    const data = await res.json().catch(() => ({}));
    if (!res.ok) return toast(res.status === 401 ? 'Wrong or missing token.' : data.error || `sign-in: ${res.status}`, true);
    showSignedIn(data);
  });
  $('#logout').addEventListener('click', async () => {
    signedIn = false;
    await fetch('/api/session', { method: 'DELETE', credentials: 'same-origin' }).catch(() => {});
    $('#whoami').textContent = '';
    showLogin();
  });
  $('#viewer-close').addEventListener('click', () => { $('#viewer').hidden = true; });
  $('#proc-filter').addEventListener('input', () => refresh());
  $('#proc-sort').addEventListener('change', () => refresh());
  $('#range').addEventListener('change', () => drawMetrics());
  $('#range-end').addEventListener('change', () => drawMetrics());
  $('#range-earlier').addEventListener('click', () => shiftWindow(-1));
  $('#range-later').addEventListener('click', () => shiftWindow(1));
  $('#range-now').addEventListener('click', () => { $('#range-end').value = ''; drawMetrics(); });
  $('#rule-form').addEventListener('submit', addRule);
  $('#rule-form').trigger.addEventListener('change', ruleTriggerChanged);
  $('#token-form').addEventListener('submit', createToken);
  for (const id of ['#audit-who', '#audit-what', '#audit-app']) $(id).addEventListener('input', renderAudit);
  $('#ops-refresh').addEventListener('click', () => loadOperations());
  // Already signed in (a cookie from before)? Otherwise show the sign-in form.
  fetch('/api/session', { credentials: 'same-origin' })
    .then(async (res) => (res.ok ? showSignedIn(await res.json()) : showLogin()))
    .catch(() => showLogin());
  setInterval(refresh, 2000);
  // Charts of a window ending now follow it; a window in the past stays put.
  setInterval(() => { if (!$('#range-end').value) drawMetrics(); }, 10000);
})();
