// Builds the example pages into dist/ (embedded into tusgate by go:embed):
//   dist/index.html, dist/assets/{style.css,index.js}
//   dist/dropzone/{index.html,app.js,app.css}
//   dist/uppy/{index.html,app.js,app.css}
//   dist/uppy-s3/{index.html,app.js,app.css}: Uppy v5 with @uppy/aws-s3 v5,
//     from src/uppy-s3/node_modules (its own package.json; scripts/build-examples.sh installs it)
// Everything is bundled: the pages' Content-Security-Policy allows scripts
// and styles from the server itself only, and no inline scripts.
// Set SOURCEMAP=1 for source maps.
import { cp, mkdir, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(here, "src");
const dist = path.join(here, "dist");
const keep = new Set(["PLACEHOLDER.md"]); // tracked in git; dist/ is otherwise ignored

await mkdir(dist, { recursive: true });
for (const name of await readdir(dist)) {
  if (!keep.has(name)) await rm(path.join(dist, name), { recursive: true, force: true });
}

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: {
    "dropzone/app": "src/dropzone/app.js",
    "uppy/app": "src/uppy/app.js",
    "uppy-s3/app": "src/uppy-s3/app.js",
    "assets/index": "src/index.js",
  },
  outdir: dist,
  bundle: true,
  format: "esm",
  splitting: true, // auth0-spa-js is loaded only in auth0 mode
  chunkNames: "assets/chunk-[hash]",
  platform: "browser",
  target: "es2020",
  minify: true,
  sourcemap: process.env.SOURCEMAP ? "linked" : false,
  legalComments: "linked",
  loader: { ".svg": "dataurl", ".png": "dataurl", ".gif": "dataurl", ".woff": "file", ".woff2": "file" },
  assetNames: "assets/[name]-[hash]",
  define: { "process.env.NODE_ENV": '"production"' },
  metafile: true,
  logLevel: "warning",
});

await mkdir(path.join(dist, "dropzone"), { recursive: true });
await mkdir(path.join(dist, "uppy"), { recursive: true });
await mkdir(path.join(dist, "uppy-s3"), { recursive: true });
await mkdir(path.join(dist, "assets"), { recursive: true });
await cp(path.join(src, "index.html"), path.join(dist, "index.html"));
await cp(path.join(src, "dropzone/index.html"), path.join(dist, "dropzone/index.html"));
await cp(path.join(src, "uppy/index.html"), path.join(dist, "uppy/index.html"));
await cp(path.join(src, "uppy-s3/index.html"), path.join(dist, "uppy-s3/index.html"));
await cp(path.join(src, "common/style.css"), path.join(dist, "assets/style.css"));

const out = Object.entries(result.metafile.outputs)
  .map(([f, o]) => `  ${path.relative(here, path.resolve(here, f))}  ${(o.bytes / 1024).toFixed(1)} KiB`)
  .join("\n");
console.log(`built examples into dist/:\n${out}`);
