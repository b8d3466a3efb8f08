// perf-hub console: the heap views that span snapshots (issues 13 and 14).
//  - "Compare with…" on a heap snapshot: DevTools' Comparison view, served by the hub from both
//    snapshots' explorer indexes (GET /api/artifacts/{id}/heap/compare/{base}): per constructor
//    new / deleted / deltas, each expandable to its new instances and, through the explorer's
//    tree, each instance's retainers up to a GC root.
//  - "Leak report" on a leak hunt's `leak_report` artifact: its state (running with progress,
//    done, failed with the reason, cancelled), the suspects ranked with their growth over the
//    snapshots, the retainer path of a new object, links to each snapshot in the explorer, and
//    Cancel for a running hunt (operator).
// It uses the helpers app.js shares as `window.perfConsole` and answers `window.perfHeap.actions`
// with the buttons of one artifact row.
(() => {
  'use strict';
  const C = () => window.perfConsole;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  /** `script 12, line 3, col 7` for a constructor defined in more than one place. */
  const where = (loc) => (loc ? ` (script ${loc.script_id}, line ${loc.line}, col ${loc.column})` : '');
  const signedCount = (n) => (n > 0 ? `+${n}` : `${n}`);
  const signedSize = (n) => (n > 0 ? `+${C().mb(n)}` : C().mb(n));

  /** The buttons heap.js adds to an artifact's row. */
  function actions(a, arts) {
    const { el } = C();
    const out = [];
    if (a.kind === 'heap_snapshot' && a.status === 'ready') {
      const others = arts.filter((b) => b.id !== a.id && b.kind === 'heap_snapshot' && b.status === 'ready' && b.app === a.app);
      if (others.length) out.push(el('button', { 'data-action': 'compare-heap', onclick: () => pickBase(a, others) }, 'Compare with…'));
    }
    if (a.kind === 'leak_report') out.push(el('button', { 'data-action': 'leak-report', onclick: () => showLeakReport(a) }, 'Leak report'));
    return out;
  }

  /** Asks which snapshot to compare with: the previous one of the same process is the default. */
  function pickBase(a, others) {
    const { el, openViewer } = C();
    openViewer(`Compare heap snapshots · ${a.app} · ${a.created_at}`, { frame: false });
    const body = document.querySelector('#viewer-body');
    const sorted = [...others].sort((x, y) => (x.created_at < y.created_at ? 1 : -1));
    const preferred = sorted.find((b) => b.process_id === a.process_id && b.created_at < a.created_at) || sorted[0];
    const select = el('select', { id: 'compare-base', 'aria-label': 'base snapshot' },
      ...sorted.map((b) => el('option', { value: b.id, selected: b === preferred }, `${new Date(b.created_at).toLocaleString()} · ${b.process_id === a.process_id ? 'same process' : `process ${b.process_id.slice(0, 8)}`} · ${C().mb(b.size)}`)));
    const go = el('button', { id: 'compare-go', onclick: () => showCompare(a, sorted.find((b) => b.id === select.value)) }, 'Compare');
    body.replaceChildren(el('p', {}, 'Objects new in this snapshot since the base (by V8 object id), per constructor.'),
      el('label', { class: 'inline' }, 'Base snapshot ', select), ' ', go);
  }

  /** Polls `path` while the hub answers 202 (indexes being built), showing `progress(data)`. */
  async function untilReady(path, body, progress) {
    const { api, el } = C();
    for (;;) {
      const res = await api('GET', path);
      const data = await res.json().catch(() => ({}));
      if (res.status === 202) {
        body.replaceChildren(el('p', { class: 'hint', id: 'compare-progress' }, progress(data)));
        await sleep(700);
        continue;
      }
      if (!res.ok) throw new Error(data.error || `error ${res.status}`);
      return data;
    }
  }

  const stageText = (s) => `${s.artifact.slice(0, 8)}: ${s.stage}${s.total ? ` ${Math.round((100 * s.done) / s.total)}%` : ''}`;

  async function showCompare(a, base) {
    const { el, openViewer, treeItem, paged, objectItem, getJson, mb } = C();
    openViewer(`Heap comparison · ${a.app} · ${base.created_at} → ${a.created_at}`, { frame: false });
    const body = document.querySelector('#viewer-body');
    const path = `/api/artifacts/${a.id}/heap/compare/${base.id}`;
    let data;
    try {
      data = await untilReady(`${path}?limit=100`, body, (d) => `Indexing both snapshots… ${(d.snapshots || []).map(stageText).join(' · ')}`);
    } catch (err) {
      if (err.message !== 'unauthorized') body.replaceChildren(el('p', { class: 'error' }, err.message));
      return;
    }
    const explorer = `/api/artifacts/${a.id}/heap`;
    const row = (r) => treeItem('compare-class', { 'data-class': r.index, 'data-name': r.name },
      [el('b', {}, r.name), where(r.location),
        ` · new ${r.new_count} (${mb(r.new_size)}) · deleted ${r.deleted_count} (${mb(r.deleted_size)}) · Δ ${signedCount(r.count_delta)} · size Δ ${signedSize(r.size_delta)}`],
      async () => {
        const next = (offset) => getJson(`${path}/classes/${r.index}/new?offset=${offset}`);
        return paged(await next(0), (n) => objectItem(explorer, n), next);
      });
    body.replaceChildren(
      el('p', {}, `heap ${signedSize(data.total_size_delta)} · ${data.new_count} new objects (${mb(data.new_size)}) · ${data.deleted_count} deleted (${mb(data.deleted_size)})`),
      data.same_process ? '' : el('p', { class: 'error' }, 'These snapshots are of two processes: V8 object ids only match within one, so every object counts as new.'),
      el('p', { class: 'hint' }, 'Largest size growth first; expand a constructor to its new instances, an instance to its retainers.'),
      el('ul', { class: 'tree', id: 'heap-compare' }, ...paged(data.classes, row, (offset) => getJson(`${path}?offset=${offset}&limit=100`).then((x) => x.classes))));
  }

  // --- Leak report ---------------------------------------------------------------------------

  /** Inline bars of `values` (one per snapshot), highest = full height; `format` for the titles. */
  function bars(values, format, cls) {
    const ns = 'http://www.w3.org/2000/svg';
    const w = 14, gap = 4, h = 28;
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('class', `growth ${cls}`);
    svg.setAttribute('width', String(values.length * (w + gap)));
    svg.setAttribute('height', String(h));
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', values.map(format).join(' → '));
    const max = Math.max(1, ...values);
    values.forEach((v, i) => {
      const bh = Math.max(1, Math.round((h * v) / max));
      const r = document.createElementNS(ns, 'rect');
      for (const [k, x] of Object.entries({ x: i * (w + gap), y: h - bh, width: w, height: bh })) r.setAttribute(k, String(x));
      const t = document.createElementNS(ns, 'title');
      t.textContent = `snapshot ${i + 1}: ${format(v)}`;
      r.append(t);
      svg.append(r);
    });
    return svg;
  }

  function stateLine(a) {
    const { el } = C();
    if (a.status === 'running' || a.status === 'pending') {
      const p = a.progress || {};
      return el('p', { class: 'leak-state', 'data-state': 'running' }, `Running: ${p.done || 0} of ${p.total || (a.params && a.params.snapshots) || '?'} snapshots taken`,
        a.params && a.params.interval_secs ? `, ${a.params.interval_secs} s apart` : '', '; the report follows the last one.');
    }
    if (a.status === 'failed') {
      const cancelled = /^cancelled/.test(a.error || '');
      return el('p', { class: cancelled ? 'leak-state hint' : 'leak-state error', 'data-state': cancelled ? 'cancelled' : 'failed' }, cancelled ? `C${a.error.slice(1)}; the snapshots taken are kept.` : `Failed: ${a.error || 'no reason given'}`);
    }
    if (a.status === 'deleted') return el('p', { class: 'leak-state hint', 'data-state': 'deleted' }, 'Deleted.');
    return el('p', { class: 'leak-state', 'data-state': 'done' }, 'Done.');
  }

  /** Buttons opening each snapshot of the hunt in the explorer. */
  async function snapshotLinks(ids) {
    const { el, getJson, showExplorer } = C();
    const records = await Promise.all(ids.map((id) => getJson(`/api/artifacts/${id}`).catch(() => null)));
    return el('p', { class: 'leak-snapshots' }, 'Snapshots: ', ...records.map((s, i) => (s
      ? el('button', { 'data-snapshot': s.id, onclick: () => showExplorer(s) }, `${i + 1} · ${new Date(s.created_at).toLocaleTimeString()}`)
      : el('span', { class: 'hint' }, `${i + 1} · gone `))));
  }

  function suspectItem(s, i) {
    const { el, mb } = C();
    const counts = s.counts || [];
    const retained = s.retained || [];
    return el('li', { class: 'suspect', 'data-name': s.name },
      el('h4', {}, `${i + 1}. `, el('b', {}, s.name), where(s.location), ` · ${s.new_objects} new objects`),
      el('div', { class: 'growth-row' },
        el('span', { class: 'growth-label' }, 'count'), bars(counts, String, 'counts'), el('span', {}, counts.join(' → ')),
        el('span', { class: 'growth-label' }, 'retained'), bars(retained, mb, 'retained'), el('span', {}, retained.map(mb).join(' → '))),
      s.retainer_path && s.retainer_path.length
        ? el('div', {}, el('span', { class: 'growth-label' }, 'held by (from a GC root down to a new object):'),
          el('ol', { class: 'retainer-path', 'aria-label': 'retainer path from a GC root' }, ...s.retainer_path.map((step) => el('li', {}, step))))
        : el('p', { class: 'hint' }, 'No retainer path (no new object of this class was reachable).'));
  }

  async function renderReport(a, body) {
    const { el, needs, may, api } = C();
    const parts = [stateLine(a)];
    const running = a.status === 'running' || a.status === 'pending';
    if (running) {
      parts.push(el('button', needs('operator', { id: 'leak-cancel', class: 'danger', onclick: () => cancel(a, body) }), 'Cancel hunt'));
    }
    const taken = (a.progress && a.progress.snapshots) || [];
    if (a.status !== 'ready') {
      if (taken.length) parts.push(await snapshotLinks(taken));
      return body.replaceChildren(...parts);
    }
    if (!may('operator')) {
      parts.push(el('p', { class: 'hint', id: 'leak-role' }, `Reading a report's contents needs role operator (you are ${C().role()}).`));
      return body.replaceChildren(...parts);
    }
    const res = await api('GET', `/api/artifacts/${a.id}/download`);
    const report = await res.json().catch(() => null);
    if (!res.ok || !report) return body.replaceChildren(...parts, el('p', { class: 'error' }, (report && report.error) || `report: error ${res.status}`));
    parts.push(await snapshotLinks(report.snapshots || []));
    const suspects = report.suspects || [];
    parts.push(el('h3', {}, 'Suspects, steadiest grower first'));
    parts.push(suspects.length
      ? el('ol', { class: 'suspects', id: 'leak-suspects' }, ...suspects.map(suspectItem))
      : el('p', { class: 'hint', id: 'leak-suspects' }, 'No class grew in count and retained size at every step: no leak suspect.'));
    body.replaceChildren(...parts);
  }

  async function cancel(a, body) {
    const { api, toast } = C();
    try {
      const res = await api('POST', `/api/artifacts/${a.id}/cancel`);
      const data = await res.json().catch(() => ({}));
      if (!res.ok) return toast(`cancel: ${data.error || res.status}`, true);
      toast('Leak hunt cancelled');
      await renderReport(data.artifact, body);
      C().refresh();
    } catch (err) {
      if (err.message !== 'unauthorized') toast(err.message, true);
    }
  }

  async function showLeakReport(a) {
    const { el, openViewer, getJson } = C();
    const title = `Leak report · ${a.app} · ${a.created_at}`;
    openViewer(title, { frame: false });
    const body = document.querySelector('#viewer-body');
    // While the hunt runs, follow it — until the viewer is closed or shows something else.
    const shown = () => !document.querySelector('#viewer').hidden && document.querySelector('#viewer-title').textContent === title;
    try {
      for (let cur = await getJson(`/api/artifacts/${a.id}`); shown(); cur = await getJson(`/api/artifacts/${a.id}`)) {
        await renderReport(cur, body);
        if (cur.status !== 'running' && cur.status !== 'pending') return;
        await sleep(1000);
      }
    } catch (err) {
      if (err.message !== 'unauthorized') body.replaceChildren(el('p', { class: 'error' }, err.message));
    }
  }

  window.perfHeap = { actions, showCompare, showLeakReport };
})();
