// The README's main command in headless Chromium, as cli/tests/demo_ui.rs
// arranges: `lumen demo` running its online shop, its web UI at
// LUMEN_UI_URL. The map must show every workload of the shop in its
// namespace box, the outside peer, the calls between them, and the two
// paths its policies deny, each naming its policy. Exits non-zero on the
// first failed check.

import assert from 'node:assert/strict';
import { runChecks, step } from './chromium.mjs';
import { waitGraph } from './map.mjs';

const url = process.env.LUMEN_UI_URL;
const artifacts = process.env.LUMEN_ARTIFACTS;

const w = (ns, name) => `workload|${ns}|${name}`;
const WORKLOADS = [
  ['shop', 'frontend'], ['shop', 'catalog'], ['shop', 'cart'], ['shop', 'checkout'],
  ['shop', 'recommendations'], ['shop', 'search'], ['pay', 'payments'], ['pay', 'fraud'],
  ['data', 'db'], ['data', 'cache'], ['infra', 'dns'], ['monitoring', 'scraper'],
];
const PSP = '198.51.100.10 (reserved:world)';
// The demo's calls, by workload: 20 calls between 15 pods are these 18 edges.
const CALLS = [
  ['shop|frontend', 'shop|catalog'], ['shop|frontend', 'shop|cart'], ['shop|frontend', 'shop|recommendations'],
  ['shop|frontend', 'shop|search'], ['shop|search', 'shop|catalog'], ['shop|catalog', 'data|db'],
  ['shop|cart', 'data|cache'], ['shop|checkout', 'shop|cart'],
  ['shop|checkout', 'pay|payments'], ['shop|checkout', 'data|db'], ['pay|payments', 'pay|fraud'],
  ['pay|payments', 'world'], ['shop|frontend', 'pay|payments'], ['monitoring|scraper', 'shop|frontend'],
  ['monitoring|scraper', 'pay|payments'], ['shop|frontend', 'infra|dns'], ['shop|checkout', 'infra|dns'],
  ['pay|payments', 'infra|dns'],
];
const DENIED = {
  [`${w('shop', 'checkout')}→${w('data', 'db')}`]: 'CiliumNetworkPolicy data/db-in',
  [`${w('shop', 'frontend')}→${w('pay', 'payments')}`]: 'CiliumNetworkPolicy pay/payments-in',
};

await runChecks(async (page) => {
  await page.goto(url);

  step('every workload of the shop in its namespace box, and the outside peer');
  let g = await waitGraph(page, 'twelve workloads and the peer', (g) =>
    WORKLOADS.every(([ns, name]) => g.nodes.some((n) => n.id === w(ns, name))) &&
    g.nodes.some((n) => n.label === PSP), 60000);
  const workloads = g.nodes.filter((n) => n.kind === 'workload').map((n) => `${n.parent}/${n.label}`).sort();
  assert.deepEqual(workloads, WORKLOADS.map(([ns, name]) => `ns:${ns}/${name}`).sort());
  const boxes = g.nodes.filter((n) => n.id.startsWith('ns:')).map((n) => n.label).sort();
  assert.deepEqual(boxes, ['data', 'infra', 'monitoring', 'pay', 'shop']);
  const psp = g.nodes.find((n) => n.label === PSP);
  assert.deepEqual([psp.kind, psp.parent], ['world', null]);

  step('the calls between them, and the two paths the policies deny');
  const id = (end) => (end === 'world' ? psp.id : `workload|${end}`);
  const wanted = CALLS.map(([from, to]) => `${id(from)}→${id(to)}`).sort();
  g = await waitGraph(page, 'every call, the denied ones all dropped', (g) =>
    wanted.every((k) => g.edges.some((e) => `${e.from}→${e.to}` === k)) &&
    Object.keys(DENIED).every((k) => g.edges.find((e) => `${e.from}→${e.to}` === k)?.health === 'all-dropped'),
  60000);
  assert.deepEqual(g.edges.map((e) => `${e.from}→${e.to}`).sort(), wanted);
  for (const e of g.edges) {
    const key = `${e.from}→${e.to}`;
    assert.equal(e.health, key in DENIED ? 'all-dropped' : 'forwarded', key);
  }
  await page.screenshot({ path: `${artifacts}/demo-map.png` });

  step('each denied path names its policy, and its flows fill the table');
  for (const [key, policy] of Object.entries(DENIED)) {
    const [from, to] = key.split('→');
    await page.evaluate(([from, to]) => window.lumen.store.select({ from, to }), [from, to]);
    await page.waitForFunction((p) => document.getElementById('panel').innerText.includes(p), policy);
    // The table once it holds this path's flows (the last path's went).
    await page.waitForFunction(([from, to]) => {
      const rows = window.lumen.table.all();
      const ours = (r) => [from, to].includes(r.source_node) && [from, to].includes(r.destination_node);
      return rows.length > 0 && rows.every(ours) && rows.some((r) => r.verdict === 'DROPPED');
    }, [from, to]);
    const rows = await page.evaluate(() => window.lumen.table.all());
    for (const r of rows) {
      // Replies (db → checkout) are the path's flows too.
      assert.deepEqual([r.source_node, r.destination_node].sort(), [from, to].sort(), JSON.stringify(r));
    }
    assert.ok(rows.some((r) => r.verdict === 'DROPPED' && r.policy.endsWith(policy)), policy);
  }
  await page.screenshot({ path: `${artifacts}/demo-denied.png` });
});
