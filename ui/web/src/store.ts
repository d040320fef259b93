// The view, in one place, mirrored in the URL: the URL is the source of
// truth, so a view can be bookmarked, shared and restored after a reload.

export const COLUMNS = [
  'time', 'source', 'destination', 'port', 'protocol', 'verdict', 'drop_reason',
  'policy', 'node', 'tcp_flags', 'direction',
] as const;
export type Column = (typeof COLUMNS)[number];

export interface View {
  /** `lumen observe` filter flags, applied by the server. */
  filter: string;
  unit: string;
  /** The last this long (`5m`) from the observers' history, or live (''). */
  last: string;
  /** Namespaces shown (all when empty). */
  ns: string[];
  /** The selected node, or the selected edge (from, to). */
  node: string;
  from: string;
  to: string;
  problems: boolean;
  /** Reserved and world peers hidden from the map. */
  hide: string[];
  /** Namespace boxes collapsed. */
  collapsed: string[];
  cols: Column[];
  sort: { col: Column; desc: boolean };
}

const DEFAULT_COLS: Column[] = [
  'time', 'source', 'destination', 'port', 'protocol', 'verdict', 'drop_reason', 'policy', 'node',
];

function list(p: URLSearchParams, k: string): string[] {
  return (p.get(k) ?? '').split(',').filter((s) => s !== '');
}

export function fromUrl(search: string): View {
  const p = new URLSearchParams(search);
  const cols = list(p, 'cols').filter((c): c is Column => (COLUMNS as readonly string[]).includes(c));
  const [sortCol, sortDir] = (p.get('sort') ?? 'time:desc').split(':');
  const col = (COLUMNS as readonly string[]).includes(sortCol ?? '') ? (sortCol as Column) : 'time';
  return {
    filter: p.get('filter') ?? '',
    unit: p.get('unit') ?? 'workload',
    last: p.get('last') ?? '',
    ns: list(p, 'ns'),
    node: p.get('node') ?? '',
    from: p.get('from') ?? '',
    to: p.get('to') ?? '',
    problems: p.get('problems') === '1',
    hide: p.getAll('hide'),
    collapsed: p.getAll('collapsed'),
    cols: cols.length > 0 ? cols : DEFAULT_COLS,
    sort: { col, desc: sortDir !== 'asc' },
  };
}

export function toUrl(v: View): string {
  const p = new URLSearchParams();
  if (v.filter) p.set('filter', v.filter);
  if (v.unit !== 'workload') p.set('unit', v.unit);
  if (v.last) p.set('last', v.last);
  if (v.ns.length) p.set('ns', v.ns.join(','));
  if (v.node) p.set('node', v.node);
  if (v.from) p.set('from', v.from);
  if (v.to) p.set('to', v.to);
  if (v.problems) p.set('problems', '1');
  for (const h of v.hide) p.append('hide', h);
  for (const c of v.collapsed) p.append('collapsed', c);
  if (v.cols.join(',') !== DEFAULT_COLS.join(',')) p.set('cols', v.cols.join(','));
  if (v.sort.col !== 'time' || !v.sort.desc) p.set('sort', `${v.sort.col}:${v.sort.desc ? 'desc' : 'asc'}`);
  return p.toString();
}

/** The query string of the server's view: what it filters and folds. */
export function serverQuery(v: View): string {
  const p = new URLSearchParams();
  if (v.filter) p.set('filter', v.filter);
  p.set('unit', v.unit);
  if (v.last) p.set('last', v.last);
  if (v.ns.length) p.set('ns', v.ns.join(','));
  if (v.node) p.set('node', v.node);
  if (v.from) p.set('from', v.from);
  if (v.to) p.set('to', v.to);
  return p.toString();
}

type Listener = (v: View, serverChanged: boolean) => void;

export class Store {
  view: View;
  private listeners: Listener[] = [];

  constructor() {
    this.view = fromUrl(location.search);
  }

  subscribe(l: Listener): void {
    this.listeners.push(l);
  }

  set(change: Partial<View>): void {
    const before = serverQuery(this.view);
    this.view = { ...this.view, ...change };
    const url = toUrl(this.view);
    history.replaceState(null, '', url ? `?${url}` : location.pathname);
    const serverChanged = serverQuery(this.view) !== before;
    for (const l of this.listeners) l(this.view, serverChanged);
  }

  select(sel: { node?: string; from?: string; to?: string }): void {
    this.set({ node: sel.node ?? '', from: sel.from ?? '', to: sel.to ?? '' });
  }
}
