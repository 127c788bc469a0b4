// Fetches the schema the way GraphiQL and graphql-codegen do: graphql-js's
// getIntrospectionQuery() (with every option GraphiQL turns on), then buildClientSchema.
// Usage: node introspect.mjs http://127.0.0.1:8004/graphql
// Prints {"status", "types", "query"} as JSON; exits 1 when the schema cannot be built.
import { buildClientSchema, getIntrospectionQuery } from 'graphql';

const url = process.argv[2];
if (!url) {
  console.error('usage: node introspect.mjs <graphql url>');
  process.exit(2);
}
const query = getIntrospectionQuery({
  descriptions: true,
  specifiedByUrl: true,
  directiveIsRepeatable: true,
  schemaDescription: true,
  inputValueDeprecation: true,
});
const response = await fetch(url, {
  method: 'POST',
  headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
  body: JSON.stringify({ query, operationName: 'IntrospectionQuery' }),
});
const body = await response.json();
if (!response.ok || body.errors) {
  console.log(JSON.stringify({ status: response.status, errors: body.errors }));
  process.exit(1);
}
const schema = buildClientSchema(body.data);
const queryType = schema.getQueryType();
console.log(
  JSON.stringify({
    status: response.status,
    types: Object.keys(schema.getTypeMap()).length,
    query: Object.keys(queryType.getFields()),
  }),
);
