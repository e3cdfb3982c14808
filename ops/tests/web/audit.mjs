// The GraphQL-over-HTTP audit suite of the npm package graphql-http, run against a live
// Covenant: `node audit.mjs http://127.0.0.1:4000/api/graphql`. Prints every audit and
// exits 1 if any is not `ok` (the "SHOULD" audits and the "MAY" notices included).
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs URL');
  process.exit(2);
}
let failed = 0;
let passed = 0;
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  const result = await audit.fn();
  if (result.status === 'ok') {
    passed += 1;
    console.log(`ok     ${audit.id} ${audit.name}`);
  } else {
    failed += 1;
    let body = '';
    try {
      body = await result.response.text();
    } catch {}
    console.log(`${result.status.padEnd(6)} ${audit.id} ${audit.name}\n       ${result.reason}\n       status ${result.response.status}: ${body.slice(0, 300)}`);
  }
}
console.log(`${passed} passed, ${failed} not ok`);
process.exit(failed ? 1 : 0);
