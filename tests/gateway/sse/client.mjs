// Runs operations through the graphql-sse client (distinct connections mode) and prints
// one JSON line per event: {"id", "kind": "next"|"error"|"complete", ...}.
// Usage: node client.mjs URL OPERATIONS_JSON [TOKEN]
// OPERATIONS_JSON: [{"id": "a", "query": "...", "variables": {...}, "take": 2}]
// An operation is disposed (the client closes the stream) after `take` results.
import { createClient } from "graphql-sse";

const [url, operationsJson, token] = process.argv.slice(2);
const operations = JSON.parse(operationsJson);
const client = createClient({
  url,
  singleConnection: false,
  retryAttempts: 0,
  headers: token ? { authorization: `Bearer ${token}` } : {},
});
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

await Promise.all(
  operations.map(
    (op) =>
      new Promise((resolve) => {
        let seen = 0;
        let dispose = () => {};
        dispose = client.subscribe(
          { query: op.query, variables: op.variables ?? {}, operationName: op.operationName },
          {
            next: (value) => {
              seen += 1;
              print({ id: op.id, kind: "next", value });
              if (op.take && seen >= op.take) {
                dispose();
                resolve();
              }
            },
            error: (err) => {
              const status = err?.response?.status ?? null;
              print({ id: op.id, kind: "error", status, message: String(err?.message ?? err) });
              resolve();
            },
            complete: () => {
              print({ id: op.id, kind: "complete" });
              resolve();
            },
          },
        );
      }),
  ),
);
client.dispose();
