// Debian's Chromium, headless, as the browser tests and the browser
// benchmark start it (Playwright's own browser download cannot work here),
// and what the browser tests share of their pages.

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** A page of the size the tests look at, its errors and dialogs collected in `errors`. */
export async function testPage(browser, errors) {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  page.on('dialog', (d) => { errors.push(`a dialog opened: ${d.message()}`); void d.dismiss(); });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  return page;
}

/** Says which check a test script is at (the Rust side prints it). */
export function step(name) {
  console.log(`STEP ${name}`);
}

/**
 * Runs a test script's checks in a fresh browser: `checks(page, newPage)`
 * gets a page, and makes more with `newPage()`. Prints PASS when they all
 * hold and no page raised an error or opened a dialog, else FAIL and why;
 * then exits (the Rust side reads the verdict).
 */
export async function runChecks(checks) {
  const browser = await launch();
  const errors = [];
  try {
    const newPage = () => testPage(browser, errors);
    await checks(await newPage(), newPage);
    assert.deepEqual(errors, []);
    console.log('PASS');
  } catch (e) {
    console.log(`FAIL ${e.stack ?? e}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
    // stdin (a test's replies) would keep node running.
    process.exit(process.exitCode ?? 0);
  }
}
