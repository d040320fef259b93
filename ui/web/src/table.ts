// The flow table: virtualised (only the rows in sight are in the DOM, so
// thousands of rows stay smooth), sortable, with a column chooser. A click
// on a cell adds its value to the filter (Alt: as --not), a click on the
// row's time opens the flow's detail panel.

import { el } from './dom';
import { COLUMNS, type Column, type View } from './store';
import type { FlowRow } from './types';

const ROW_HEIGHT = 22;
/** Rows kept at most; the oldest go first. */
export const MAX_ROWS = 5000;

const TITLES: Record<Column, string> = {
  time: 'Time',
  source: 'Source',
  destination: 'Destination',
  port: 'Port',
  protocol: 'Protocol',
  verdict: 'Verdict',
  drop_reason: 'Drop reason',
  policy: 'Policy',
  node: 'Node',
  tcp_flags: 'TCP flags',
  direction: 'Direction',
};

const WIDTHS: Record<Column, string> = {
  time: '150px',
  source: 'minmax(120px, 1.2fr)',
  destination: 'minmax(120px, 1.2fr)',
  port: '60px',
  protocol: '80px',
  verdict: '110px',
  drop_reason: '130px',
  policy: 'minmax(120px, 1.5fr)',
  node: '100px',
  tcp_flags: '90px',
  direction: '80px',
};

export function cell(r: FlowRow, c: Column): string {
  switch (c) {
    case 'time': return r.time.slice(11, 23);
    case 'port': return r.destination_port ? String(r.destination_port) : '';
    default: return String(r[c] ?? '');
  }
}

function compare(a: FlowRow, b: FlowRow, c: Column): number {
  if (c === 'time') return a.time_ms - b.time_ms || a.seq - b.seq;
  if (c === 'port') return a.destination_port - b.destination_port;
  return cell(a, c).localeCompare(cell(b, c));
}

/** The filter flag that selects a cell's value, if there is one. */
export function filterFor(r: FlowRow, c: Column): string | null {
  const q = (v: string) => (/^[\w./:-]+$/.test(v) ? v : `'${v.replace(/'/g, '')}'`);
  const side = (dir: 'from' | 'to', name: string, ip: string) =>
    name.includes('/') && !name.includes(' ') ? `--${dir}-pod ${q(name)}` : ip ? `--${dir}-ip ${q(ip)}` : null;
  switch (c) {
    case 'source': return side('from', r.source, r.source_ip);
    case 'destination': return side('to', r.destination, r.destination_ip);
    case 'port': return r.destination_port ? `--to-port ${r.destination_port}` : null;
    case 'protocol': return r.protocol ? `--protocol ${r.protocol.toLowerCase()}` : null;
    case 'verdict': return `--verdict ${r.verdict}`;
    case 'drop_reason': return r.drop_reason ? `--drop-reason-desc ${r.drop_reason}` : null;
    case 'node': return r.node ? `--node-name ${q(r.node)}` : null;
    case 'tcp_flags': return r.tcp_flags ? `--tcp-flags ${r.tcp_flags.split(',')[0]}` : null;
    case 'direction': return r.direction !== 'TRAFFIC_DIRECTION_UNKNOWN' ? `--traffic-direction ${r.direction.toLowerCase()}` : null;
    default: return null;
  }
}

export interface TableHandlers {
  filter(flag: string, not: boolean): void;
  detail(row: FlowRow): void;
  view(change: Partial<View>): void;
}

export class Table {
  private rows: FlowRow[] = [];
  private sorted: FlowRow[] = [];
  private view!: View;
  private selected = -1;
  private readonly head: HTMLElement;
  private readonly body: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly count: HTMLElement;
  private readonly chooser: HTMLElement;
  private drawn = new Map<number, HTMLElement>();

  constructor(private readonly on: TableHandlers) {
    this.head = document.getElementById('table-head')!;
    this.body = document.getElementById('table-body')!;
    this.spacer = document.getElementById('table-spacer')!;
    this.count = document.getElementById('table-count')!;
    this.chooser = document.getElementById('column-list')!;
    this.body.addEventListener('scroll', () => this.draw(false));
    new ResizeObserver(() => this.draw(false)).observe(this.body);
  }

  setView(view: View): void {
    const relayout = !this.view || this.view.cols.join() !== view.cols.join() ||
      this.view.sort.col !== view.sort.col || this.view.sort.desc !== view.sort.desc;
    this.view = view;
    if (relayout) {
      this.header();
      this.resort();
    }
  }

  reset(rows: FlowRow[]): void {
    this.rows = rows.slice(-MAX_ROWS);
    this.resort();
  }

  append(rows: FlowRow[]): void {
    if (rows.length === 0) return;
    this.rows.push(...rows);
    if (this.rows.length > MAX_ROWS) this.rows.splice(0, this.rows.length - MAX_ROWS);
    this.resort();
  }

  all(): FlowRow[] {
    return this.sorted;
  }

  private header(): void {
    const cols = this.view.cols;
    const template = cols.map((c) => WIDTHS[c]).join(' ');
    this.head.style.gridTemplateColumns = template;
    this.head.replaceChildren(
      ...cols.map((c) => {
        const arrow = this.view.sort.col === c ? (this.view.sort.desc ? ' ▼' : ' ▲') : '';
        const h = el('div', { data: { col: c }, title: 'Sort' }, TITLES[c] + arrow);
        h.addEventListener('click', () =>
          this.on.view({ sort: { col: c, desc: this.view.sort.col === c ? !this.view.sort.desc : c === 'time' } }),
        );
        return h;
      }),
    );
    this.chooser.replaceChildren(
      ...COLUMNS.map((c) => {
        const box = el('input');
        box.type = 'checkbox';
        box.checked = cols.includes(c);
        box.dataset.col = c;
        box.addEventListener('change', () => {
          const next = COLUMNS.filter((k) => (k === c ? box.checked : cols.includes(k)));
          if (next.length > 0) this.on.view({ cols: next });
        });
        return el('label', {}, box, ` ${TITLES[c]}`, el('br'));
      }),
    );
  }

  private resort(): void {
    const { col, desc } = this.view.sort;
    this.sorted = [...this.rows].sort((a, b) => (desc ? compare(b, a, col) : compare(a, b, col)));
    this.count.textContent = `${this.sorted.length} flows`;
    this.draw(true);
  }

  private draw(all: boolean): void {
    if (!this.view) return;
    const cols = this.view.cols;
    const template = cols.map((c) => WIDTHS[c]).join(' ');
    this.spacer.style.height = `${this.sorted.length * ROW_HEIGHT}px`;
    const first = Math.max(0, Math.floor(this.body.scrollTop / ROW_HEIGHT) - 5);
    const last = Math.min(this.sorted.length, first + Math.ceil(this.body.clientHeight / ROW_HEIGHT) + 10);
    if (all) {
      for (const r of this.drawn.values()) r.remove();
      this.drawn.clear();
    }
    for (const [i, r] of this.drawn) {
      if (i < first || i >= last) {
        r.remove();
        this.drawn.delete(i);
      }
    }
    for (let i = first; i < last; i++) {
      if (this.drawn.has(i)) continue;
      const flow = this.sorted[i];
      if (!flow) continue;
      const row = el('div', { class: 'row' + (flow.seq === this.selected ? ' selected' : ''), data: { seq: String(flow.seq) } });
      row.style.top = `${i * ROW_HEIGHT}px`;
      row.style.gridTemplateColumns = template;
      for (const c of cols) {
        const text = cell(flow, c);
        const d = el('div', { class: c === 'verdict' ? `v-${flow.verdict}` : '', title: text, data: { col: c } }, text);
        d.addEventListener('click', (ev) => {
          const flag = filterFor(flow, c);
          if (c === 'time' || flag === null) {
            this.selected = flow.seq;
            this.draw(true);
            this.on.detail(flow);
          } else {
            this.on.filter(flag, ev.altKey);
          }
        });
        row.append(d);
      }
      this.body.append(row);
      this.drawn.set(i, row);
    }
  }
}
