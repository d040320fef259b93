// Wiring: one store (the URL), one stream per server view, the map, the
// table, the panels, the filter bar and the health of the pipeline.

import { BadRequest, Unauthorized, download, getJson, setToken, stream } from './api';
import { byId, el, rate } from './dom';
import { MapView } from './map';
import { edgePanel, flowDetail, nodePanel } from './panel';
import { serverQuery, Store, type View } from './store';
import { MAX_ROWS, Table } from './table';
import type { FlowRow, MapEdge, MapNode, Message } from './types';

const store = new Store();
const nodes = new Map<string, MapNode>();
const edges = new Map<string, MapEdge>();
let namespaces: string[] = [];
let last: Message | null = null;
let paused = false;
let pending: FlowRow[] = [];
let pendingSkipped = 0;
let uiLost: string | null = null;
/** Flows per second of the selected edge, one value per message. */
let edgeHistory: number[] = [];

const filterInput = byId<HTMLInputElement>('filter-input');
const filterError = byId('filter-error');
const banner = byId('banner');
const badges = byId('badges');
const panel = byId('panel');
const detail = byId('detail');
const unitSelect = byId<HTMLSelectElement>('unit');
const lastSelect = byId<HTMLSelectElement>('last');
const problems = byId<HTMLInputElement>('problems');
const pauseButton = byId<HTMLButtonElement>('pause');

const map = new MapView(byId('map'), {
  node: (id) => store.select({ node: id }),
  edge: (from, to) => store.select({ from, to }),
  background: () => store.select({}),
  namespace: (ns) => toggleCollapsed(ns),
});

const table = new Table({
  filter: (flag, not) => {
    const current = store.view.filter.trim();
    const next = `${current} ${not ? '--not ' : ''}${flag}`.trim();
    store.set({ filter: next });
  },
  detail: (row) => void showDetail(row),
  view: (change) => store.set(change),
});

async function showDetail(row: FlowRow): Promise<void> {
  const close = () => { detail.hidden = true; };
  try {
    flowDetail(detail, row, await getJson<unknown>(`/api/flows/${row.seq}`), close);
  } catch (e) {
    flowDetail(detail, row, `Every field: ${(e as Error).message}`, close);
  }
}

// Filter bar: the flags of lumen observe, checked by the server.
byId<HTMLFormElement>('filter-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  store.set({ filter: filterInput.value.trim() });
});
unitSelect.addEventListener('change', () => store.set({ unit: unitSelect.value, node: '', from: '', to: '' }));
lastSelect.addEventListener('change', () => store.set({ last: lastSelect.value }));

/** Shows `last` in the time picker, adding it if the URL asked for another. */
function showLast(last: string): void {
  if (![...lastSelect.options].some((o) => o.value === last)) {
    const option = el('option', {}, `last ${last}`);
    option.value = last;
    lastSelect.append(option);
  }
  lastSelect.value = last;
}
problems.addEventListener('change', () => store.set({ problems: problems.checked }));
pauseButton.addEventListener('click', () => {
  paused = !paused;
  pauseButton.textContent = paused ? 'Resume' : 'Pause';
  if (!paused) {
    table.append(pending);
    pending = [];
    pendingSkipped = 0;
    render();
  }
  renderHealth();
});

for (const [id, file] of [
  ['export-edges-json', 'edges.json'],
  ['export-edges-csv', 'edges.csv'],
  ['export-flows-json', 'flows.json'],
  ['export-flows-csv', 'flows.csv'],
] as const) {
  byId(id).addEventListener('click', (ev) => {
    ev.preventDefault();
    void download(`/api/export/${file}?${serverQuery(store.view)}`, `lumen-${file}`);
  });
}

byId<HTMLFormElement>('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  setToken(byId<HTMLInputElement>('token-input').value.trim());
  byId('token-form').hidden = true;
  connect();
});

function nsPicker(): void {
  const chosen = store.view.ns;
  const list = byId('ns-list');
  byId('ns-summary').textContent = chosen.length ? chosen.join(', ') : 'all';
  list.replaceChildren(
    ...namespaces.map((ns) => {
      const box = el('input');
      box.type = 'checkbox';
      box.value = ns;
      box.checked = chosen.length === 0 || chosen.includes(ns);
      box.addEventListener('change', () => {
        const boxes = [...list.querySelectorAll<HTMLInputElement>('input')];
        const on = boxes.filter((b) => b.checked).map((b) => b.value);
        store.set({ ns: on.length === boxes.length ? [] : on, node: '', from: '', to: '' });
      });
      const collapsed = store.view.collapsed.includes(ns);
      const fold = el('button', { data: { collapse: ns } }, collapsed ? 'expand' : 'collapse');
      fold.type = 'button';
      fold.addEventListener('click', () => toggleCollapsed(ns));
      return el('div', {}, el('label', {}, box, ` ${ns} `), fold);
    }),
  );
}

function toggleCollapsed(ns: string): void {
  const c = store.view.collapsed;
  store.set({ collapsed: c.includes(ns) ? c.filter((n) => n !== ns) : [...c, ns] });
}

function peerPicker(): void {
  const peers = [...nodes.values()].filter((n) => ['reserved', 'world', 'ip'].includes(n.kind));
  byId('peer-list').replaceChildren(
    ...peers.map((n) => {
      const box = el('input');
      box.type = 'checkbox';
      box.checked = !store.view.hide.includes(n.id);
      box.addEventListener('change', () => {
        const hide = store.view.hide.filter((h) => h !== n.id);
        store.set({ hide: box.checked ? hide : [...hide, n.id] });
      });
      return el('label', {}, box, ` ${n.label}`, el('br'));
    }),
  );
}

function label(id: string): string {
  return nodes.get(id)?.label ?? id.split('|').slice(2).join('|');
}

function renderPanel(view: View): void {
  const close = () => store.select({});
  if (view.node) {
    const n = nodes.get(view.node);
    if (!n) return;
    const hideable = ['reserved', 'world', 'ip'].includes(n.kind);
    nodePanel(panel, n, close, hideable ? () => store.set({ hide: [...view.hide, n.id], node: '' }) : null);
  } else if (view.from && view.to) {
    const e = [...edges.values()].find((x) => x.source === view.from && x.target === view.to);
    if (!e) return;
    edgePanel(panel, e, { source: label(e.source), target: label(e.target) }, edgeHistory, close);
  } else {
    panel.hidden = true;
  }
  const title = byId('table-title');
  if (view.node) title.textContent = `Flows of ${label(view.node)}`;
  else if (view.from) title.textContent = `Flows of ${label(view.from)} → ${label(view.to)}`;
  else title.textContent = 'Flows';
}

function render(): void {
  const view = store.view;
  map.render(nodes, edges, view);
  renderPanel(view);
  peerPicker();
}

function badge(text: string, kind: 'ok' | 'warn' | 'bad', testid: string): HTMLElement {
  return el('span', { class: `badge ${kind}`, data: { testid } }, text);
}

function renderHealth(): void {
  const h = last?.health;
  let text = '';
  let warn = false;
  if (uiLost) {
    text = `Lost the connection to lumen-ui (${uiLost}): retrying…`;
  } else if (h?.link.state === 'reconnecting') {
    text = `Disconnected from the server: ${h.link.reason}. Reconnecting…`;
  } else if (h?.link.state === 'connecting' || !h) {
    text = 'Connecting to the server…';
    warn = true;
  }
  banner.textContent = text;
  banner.className = warn ? 'warn' : '';
  banner.hidden = text === '';
  const b: HTMLElement[] = [];
  if (h?.server) b.push(badge(`${h.server.kind}: ${h.server.connected_nodes} nodes`, 'ok', 'nodes'));
  if (h && h.unavailable_nodes.length > 0) {
    b.push(badge(`unavailable: ${h.unavailable_nodes.join(', ')}`, 'bad', 'unavailable'));
  }
  if (h && h.lost_events > 0) b.push(badge(`${h.lost_events} events lost`, 'warn', 'lost'));
  if (last?.notice) b.push(badge(last.notice, 'warn', 'notice'));
  if (last) b.push(badge(`${rate(last.totals.flows_per_sec)} flows/s`, 'ok', 'rate'));
  if (paused) b.push(badge(`paused (+${pending.length + pendingSkipped})`, 'warn', 'paused'));
  badges.replaceChildren(...b);
}

/** Takes in the messages that arrived together, then draws once. */
function onMessages(ms: Message[]): void {
  filterError.hidden = true;
  uiLost = null;
  let rows: FlowRow[] = [];
  let whole = false;
  for (const m of ms) {
    if (m.map) {
      whole = true;
      nodes.clear();
      edges.clear();
      for (const n of m.map.nodes) nodes.set(n.id, n);
      for (const e of m.map.edges) edges.set(e.id, e);
      table.reset(m.flows);
      rows = [];
      pending = [];
      edgeHistory = [];
    } else if (m.delta) {
      for (const id of m.delta.nodes_removed) nodes.delete(id);
      for (const id of m.delta.edges_removed) edges.delete(id);
      for (const n of m.delta.nodes) nodes.set(n.id, n);
      for (const e of m.delta.edges) edges.set(e.id, e);
      if (paused) {
        pending.push(...m.flows);
        if (pending.length > MAX_ROWS) pending.splice(0, pending.length - MAX_ROWS);
        pendingSkipped += m.flows_skipped;
      } else {
        rows.push(...m.flows);
      }
    }
    const v = store.view;
    const selectedEdge = v.from ? [...edges.values()].find((x) => x.source === v.from && x.target === v.to) : undefined;
    if (selectedEdge) edgeHistory = [...edgeHistory, selectedEdge.flows_per_sec].slice(-120);
    last = m;
  }
  if (rows.length > 0) table.append(rows.slice(-MAX_ROWS));
  if (last && last.namespaces.join('\n') !== namespaces.join('\n')) {
    namespaces = last.namespaces;
    nsPicker();
  }
  if (!paused || whole) render();
  renderHealth();
}

let controller: AbortController | null = null;

function connect(): void {
  controller?.abort();
  const c = new AbortController();
  controller = c;
  const query = serverQuery(store.view);
  void (async () => {
    for (;;) {
      try {
        await stream(query, c.signal, onMessages);
        if (c.signal.aborted) return;
        uiLost = 'the stream ended';
      } catch (e) {
        if (c.signal.aborted) return;
        if (e instanceof BadRequest) {
          filterError.textContent = e.message;
          filterError.hidden = false;
          return;
        }
        if (e instanceof Unauthorized) {
          byId('token-form').hidden = false;
          return;
        }
        uiLost = (e as Error).message;
      }
      renderHealth();
      await new Promise((r) => setTimeout(r, 1000));
      if (c.signal.aborted) return;
    }
  })();
}

store.subscribe((view, serverChanged) => {
  if (filterInput.value.trim() !== view.filter) filterInput.value = view.filter;
  showLast(view.last);
  table.setView(view);
  nsPicker();
  if (serverChanged) {
    edgeHistory = [];
    connect();
  }
  render();
});

// Start from the URL.
filterInput.value = store.view.filter;
unitSelect.value = store.view.unit;
showLast(store.view.last);
problems.checked = store.view.problems;
table.setView(store.view);
renderHealth();
connect();

// For the browser tests and the curious: the map (Cytoscape), the view, the table.
(window as unknown as { lumen: unknown }).lumen = { cy: map.cy, store, table, settled: () => map.settled() };
