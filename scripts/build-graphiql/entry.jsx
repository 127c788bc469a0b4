// The GraphiQL page the gateway serves at GET /graphql (browsers). Everything it loads,
// the Monaco editor's web workers included, comes from the gateway's own origin: the
// gateway often runs without internet. Rebuild with ./build (see README.md here).
import 'graphiql/style.css';
import '@graphiql/plugin-explorer/style.css';
import { createElement } from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL, HISTORY_PLUGIN } from 'graphiql';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { explorerPlugin } from '@graphiql/plugin-explorer';

const root = document.getElementById('graphiql');
const assets = new URL(root.dataset.assets, document.baseURI);

// Monaco asks for a worker per language; each is a bundle next to this one.
globalThis.MonacoEnvironment = {
  getWorker(_workerId, label) {
    const name = label === 'json' || label === 'graphql' ? label : 'editor';
    return new Worker(new URL(`${name}.worker.js`, assets), { name: `${name}-worker` });
  },
};

const http = new URL(root.dataset.graphql, window.location.href);
const ws = new URL(http);
ws.protocol = http.protocol === 'https:' ? 'wss:' : 'ws:';

// Headers typed in the headers editor go with HTTP requests and, as the
// connection_init payload, with subscriptions (the gateway reads the JWT from both).
const fetcher = createGraphiQLFetcher({ url: http.href, subscriptionUrl: ws.href });

const examples = JSON.parse(document.getElementById('examples').textContent);
const defaultTabs = examples.map((example) => ({
  query: example.query,
  variables: example.variables ? JSON.stringify(example.variables, null, 2) : undefined,
}));

createRoot(root).render(
  createElement(GraphiQL, {
    fetcher,
    defaultTabs,
    defaultQuery: examples[0].query,
    defaultHeaders: root.dataset.headers || undefined,
    isHeadersEditorEnabled: true,
    defaultEditorToolsVisibility: root.dataset.tools || false,
    plugins: [HISTORY_PLUGIN, explorerPlugin()],
  }),
);
