// The browser side of ui/benches/browser.rs: opens the UI in headless
// Chromium (Debian's, no download), waits for the first full map, then
// keeps the page open on the live map for LUMEN_BENCH_SECS seconds while
// it measures long tasks (Long Tasks API), bytes received (DevTools
// protocol) and the JavaScript heap. Prints one line, "RESULT <json>".
// With LUMEN_BENCH_PROFILE=<file> it also writes a CPU profile of the page
// from its navigation on (Chrome's .cpuprofile) and prints the functions
// that took the most time themselves. It always prints every long task after
// the first full map: when it started and how long it took.

import { launch } from '../tests/chromium.mjs';

const url = process.env.LUMEN_UI_URL;
const secs = Number(process.env.LUMEN_BENCH_SECS ?? '300');
const workloads = Number(process.env.LUMEN_BENCH_WORKLOADS);
const edges = Number(process.env.LUMEN_BENCH_EDGES);
const profileFile = process.env.LUMEN_BENCH_PROFILE;

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Performance.enable');
  let bytes = 0;
  cdp.on('Network.dataReceived', (e) => { bytes += e.encodedDataLength; });
  cdp.on('Network.responseReceived', (e) => { bytes += e.response.encodedDataLength ?? 0; });

  // Before the page's own scripts: every long task, with when it started.
  await page.addInitScript(() => {
    window.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longTasks.push([e.startTime, e.duration]);
    }).observe({ type: 'longtask', buffered: true });
  });
  const heap = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    const { metrics } = await cdp.send('Performance.getMetrics');
    return metrics.find((m) => m.name === 'JSHeapUsedSize').value;
  };

  if (profileFile) {
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 500 });
    await cdp.send('Profiler.start');
  }
  const start = Date.now();
  await page.goto(url);
  for (;;) {
    const shown = await page.evaluate(() => {
      const cy = window.lumen?.cy;
      return cy
        ? { nodes: cy.nodes('[id ^= "workload|"]').length, edges: cy.edges().length, settled: window.lumen.settled() }
        : { nodes: 0, edges: 0, settled: false };
    });
    if (shown.nodes >= workloads && shown.edges >= edges && shown.settled) break;
    if (Date.now() - start > 120_000) throw new Error(`no full map after 120 s: ${JSON.stringify(shown)}`);
    await page.waitForTimeout(50);
  }
  // ... and drawn: Cytoscape draws in the next animation frame.
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const firstRenderMs = Date.now() - start;
  const renderedAt = await page.evaluate(() => performance.now());
  const heapStart = await heap();
  const bytesStart = bytes;
  const runStart = Date.now();
  const heaps = [heapStart];
  let heapMinute = heapStart;
  while (Date.now() - runStart < secs * 1000) {
    await page.waitForTimeout(10_000);
    const h = await heap();
    heaps.push(h);
    if (Date.now() - runStart <= 65_000) heapMinute = h;
    console.log(`t=${Math.round((Date.now() - runStart) / 1000)}s heap=${(h / 1048576).toFixed(1)}MiB bytes=${bytes}`);
  }
  const runSecs = (Date.now() - runStart) / 1000;
  const tasks = await page.evaluate(() => window.__longTasks);
  if (profileFile) await writeProfile(cdp);
  console.log('long tasks after the first full map (start s, length ms):');
  for (const [t, d] of tasks.filter(([t]) => t > renderedAt)) {
    console.log(`  ${((t - renderedAt) / 1000).toFixed(1).padStart(6)} ${d.toFixed(0).padStart(5)}`);
  }
  const before = tasks.filter(([t]) => t <= renderedAt).map(([, d]) => d);
  // The first second after the first full map apart: Cytoscape builds
  // its caches of the new map then (and draws every element meanwhile).
  const settling = tasks.filter(([t]) => t > renderedAt && t <= renderedAt + 1000).map(([, d]) => d);
  const after = tasks.filter(([t]) => t > renderedAt + 1000).map(([, d]) => d);
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
  console.log('RESULT ' + JSON.stringify({
    workloads,
    edges,
    firstRenderMs,
    longestBeforeMs: Math.max(0, ...before),
    longestSettlingMs: Math.max(0, ...settling),
    longestAfterMs: Math.max(0, ...after),
    longTasksAfter: after.length,
    runSecs,
    bytesPerSec: (bytes - bytesStart) / runSecs,
    heapStart,
    heapMinute,
    heapEnd: heaps[heaps.length - 1],
    heapMax: Math.max(...heaps),
  }));
} finally {
  await browser.close();
}

/** Writes the CPU profile and prints where the time went. */
async function writeProfile(cdp) {
  const { profile } = await cdp.send('Profiler.stop');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(profileFile, JSON.stringify(profile));
  const self = new Map();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const deltas = profile.timeDeltas;
  profile.samples.forEach((id, i) => {
    const f = byId.get(id).callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url.split('/').pop()}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (deltas[i + 1] ?? 0) / 1000);
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  console.log(`profile: ${profileFile}, ${total.toFixed(0)} ms sampled; most self time:`);
  for (const [k, ms] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)) {
    console.log(`  ${ms.toFixed(0).padStart(7)} ms ${(100 * ms / total).toFixed(1).padStart(5)} %  ${k}`);
  }
}
