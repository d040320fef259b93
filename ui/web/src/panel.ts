// The side panel of the selected node or edge, and the detail panel of a
// flow. All text goes in through text nodes.

import { el, rate, sparkline } from './dom';
import type { FlowRow, MapEdge, MapNode } from './types';

function rows(pairs: [string, Node | string | number][]): HTMLTableElement {
  return el('table', {}, ...pairs.map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', {}, v))));
}

function list(items: string[], cls = ''): HTMLUListElement {
  return el('ul', { class: cls }, ...items.map((i) => el('li', {}, i)));
}

export function nodePanel(panel: HTMLElement, n: MapNode, close: () => void, hide: (() => void) | null): void {
  const closeButton = el('button', { data: { action: 'close' } }, 'Close');
  closeButton.addEventListener('click', close);
  const extra: Node[] = [];
  if (hide) {
    const b = el('button', { data: { action: 'hide' } }, 'Hide from the map');
    b.addEventListener('click', hide);
    extra.push(b);
  }
  panel.replaceChildren(
    el('h2', { data: { testid: 'panel-title' } }, n.label),
    closeButton,
    ...extra,
    rows([
      ['kind', n.kind],
      ['namespace', n.namespace || '—'],
      ['identities', n.identities.join(', ') || '—'],
      ['flows', n.flows],
      ['in / out per s', `${rate(n.in_per_sec)} / ${rate(n.out_per_sec)}`],
      ['dropped', `${n.dropped} (${n.drop_pct.toFixed(1)} %)`],
      ['drops per s', rate(n.drops_per_sec)],
    ]),
    el('h3', {}, 'Flows per second, last minute'),
    sparkline(n.trend),
    el('h3', {}, 'Labels'),
    list(n.labels, 'labels'),
    el('h3', {}, `Pods (${n.pods.length})`),
    list(n.pods),
  );
  panel.hidden = false;
}

export function edgePanel(
  panel: HTMLElement,
  e: MapEdge,
  names: { source: string; target: string },
  history: number[],
  close: () => void,
): void {
  const closeButton = el('button', { data: { action: 'close' } }, 'Close');
  closeButton.addEventListener('click', close);
  panel.replaceChildren(
    el('h2', { data: { testid: 'panel-title' } }, `${names.source} → ${names.target}`),
    closeButton,
    rows([
      ['ports', e.ports.join(', ') + (e.ports_other ? ` and ${e.ports_other} more` : '')],
      ['health', e.health],
      ['flows', e.flows],
      ['forwarded / dropped / audit', `${e.forwarded} / ${e.dropped} / ${e.audit}`],
      ['flows per s', rate(e.flows_per_sec)],
      ['drops per s', rate(e.drops_per_sec)],
      ['dropped', `${e.drop_pct.toFixed(1)} %`],
    ]),
    el('h3', {}, 'Flows per second, while open'),
    sparkline(history),
    el('h3', {}, 'Drop reasons'),
    list(e.drop_reasons.map((r) => `${r.name} (${r.count})`)),
    el('h3', {}, 'Why dropped: policy'),
    list(e.policies.map((p) => `${p.name} (${p.count})`), 'policy'),
  );
  panel.hidden = false;
}

/** Every field of a flow (Hubble's JSON), as a nested list of text. */
function tree(value: unknown): Node {
  if (value === null || typeof value !== 'object') return document.createTextNode(JSON.stringify(value));
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
  return el('ul', {}, ...entries.map(([k, v]) => el('li', {}, el('strong', {}, `${k}: `), tree(v))));
}

export function flowDetail(detail: HTMLElement, row: FlowRow, full: unknown | string, close: () => void): void {
  const closeButton = el('button', { data: { action: 'close-detail' } }, 'Close');
  closeButton.addEventListener('click', close);
  detail.replaceChildren(
    el('h2', {}, `${row.source} → ${row.destination}`),
    closeButton,
    el('p', {}, `${row.time} · ${row.verdict}${row.drop_reason ? ` (${row.drop_reason})` : ''}`),
    row.policy ? el('p', { class: 'policy' }, row.policy) : '',
    typeof full === 'string' ? el('p', {}, full) : tree(full),
  );
  detail.hidden = false;
}
