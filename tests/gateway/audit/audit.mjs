// Runs graphql-http's server audits (MUST and SHOULD) against a running gateway.
// Usage: node audit.mjs http://127.0.0.1:8004/graphql
// Prints one JSON line per audit: {"id", "name", "status", "reason"}; exits 1 on any failure.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql url>');
  process.exit(2);
}
const results = await auditServer({ url });
let failed = 0;
for (const result of results) {
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    line.reason = result.reason;
    failed += 1;
  }
  console.log(JSON.stringify(line));
}
process.exit(failed ? 1 : 0);
