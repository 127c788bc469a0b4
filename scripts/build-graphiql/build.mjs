// Bundles GraphiQL, its explorer plugin, React and Monaco's workers into
// gateway/static/graphiql/ (committed, so the gateway needs neither Node.js nor a CDN).
// Run `./build` from this folder: `npm ci` then this script, with the versions pinned in
// package-lock.json.
import { build } from 'esbuild';
import { rm, mkdir, readdir, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(here, '../../gateway/static/graphiql/dist');

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });

const common = {
  bundle: true,
  minify: true,
  legalComments: 'linked',
  target: ['chrome111', 'firefox111', 'safari16.4'],
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
};

await build({
  ...common,
  entryPoints: { graphiql: path.join(here, 'entry.jsx') },
  outdir: out,
  format: 'esm',
  jsx: 'automatic',
  loader: { '.ttf': 'file', '.woff': 'file', '.woff2': 'file', '.svg': 'dataurl' },
  assetNames: '[name]',
});

const workers = {
  editor: 'monaco-editor/esm/vs/editor/editor.worker.js',
  json: 'monaco-editor/esm/vs/language/json/json.worker.js',
  graphql: 'monaco-graphql/esm/graphql.worker.js',
};
for (const [name, entry] of Object.entries(workers)) {
  await build({
    ...common,
    entryPoints: { [`${name}.worker`]: entry },
    outdir: out,
    format: 'iife',
  });
}

let total = 0;
for (const file of (await readdir(out)).sort()) {
  const size = (await stat(path.join(out, file))).size;
  total += size;
  console.log(`${file.padEnd(32)} ${(size / 1024).toFixed(0).padStart(6)} KiB`);
}
console.log(`${'total'.padEnd(32)} ${(total / 1024).toFixed(0).padStart(6)} KiB`);
