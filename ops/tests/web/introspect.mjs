// What GraphQL client tooling sends first (GraphiQL, graphql-codegen, Apollo, Postman): the
// standard introspection query of graphql-js with every option on, over both media types.
// The answer must build a client schema with the ledger's queries and mutations:
// `node introspect.mjs http://127.0.0.1:4000/api/graphql`.
import { buildClientSchema, getIntrospectionQuery, printSchema } from 'graphql';

const url = process.argv[2];
if (!url) {
  console.error('usage: node introspect.mjs GRAPHQL_URL');
  process.exit(2);
}
const query = getIntrospectionQuery({
  descriptions: true,
  specifiedByUrl: true,
  directiveIsRepeatable: true,
  schemaDescription: true,
  inputValueDeprecation: true,
  oneOf: true,
});
const failures = [];
for (const accept of ['application/graphql-response+json', 'application/json']) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept },
    body: JSON.stringify({ query, operationName: 'IntrospectionQuery' }),
  });
  const body = await res.json();
  if (res.status !== 200 || body.errors) {
    failures.push(`${accept}: ${res.status} ${JSON.stringify(body.errors)}`);
    continue;
  }
  const schema = buildClientSchema(body.data);
  const queries = Object.keys(schema.getQueryType().getFields());
  const mutations = Object.keys(schema.getMutationType().getFields());
  console.log(`${accept}: ${queries.length} queries (${queries.join(', ')}), ${mutations.length} mutations`);
  for (const f of ['countries', 'country', 'projects', 'covenantFund', 'auditEvents', 'me']) {
    if (!queries.includes(f)) failures.push(`${accept}: Query has no ${f}`);
  }
  for (const f of ['login', 'registerCountry', 'updateGdp', 'createProject']) {
    if (!mutations.includes(f)) failures.push(`${accept}: Mutation has no ${f}`);
  }
  if (!printSchema(schema).includes('scalar Usd')) failures.push(`${accept}: the printed schema has no Usd scalar`);
}
console.log(`introspection query: ${query.length} bytes`);
for (const f of failures) console.log(f);
process.exit(failures.length ? 1 : 0);
