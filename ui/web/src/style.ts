// The map's style sheet and layout, shared by the page's Cytoscape and the
// headless one that lays the map out in a worker (./layout.ts): the sizes
// and paddings the layout works with are the ones drawn.

import type cytoscape from 'cytoscape';

/**
 * Labels that would be drawn smaller than this (in screen pixels, at the
 * current zoom) are not drawn: they cannot be read, and drawing thousands
 * of them was most of the first frames of a large map. Zooming in shows them.
 */
export const MIN_DRAWN_FONT_PX = 6;

export const STYLE: cytoscape.StylesheetJson = [
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
];

/** fcose's options, but `randomize` (the first layout starts from scratch). */
export const LAYOUT = {
  name: 'fcose',
  animate: false,
  nodeRepulsion: 9000,
  idealEdgeLength: 120,
  nestingFactor: 0.6,
  padding: 30,
};
