// The map's layout off the page's main thread (a module worker): fcose on
// a headless Cytoscape holding the same elements and style sheet; only
// the nodes' positions go back. A layout of 500 workloads and their boxes
// takes seconds, which on the page's thread froze it.

import cytoscape from 'cytoscape';
import fcose from 'cytoscape-fcose';
import { LAYOUT, STYLE } from './style';

cytoscape.use(fcose);

export interface Position {
  x: number;
  y: number;
}

export interface LayoutRequest {
  seq: number;
  elements: cytoscape.ElementDefinition[];
  /** Where nodes are now (a later layout starts from there); none: from scratch. */
  positions: Record<string, Position> | null;
}

export interface LayoutReply {
  seq: number;
  positions: Record<string, Position>;
}

const scope = self as unknown as {
  onmessage: ((ev: MessageEvent<LayoutRequest>) => void) | null;
  postMessage(reply: LayoutReply): void;
};

scope.onmessage = ({ data }) => {
  const cy = cytoscape({ headless: true, styleEnabled: true, style: STYLE, elements: data.elements });
  const from = data.positions;
  if (from) {
    cy.nodes().forEach((n) => {
      const p = from[n.id()];
      if (p) n.position(p);
    });
  }
  cy.layout({ ...LAYOUT, randomize: from === null } as cytoscape.LayoutOptions).run();
  const positions: Record<string, Position> = {};
  cy.nodes().forEach((n) => {
    if (!n.isParent()) positions[n.id()] = { ...n.position() };
  });
  cy.destroy();
  scope.postMessage({ seq: data.seq, positions });
};
