// Headless Chromium opens GraphiQL from a running Covenant as a new user would: the
// documentation explorer lists the Query fields (so the schema loaded through
// introspection), the editor autocompletes a field name, and a query runs and fills the
// result pane: `node graphiql.mjs http://127.0.0.1:4000`.
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

  // The documentation explorer: root types, then the Query type's fields.
  await page.click('button[aria-label="Show Documentation Explorer"]');
  const queryLink = page.locator('.graphiql-doc-explorer a.graphiql-doc-explorer-type-name', { hasText: 'Query' });
  await queryLink.first().waitFor({ timeout: 30000 });
  await queryLink.first().click();
  await page.waitForSelector('.graphiql-doc-explorer-field-name', { timeout: 30000 });
  const fields = await page.$$eval('.graphiql-doc-explorer-field-name', (els) => els.map((e) => e.textContent));
  console.log(`docs explorer, Query fields: ${fields.join(', ')}`);
  for (const f of ['countries', 'covenantFund', 'projects', 'auditEvents']) {
    if (!fields.includes(f)) failures.push(`the documentation explorer shows no Query.${f}`);
  }
  const errors = await page.$$eval('.graphiql-doc-explorer-error', (els) => els.map((e) => e.textContent));
  if (errors.length) failures.push(`documentation explorer errors: ${errors.join('; ')}`);

  // Autocompletion: typing `cove` inside a selection set offers covenantFund.
  await page.evaluate(() => {
    const cm = document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror;
    cm.setValue('{\n  \n}');
    cm.setCursor({ line: 1, ch: 2 });
    cm.focus();
  });
  await page.keyboard.type('cove', { delay: 50 });
  await page.waitForSelector('.CodeMirror-hints .CodeMirror-hint', { timeout: 30000 });
  const hints = await page.$$eval('.CodeMirror-hints .CodeMirror-hint', (els) => els.map((e) => e.textContent));
  console.log(`autocompletion after "cove": ${hints.join(', ')}`);
  if (!hints.includes('covenantFund')) failures.push('autocompletion does not offer covenantFund');
  await page.keyboard.press('Escape');
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
