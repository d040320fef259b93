// The map as the browser tests read it: the elements Cytoscape holds, and
// a wait until they are what a check wants.

import assert from 'node:assert/strict';

/**
 * The map's nodes (id, label, kind, parent box) and edges (ends, health,
 * label), and whether it is settled (no layout on its way: drawn where it
 * stays).
 */
export function graph(page) {
  return page.evaluate(() => {
    const cy = window.lumen.cy;
    return {
      settled: window.lumen.settled(),
      nodes: cy.nodes().map((n) => ({
        id: n.id(), label: n.data('label'), kind: n.data('kind'), parent: n.data('parent') ?? null,
      })),
      edges: cy.edges().map((e) => ({
        from: e.data('from'), to: e.data('to'), health: e.data('health'), label: e.data('label'),
      })),
    };
  });
}

/** The settled map once `ok` holds of it, polled; fails saying `what` never came. */
export async function waitGraph(page, what, ok, timeout = 30000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const g = await graph(page);
    if (g.settled && ok(g)) return g;
    if (Date.now() > deadline) assert.fail(`${what}: never came; the map has ${JSON.stringify(g)}`);
    await page.waitForTimeout(250);
  }
}

export const edge = (g, from, to) => g.edges.find((e) => e.from === from && e.to === to);
