// The service map: Cytoscape.js, namespaces as compound boxes (fcose lays
// them out), edges coloured by health. It draws what the server built; the
// only changes here are display ones (hidden peers, collapsed boxes, only
// problems). Labels are drawn on the canvas as text. The numbers come damped
// (ui/src/map.rs, Sent::delta): a rate moves when it changed by 5 % or after
// a few seconds; the selected node or edge comes exact.

import cytoscape from 'cytoscape';
import { rate } from './dom';
import type { LayoutReply, LayoutRequest, Position } from './layout';
import type { View } from './store';
import { LAYOUT, STYLE } from './style';
import type { MapEdge, MapNode } from './types';

const NS_PREFIX = 'ns:';
const COLOURS: Record<string, string> = {
  forwarded: '#2e9e44',
  audit: '#d9a400',
  'some-drops': '#e67e22',
  'all-dropped': '#d62728',
};

export interface MapHandlers {
  node(id: string): void;
  edge(from: string, to: string): void;
  background(): void;
  namespace(ns: string): void;
}

/**
 * An edge's label: ports, flows/s and drop %; on a map of more than
 * LABELLED_EDGES edges, ports and whether any flow dropped only (the rates
 * are in the side panel): a label that changes makes Cytoscape restyle the
 * edge and its compound parents, and thousands of them twice a second
 * held the page's main thread for hundreds of milliseconds.
 */
function edgeLabel(e: MapEdge, detailed: boolean): string {
  const ports = e.ports.join(' ') + (e.ports_other > 0 ? ` +${e.ports_other}` : '');
  if (!detailed) return e.dropped > 0 ? `${ports} · drops` : ports;
  const drops = e.dropped > 0 ? ` · ${e.drop_pct.toFixed(0)}% dropped` : '';
  return `${ports} · ${rate(e.flows_per_sec)}/s${drops}`;
}

const LABELLED_EDGES = 300;

/** Whether a node of this kind sits in its namespace's box. */
function boxed(n: MapNode): boolean {
  return n.namespace !== '' && n.kind !== 'namespace';
}

export class MapView {
  readonly cy: cytoscape.Core;
  /** The node set last laid out (keyOf): a layout runs when it changes. */
  private laidOut = '';
  /** What each element was last drawn from (its data and classes). */
  private drawn = new Map<string, string>();
  /** Lays the map out off the main thread (./layout.ts). */
  private worker = new Worker('/layout.js', { type: 'module' });
  /** The last layout asked for, and the last answered. */
  private asked = 0;
  private answered = 0;
  /** The node set of the last layout asked for. */
  private askedKey = '';
  /** Where the last layout put each node. */
  private positions = new Map<string, Position>();
  /** A map to draw once it is laid out (a new one is drawn laid out, not piled up). */
  private waiting: { elements: cytoscape.ElementDefinition[]; view: View } | null = null;

  constructor(container: HTMLElement, on: MapHandlers) {
    this.cy = cytoscape({
      container,
      wheelSensitivity: 0.3,
      minZoom: 0.2,
      maxZoom: 3,
      style: STYLE,
    });
    this.worker.onmessage = (ev: MessageEvent<LayoutReply>) => this.placed(ev.data);
    this.cy.on('tap', 'node', (ev) => {
      const id = ev.target.id() as string;
      if (id.startsWith(NS_PREFIX)) on.namespace(id.slice(NS_PREFIX.length));
      else on.node(id);
    });
    this.cy.on('tap', 'edge', (ev) => {
      const e = ev.target;
      if (!e.data('meta')) on.edge(e.data('from') as string, e.data('to') as string);
    });
    this.cy.on('tap', (ev) => {
      if (ev.target === this.cy) on.background();
    });
  }

  render(nodes: Map<string, MapNode>, edges: Map<string, MapEdge>, view: View): void {
    const hidden = new Set(view.hide);
    const collapsed = new Set(view.collapsed);
    let shownEdges = [...edges.values()].filter((e) => !hidden.has(e.source) && !hidden.has(e.target));
    if (view.problems) shownEdges = shownEdges.filter((e) => e.health !== 'forwarded');
    let shownNodes = [...nodes.values()].filter((n) => !hidden.has(n.id));
    if (view.problems) {
      const ends = new Set(shownEdges.flatMap((e) => [e.source, e.target]));
      shownNodes = shownNodes.filter((n) => ends.has(n.id));
    }
    // Where each node is drawn: itself, or its collapsed namespace's box.
    const place = new Map<string, string>();
    const elements: cytoscape.ElementDefinition[] = [];
    const boxes = new Set<string>();
    for (const n of shownNodes) {
      if (boxed(n)) boxes.add(n.namespace);
      if (boxed(n) && collapsed.has(n.namespace)) {
        place.set(n.id, NS_PREFIX + n.namespace);
        continue;
      }
      place.set(n.id, n.id);
      elements.push({
        group: 'nodes',
        data: {
          id: n.id,
          label: n.kind === 'world' || n.kind === 'ip' || n.kind === 'reserved' ? n.label : n.name,
          kind: n.kind,
          parent: boxed(n) ? NS_PREFIX + n.namespace : undefined,
        },
        classes: n.dropped > 0 ? 'has-drops' : '',
      });
    }
    for (const ns of boxes) {
      const c = collapsed.has(ns);
      elements.push({
        group: 'nodes',
        data: { id: NS_PREFIX + ns, label: c ? `${ns} (collapsed)` : ns, kind: 'namespace-box' },
        classes: c ? 'namespace collapsed' : 'namespace',
      });
    }
    const detailed = shownEdges.length <= LABELLED_EDGES;
    for (const e of shownEdges) {
      const source = place.get(e.source);
      const target = place.get(e.target);
      if (!source || !target) continue;
      const meta = source !== e.source || target !== e.target;
      if (meta && source === target) continue;
      elements.push({
        group: 'edges',
        data: {
          id: e.id,
          source,
          target,
          from: e.source,
          to: e.target,
          meta,
          label: edgeLabel(e, detailed),
          health: e.health,
          colour: COLOURS[e.health] ?? '#999',
        },
      });
    }
    this.apply(elements, view);
  }

  /** Whether no layout is on its way (the map is drawn where it stays). */
  settled(): boolean {
    return this.asked === this.answered && this.waiting === null;
  }

  private apply(elements: cytoscape.ElementDefinition[], view: View): void {
    const nodes = elements.filter((e) => e.group === 'nodes');
    const known = nodes.filter((e) => this.cy.getElementById(e.data.id as string).nonempty()).length;
    if (nodes.length === 0) {
      // Nothing to lay out (a filter nothing passes).
      this.waiting = null;
      this.update(elements, view);
      this.laidOut = '';
      return;
    }
    if (this.laidOut === '' || known < nodes.length / 2) {
      // A new map (the first, another unit): drawn once laid out.
      if (this.laidOut !== '') {
        this.cy.elements().remove();
        this.drawn.clear();
        this.laidOut = '';
      }
      this.waiting = { elements, view };
      // One layout at a time: the newest map waits for the one asked for.
      if (this.asked === this.answered) this.ask(elements, null);
      return;
    }
    const { added, key } = this.update(elements, view);
    if (added && key !== this.laidOut) this.relayout(key);
  }

  /**
   * Lays the map out again from where its nodes are, so that a new node
   * does not reshuffle it; `key` is its node set.
   */
  private relayout(key: string): void {
    this.laidOut = key;
    const now = this.cy.elements().map((e) => ({ group: e.group(), data: e.data(), classes: e.classes().join(' ') }));
    const from: Record<string, Position> = {};
    this.cy.nodes().forEach((n) => {
      from[n.id()] = { ...n.position() };
    });
    this.ask(now, from);
  }

  private ask(elements: cytoscape.ElementDefinition[], positions: Record<string, Position> | null): void {
    this.asked += 1;
    this.askedKey = keyOf(elements);
    const request: LayoutRequest = {
      seq: this.asked,
      elements: elements.map((e) => ({ group: e.group, data: e.data, classes: e.classes })),
      positions,
    };
    this.worker.postMessage(request);
  }

  /** A layout's answer: a new map drawn where it was laid out, or the map's nodes moved. */
  private placed(reply: LayoutReply): void {
    if (reply.seq !== this.asked) return;
    this.answered = reply.seq;
    this.positions = new Map(Object.entries(reply.positions));
    const waiting = this.waiting;
    if (waiting) {
      // A layout of another map (the one before): this one is laid out anew.
      const nodes = waiting.elements.filter((e) => e.group === 'nodes');
      if (nodes.filter((e) => this.positions.has(e.data.id as string)).length < nodes.length / 2) {
        this.ask(waiting.elements, null);
        return;
      }
      this.waiting = null;
      this.laidOut = this.askedKey;
      const { key } = this.update(waiting.elements, waiting.view);
      this.cy.fit(undefined, LAYOUT.padding);
      // Nodes that came while it was laid out: laid out in turn.
      if (key !== this.laidOut) this.relayout(key);
      return;
    }
    this.cy.batch(() => {
      for (const [id, p] of this.positions) {
        const n = this.cy.getElementById(id);
        if (n.nonempty() && !n.isParent()) n.position(p);
      }
    });
    // As fcose does after a layout on the page: the whole map in view.
    this.cy.fit(undefined, LAYOUT.padding);
  }

  /** Where a node is first drawn: where the layout put it, else in its box, else mid-map. */
  private where(def: cytoscape.ElementDefinition): Position {
    const laid = this.positions.get(def.data.id as string);
    if (laid) return laid;
    const box = def.data.parent ? this.cy.getElementById(def.data.parent as string) : null;
    if (box && box.nonempty()) return { ...box.position() };
    const e = this.cy.extent();
    return { x: (e.x1 + e.x2) / 2, y: (e.y1 + e.y2) / 2 };
  }

  /** Brings Cytoscape's elements to `elements`: whether any was added, and their layout's key. */
  private update(elements: cytoscape.ElementDefinition[], view: View): { added: boolean; key: string } {
    const cy = this.cy;
    const want = new Set(elements.map((e) => e.data.id as string));
    let added = false;
    cy.batch(() => {
      cy.elements().forEach((ele) => {
        if (!want.has(ele.id())) {
          ele.remove();
          this.drawn.delete(ele.id());
        }
      });
      // Nodes before edges, boxes before their children.
      const order = (e: cytoscape.ElementDefinition) =>
        e.group === 'edges' ? 2 : (e.data.id as string).startsWith(NS_PREFIX) ? 0 : 1;
      for (const def of [...elements].sort((a, b) => order(a) - order(b))) {
        const id = def.data.id as string;
        // What is drawn already is left alone: each change makes Cytoscape
        // restyle the element (and measure its label) before the next frame.
        const drawn = JSON.stringify(def.data) + '|' + (def.classes ?? '');
        if (this.drawn.get(id) === drawn) continue;
        const existing: cytoscape.CollectionReturnValue = cy.getElementById(id);
        // Cytoscape cannot re-parent or re-attach in place: such an element is made anew.
        const moved =
          existing.nonempty() &&
          (def.group === 'nodes'
            ? (existing.data('parent') ?? undefined) !== def.data.parent
            : existing.data('source') !== def.data.source || existing.data('target') !== def.data.target);
        if (existing.nonempty() && !moved) {
          const changed: Record<string, unknown> = {};
          let any = false;
          for (const [k, v] of Object.entries(def.data)) {
            if (k !== 'id' && k !== 'source' && k !== 'target' && k !== 'parent' && existing.data(k) !== v) {
              changed[k] = v;
              any = true;
            }
          }
          if (any) existing.data(changed);
          if (existing.classes().join(' ') !== (def.classes ?? '')) {
            existing.classes(def.classes ?? '');
          }
        } else {
          if (moved) existing.remove();
          cy.add(def.group === 'nodes' ? { ...def, position: this.where(def) } : def);
          added = true;
        }
        this.drawn.set(id, drawn);
      }
      const selected = cy.collection();
      if (view.node) selected.merge(cy.getElementById(view.node));
      if (view.from && view.to) {
        selected.merge(cy.edges().filter((e) => e.data('from') === view.from && e.data('to') === view.to));
      }
      cy.$('.selected').difference(selected).removeClass('selected');
      selected.addClass('selected');
    });
    return { added, key: keyOf(elements) };
  }
}

/**
 * The key of a map's layout: its nodes' ids. A new edge between nodes
 * already placed moves nothing; relaying out for it redrew every element.
 */
function keyOf(elements: cytoscape.ElementDefinition[]): string {
  return elements
    .filter((e) => e.group === 'nodes')
    .map((e) => e.data.id as string)
    .sort()
    .join('\n');
}
