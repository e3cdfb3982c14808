// Headless Chromium opens GraphiQL from a running Covenant, runs a query through the IDE
// and checks the result pane: `node graphiql.mjs http://127.0.0.1:4000`.
// Uses Debian's chromium (CHROMIUM_PATH to override) driven by playwright-core.
import { chromium } from 'playwright-core';

const base = process.argv[2];
if (!base) {
  console.error('usage: node graphiql.mjs BASE_URL');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const failures = [];
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => failures.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(`${base}/api/graphql`, { waitUntil: 'load' });
  // The editor is up once GraphiQL has rendered.
  await page.waitForSelector('.graphiql-execute-button', { timeout: 30000 });
  const query = '{ covenantFund { countries projects totalUsd } }';
  await page.evaluate((q) => {
    const editor = document.querySelector('.graphiql-query-editor .CodeMirror');
    editor.CodeMirror.setValue(q);
  }, query);
  await page.click('.graphiql-execute-button');
  await page.waitForFunction(
    () => (document.querySelector('.result-window')?.textContent || '').includes('totalUsd'),
    null,
    { timeout: 30000 },
  );
  const result = await page.evaluate(() => document.querySelector('.result-window').textContent);
  console.log(`result pane: ${result.replace(/\s+/g, ' ').trim()}`);
  if (!result.includes('"covenantFund"')) failures.push('the result pane has no covenantFund');
  await page.screenshot({ path: process.env.SCREENSHOT || '/tmp/covenant-graphiql.png' });
} catch (e) {
  failures.push(String(e));
} finally {
  await browser.close();
}
for (const f of failures) console.log(f);
process.exit(failures.length ? 1 : 0);
