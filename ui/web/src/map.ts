// The service map: Cytoscape.js, namespaces as compound boxes (fcose lays
// them out), edges coloured by health. It draws what the server built; the
// only changes here are display ones (hidden peers, collapsed boxes, only
// problems). Labels are drawn on the canvas as text. The numbers come damped
// (ui/src/map.rs, Sent::delta): a rate moves when it changed by 5 % or after
// a few seconds; the selected node or edge comes exact.

import cytoscape from 'cytoscape';
import fcose from 'cytoscape-fcose';
import { rate } from './dom';
import type { View } from './store';
import type { MapEdge, MapNode } from './types';

cytoscape.use(fcose);

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

/**
 * Labels that would be drawn smaller than this (in screen pixels, at the
 * current zoom) are not drawn: they cannot be read, and drawing thousands
 * of them was most of the first frames of a large map. Zooming in shows them.
 */
const MIN_DRAWN_FONT_PX = 6;

/** Whether a node of this kind sits in its namespace's box. */
function boxed(n: MapNode): boolean {
  return n.namespace !== '' && n.kind !== 'namespace';
}

export class MapView {
  readonly cy: cytoscape.Core;
  /** The node set last laid out: a layout runs when it changes. */
  private laidOut = '';
  /** What each element was last drawn from (its data and classes). */
  private drawn = new Map<string, string>();

  constructor(container: HTMLElement, on: MapHandlers) {
    this.cy = cytoscape({
      container,
      wheelSensitivity: 0.3,
      minZoom: 0.2,
      maxZoom: 3,
      style: [
        {
          selector: 'node',
          style: {
            label: 'data(label)',
            'font-size': 11,
            'min-zoomed-font-size': MIN_DRAWN_FONT_PX,
            'text-valign': 'bottom',
            'text-margin-y': 3,
            'background-color': '#4a6fa5',
            width: 26,
            height: 26,
          },
        },
        { selector: 'node[kind = "reserved"]', style: { 'background-color': '#8e6bbf', shape: 'diamond' } },
        { selector: 'node[kind = "world"]', style: { 'background-color': '#7f8c8d', shape: 'hexagon' } },
        { selector: 'node[kind = "ip"]', style: { 'background-color': '#95a5a6', shape: 'round-rectangle' } },
        {
          selector: 'node.namespace',
          style: {
            shape: 'round-rectangle',
            'background-color': '#eef2fb',
            'background-opacity': 0.6,
            'border-color': '#4a6fa5',
            'border-width': 1.5,
            'text-valign': 'top',
            'text-halign': 'center',
            'font-weight': 'bold',
            'font-size': 12,
            padding: '14px',
          },
        },
        { selector: 'node.namespace.collapsed', style: { width: 60, height: 40, 'text-valign': 'center' } },
        { selector: 'node.has-drops', style: { 'border-color': '#d62728', 'border-width': 3 } },
        {
          selector: 'edge',
          style: {
            width: 2,
            'curve-style': 'bezier',
            'target-arrow-shape': 'triangle',
            'line-color': 'data(colour)',
            'target-arrow-color': 'data(colour)',
            label: 'data(label)',
            'font-size': 9,
            'min-zoomed-font-size': MIN_DRAWN_FONT_PX,
            'text-rotation': 'autorotate',
            'text-background-color': '#fff',
            'text-background-opacity': 0.85,
            'text-background-padding': '1px',
          },
        },
        { selector: 'edge[health = "all-dropped"]', style: { 'line-style': 'dashed', width: 3 } },
        { selector: 'edge[health = "some-drops"]', style: { width: 3 } },
        { selector: '.selected', style: { 'overlay-color': '#1d4ed8', 'overlay-opacity': 0.18, 'overlay-padding': 6 } },
      ],
    });
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

  private apply(elements: cytoscape.ElementDefinition[], view: View): void {
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
          cy.add(def);
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
    const key = [...want].sort().join('\n');
    if (added && key !== this.laidOut) {
      // The first layout starts from scratch, later ones from where the
      // nodes are, so that a new node does not reshuffle the map.
      const first = this.laidOut === '';
      this.laidOut = key;
      cy.layout({
        name: 'fcose',
        animate: false,
        randomize: first,
        nodeRepulsion: () => 9000,
        idealEdgeLength: () => 120,
        nestingFactor: 0.6,
        padding: 30,
      } as cytoscape.LayoutOptions).run();
    }
  }
}
