// The README's screenshot of the web UI: a running lumen-ui (the demo's),
// its map with the first path a policy denies selected, so that the side
// panel says why and the table holds that path's flows.
// Usage (from ui/web): node tools/screenshot.mjs http://127.0.0.1:12000/ ../../docs/ui.png

import { launch } from '../tests/chromium.mjs';

const [url, file] = process.argv.slice(2);
if (!url || !file) throw new Error('usage: node tools/screenshot.mjs <url> <file.png>');

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  await page.goto(url);
  await page.waitForFunction(() => (window.lumen?.cy.edges('[health = "all-dropped"]').length ?? 0) > 0, null, {
    timeout: 120_000,
  });
  const denied = await page.evaluate(() => {
    const e = window.lumen.cy.edges('[health = "all-dropped"]')[0];
    return { from: e.data('from'), to: e.data('to') };
  });
  await page.evaluate((e) => window.lumen.store.select(e), denied);
  await page.waitForFunction(() => window.lumen.table.all().length > 0);
  // A few updates, so that the rates and the sparkline have moved.
  await page.waitForTimeout(5000);
  await page.screenshot({ path: file });
  console.log(`${file}: ${denied.from} → ${denied.to} selected`);
} finally {
  await browser.close();
}
