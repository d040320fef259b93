// Drives headless Chromium (Debian's, no download) through the UI, as
// ui/tests/browser.rs arranges: a cluster with namespaces shop (web, cart),
// pay (payments) and data (db); web → db denied by CiliumNetworkPolicy
// data/db-in. Asks the Rust test for cluster actions with "ACTION <name>"
// lines on stdout and waits for "ok" on stdin. Exits non-zero on the first
// failed check.

import { runChecks, step } from './chromium.mjs';
import { edge, waitGraph as waitMap } from './map.mjs';
import assert from 'node:assert/strict';
import readline from 'node:readline';
import { readFileSync } from 'node:fs';

const url = process.env.LUMEN_UI_URL;
const artifacts = process.env.LUMEN_ARTIFACTS;
const htmlLabel = process.env.LUMEN_HTML_LABEL;
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const WEB = 'workload|shop|web';
const CART = 'workload|shop|cart';
const PAYMENTS = 'workload|pay|payments';
const DB = 'workload|data|db';

async function action(name) {
  console.log(`ACTION ${name}`);
  const { value } = await lines.next();
  assert.ok(value?.startsWith('ok'), `action ${name}: ${value}`);
  return value.slice(3);
}

await runChecks(async (page, newPage) => {

  const waitGraph = (what, ok, timeout) => waitMap(page, what, ok, timeout);
  const tableRows = () => page.evaluate(() => window.lumen.table.all());
  const panelText = () => page.locator('#panel').innerText();

  step('the map shows every workload in its namespace box');
  await page.goto(url);
  let g = await waitGraph('four workloads and four edges', (g) =>
    [WEB, CART, PAYMENTS, DB].every((id) => g.nodes.some((n) => n.id === id)) &&
    edge(g, WEB, CART) && edge(g, CART, PAYMENTS) && edge(g, CART, DB) && edge(g, WEB, DB)?.health !== 'forwarded');
  const workloads = g.nodes.filter((n) => n.id.startsWith('workload|'))
    .map((n) => `${n.parent}/${n.label}`).sort();
  assert.deepEqual(workloads, ['ns:data/db', 'ns:pay/payments', 'ns:shop/cart', 'ns:shop/web']);
  const boxes = g.nodes.filter((n) => n.id.startsWith('ns:')).map((n) => `${n.id}=${n.label}`).sort();
  assert.deepEqual(boxes, ['ns:data=data', 'ns:pay=pay', 'ns:shop=shop']);
  for (const [from, to] of [[WEB, CART], [CART, PAYMENTS], [CART, DB]]) {
    assert.equal(edge(g, from, to).health, 'forwarded', `${from} → ${to}`);
    assert.match(edge(g, from, to).label, /^80\/TCP · /);
  }
  // Every SYN web sends is reported twice: forwarded leaving web's node,
  // dropped arriving at db's.
  const denied = edge(g, WEB, DB);
  assert.ok(['some-drops', 'all-dropped'].includes(denied.health), JSON.stringify(denied));
  assert.match(denied.label, /^80\/TCP · .* · \d+% dropped$/);
  await page.screenshot({ path: `${artifacts}/map.png` });

  step('clicking the denied edge opens its panel, which names the policy, and filters the table');
  const point = await page.evaluate(([from, to]) => {
    const cy = window.lumen.cy;
    const e = cy.edges().filter((e) => e.data('from') === from && e.data('to') === to)[0];
    const box = document.getElementById('map').getBoundingClientRect();
    // A point of the (straight) edge away from the labels at the midpoints,
    // from every node, and from every other edge.
    const ends = (x) => [x.source().renderedPosition(), x.target().renderedPosition()];
    const [s, t] = ends(e);
    const far = (p) => {
      const inNode = cy.nodes().some((n) => {
        if (n.isParent()) return false;
        const b = n.renderedBoundingBox({ includeLabels: true });
        return p.x > b.x1 - 4 && p.x < b.x2 + 4 && p.y > b.y1 - 4 && p.y < b.y2 + 4;
      });
      const nearEdge = cy.edges().some((o) => {
        if (o.same(e)) return false;
        const [a, c] = ends(o);
        const dx = c.x - a.x, dy = c.y - a.y;
        const k = Math.max(0, Math.min(1, ((p.x - a.x) * dx + (p.y - a.y) * dy) / (dx * dx + dy * dy || 1)));
        return Math.hypot(p.x - a.x - k * dx, p.y - a.y - k * dy) < 10;
      });
      return !inNode && !nearEdge;
    };
    const at = (f) => ({ x: s.x + f * (t.x - s.x), y: s.y + f * (t.y - s.y) });
    const p = [0.4, 0.3, 0.65, 0.25, 0.7, 0.35, 0.6].map(at).find(far) ?? at(0.4);
    return { x: box.left + p.x, y: box.top + p.y };
  }, [WEB, DB]);
  await page.mouse.click(point.x, point.y);
  await page.waitForFunction(() => document.querySelector('#panel h2')?.textContent === 'shop/web → data/db');
  const panel = await panelText();
  assert.match(panel, /CiliumNetworkPolicy data\/db-in \(\d+\)/);
  assert.match(panel, /POLICY_DENIED \(\d+\)/);
  assert.equal(new URL(page.url()).searchParams.get('from'), WEB);
  assert.equal(new URL(page.url()).searchParams.get('to'), DB);
  await page.waitForFunction(() => document.getElementById('table-title').textContent === 'Flows of shop/web → data/db');
  await page.waitForFunction(() => window.lumen.table.all().some((r) => r.verdict === 'DROPPED'));
  let rows = await tableRows();
  assert.ok(rows.length > 0);
  for (const r of rows) {
    assert.deepEqual([r.source, r.destination, r.destination_port, r.protocol], ['shop/web', 'data/db', 80, 'TCP'],
      `a row of another path: ${JSON.stringify(r)}`);
  }
  const droppedRow = rows.find((r) => r.verdict === 'DROPPED');
  assert.equal(droppedRow.drop_reason, 'POLICY_DENIED');
  assert.match(droppedRow.policy, /CiliumNetworkPolicy data\/db-in/);
  assert.ok(rows.some((r) => r.verdict === 'FORWARDED'), 'the forwarded half of each request is its flow too');
  await page.screenshot({ path: `${artifacts}/denied-edge.png` });
  await page.locator('#flows').screenshot({ path: `${artifacts}/table.png` });

  step('the last 5 minutes come from what the observers hold, and the URL keeps them');
  // lumen-ui started after the traffic, following from then on (--history 0s).
  const started = Number(process.env.LUMEN_UI_STARTED_MS);
  rows = await tableRows();
  assert.ok(rows.every((r) => r.time_ms >= started), 'live: only flows lumen-ui took in itself');
  await page.selectOption('#last', '5m');
  assert.equal(new URL(page.url()).searchParams.get('last'), '5m');
  await page.waitForFunction((t) => window.lumen.table.all().some((r) => r.time_ms < t), started, { timeout: 30000 });
  rows = await tableRows();
  for (const r of rows) {
    assert.deepEqual([r.source, r.destination], ['shop/web', 'data/db'], `a row of another path: ${JSON.stringify(r)}`);
  }
  assert.ok(rows.some((r) => r.time_ms < started && r.verdict === 'DROPPED'), 'the observers\' drops before lumen-ui started');
  g = await waitGraph('the last 5 minutes: four edges', (g) => g.edges.length === 4);
  assert.ok(['some-drops', 'all-dropped'].includes(edge(g, WEB, DB).health));
  await page.reload();
  await page.waitForFunction(() => document.querySelector('#panel h2')?.textContent === 'shop/web → data/db');
  assert.equal(await page.inputValue('#last'), '5m');
  await page.waitForFunction((t) => window.lumen.table.all().some((r) => r.time_ms < t), started, { timeout: 30000 });
  await page.selectOption('#last', '');
  assert.equal(new URL(page.url()).searchParams.get('last'), null);

  step('a filter typed in the bar narrows the map and the table');
  await page.locator('#panel button[data-action="close"]').click();
  await page.fill('#filter-input', '--verdict DROPPED');
  await page.press('#filter-input', 'Enter');
  g = await waitGraph('only the dropped edge', (g) => g.edges.length === 1 && edge(g, WEB, DB));
  assert.deepEqual(g.nodes.filter((n) => !n.id.startsWith('ns:')).map((n) => n.id).sort(), [DB, WEB]);
  await page.waitForFunction(() => window.lumen.table.all().length > 0);
  rows = await tableRows();
  assert.deepEqual([...new Set(rows.map((r) => `${r.source} ${r.destination} ${r.verdict}`))], ['shop/web data/db DROPPED']);
  assert.equal(new URL(page.url()).searchParams.get('filter'), '--verdict DROPPED');

  step('the URL restores the view after a reload');
  await page.evaluate((db) => window.lumen.store.select({ node: db }), DB);
  await page.reload();
  await page.waitForFunction(() => document.querySelector('#panel h2')?.textContent === 'data/db');
  assert.equal(await page.inputValue('#filter-input'), '--verdict DROPPED');
  g = await waitGraph('only the dropped edge after the reload', (g) => g.edges.length === 1 && edge(g, WEB, DB));
  await page.waitForFunction(() => document.getElementById('table-title').textContent === 'Flows of data/db');

  step('a label holding HTML shows as text');
  const evil = await newPage();
  await evil.goto(`${process.env.LUMEN_UI_HTML_URL}?node=${encodeURIComponent('workload|evil|x')}`);
  await evil.waitForFunction(() => document.querySelector('#panel h2')?.textContent === 'evil/x');
  const labels = await evil.locator('#panel ul.labels li').allInnerTexts();
  assert.deepEqual(labels, ['k8s:app=x', `k8s:note=${htmlLabel}`]);
  assert.equal(await evil.locator('img, script:not([src])').count(), 0, 'no element was made from the label');
  // The map too, once laid out, for the screenshot.
  await waitMap(evil, 'the two evil workloads', (g) => g.edges.length === 1);
  await evil.screenshot({ path: `${artifacts}/html-label.png` });
  await evil.close();
  await page.fill('#filter-input', '');
  await page.press('#filter-input', 'Enter');
  await waitGraph('every edge back on the map', (g) => g.edges.length === 4);

  step('a malformed filter shows its error');
  await page.fill('#filter-input', '--verdict NEVER');
  await page.press('#filter-input', 'Enter');
  await page.waitForSelector('#filter-error:not([hidden])');
  assert.equal(
    await page.locator('#filter-error').innerText(),
    'invalid filter: invalid value for --verdict: "NEVER" is not a verdict: use one of FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED',
  );
  await page.screenshot({ path: `${artifacts}/bad-filter.png` });
  await page.fill('#filter-input', '');
  await page.press('#filter-input', 'Enter');
  await page.waitForSelector('#filter-error', { state: 'hidden' });

  step('pause holds the table; the column chooser and the export work');
  await page.click('#pause');
  await page.waitForSelector('[data-testid="paused"]');
  const held = (await tableRows()).length;
  await page.waitForFunction(() => /^paused \(\+[1-9]/.test(document.querySelector('[data-testid="paused"]')?.textContent ?? ''));
  assert.equal((await tableRows()).length, held, 'a paused table takes no rows');
  await page.click('#pause');
  await page.waitForFunction((n) => window.lumen.table.all().length > n, held);
  await page.click('#columns summary');
  await page.uncheck('#column-list input[data-col="policy"]');
  assert.equal(await page.locator('#table-head').innerText().then((t) => t.includes('Policy')), false);
  assert.equal(new URL(page.url()).searchParams.get('cols'), 'time,source,destination,port,protocol,verdict,drop_reason,node');
  await page.click('#columns summary');
  await page.click('#export summary');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-edges-csv')]);
  assert.equal(download.suggestedFilename(), 'lumen-edges.csv');
  const csv = readFileSync(await download.path(), 'utf8').split('\r\n');
  assert.equal(csv[0], 'source,destination,ports,flows,forwarded,dropped,audit,flows_per_sec,drops_per_sec,drop_pct,health,drop_reasons,policies');
  assert.deepEqual(csv.slice(1, -1).map((l) => l.split(',').slice(0, 3).join(',')).sort(), [
    'shop/cart,data/db,80/TCP', 'shop/cart,pay/payments,80/TCP', 'shop/web,data/db,80/TCP', 'shop/web,shop/cart,80/TCP',
  ]);
  await page.click('#export summary');

  step('a namespace box collapses, and the unit selector regroups the map');
  // The picker's button; a click on the box does the same (edges may cross it).
  await page.click('#ns-picker summary');
  await page.click('#ns-list button[data-collapse="data"]');
  await page.click('#ns-picker summary');
  g = await waitGraph('data collapsed', (g) => !g.nodes.some((n) => n.id === DB));
  assert.deepEqual(g.nodes.find((n) => n.id === 'ns:data'), {
    id: 'ns:data', label: 'data (collapsed)', kind: 'namespace-box', parent: null,
  });
  assert.deepEqual(g.edges.filter((e) => e.to === DB).map((e) => e.from).sort(), [CART, WEB]);
  assert.deepEqual(new URL(page.url()).searchParams.getAll('collapsed'), ['data']);
  await page.screenshot({ path: `${artifacts}/collapsed.png` });
  await page.evaluate(() => window.lumen.store.set({ collapsed: [] }));
  await page.selectOption('#unit', 'namespace');
  g = await waitGraph('namespaces as nodes', (g) => g.nodes.some((n) => n.id === 'namespace|shop|shop'));
  assert.deepEqual(g.nodes.map((n) => n.id).sort(), ['namespace|data|data', 'namespace|pay|pay', 'namespace|shop|shop']);
  assert.equal(edge(g, 'namespace|shop|shop', 'namespace|data|data').health, 'some-drops');
  await page.selectOption('#unit', 'workload');
  await waitGraph('workloads again', (g) => g.nodes.some((n) => n.id === WEB));

  step('stopping the relay shows the disconnected banner; restarting it clears it');
  await action('stop-relay');
  await page.waitForSelector('#banner:not([hidden])', { timeout: 20000 });
  assert.match(await page.locator('#banner').innerText(), /^Disconnected from the server: .*Reconnecting…$/);
  await page.screenshot({ path: `${artifacts}/disconnected.png` });
  await action('start-relay');
  await page.waitForSelector('#banner', { state: 'hidden', timeout: 30000 });

  step('a node going away shows as unavailable');
  const node = await action('stop-node');
  await page.waitForSelector('[data-testid="unavailable"]', { timeout: 30000 });
  assert.equal(await page.locator('[data-testid="unavailable"]').innerText(), `unavailable: ${node}`);
  await page.screenshot({ path: `${artifacts}/unavailable.png` });
});
