// Bundles every screen under src/<screen>/main.jsx into dist/ (git-ignored), with one HTML
// page per screen. Run by `ioc setup front` after `npm ci`; no CDN is ever referenced: an IOC
// may sit on a closed network.
import { build } from "esbuild";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.env.IOC_FRONT_DIST || join(here, "dist");
const screens = readdirSync(join(here, "src")).filter(
  (d) => d !== "lib" && existsSync(join(here, "src", d, "main.jsx")),
);
const template = readFileSync(join(here, "src", "lib", "page.html"), "utf8");
const vi = JSON.parse(readFileSync(join(here, "locales", "vi.json"), "utf8"));

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });
await build({
  entryPoints: Object.fromEntries(screens.map((s) => [s, join(here, "src", s, "main.jsx")])),
  bundle: true,
  splitting: true,
  format: "esm",
  outdir: join(out, "assets"),
  jsx: "automatic",
  jsxImportSource: "preact",
  minify: true,
  sourcemap: true,
  target: ["chrome110", "firefox110", "safari16"],
  loader: { ".png": "file", ".svg": "file" },
  entryNames: "[name]",
  chunkNames: "chunk-[hash]",
  assetNames: "[name]-[hash]",
  logLevel: "warning",
});
// Leaflet's stylesheet and marker images, served next to the bundles.
cpSync(join(here, "node_modules", "leaflet", "dist", "leaflet.css"), join(out, "assets", "leaflet.css"));
cpSync(join(here, "node_modules", "leaflet", "dist", "images"), join(out, "assets", "images"), {
  recursive: true,
});
for (const s of screens) {
  const title = (vi.screens && vi.screens[s]) || "IOC Hub";
  const html = template.replaceAll("{{screen}}", s).replaceAll("{{title}}", title);
  mkdirSync(join(out, s), { recursive: true });
  writeFileSync(join(out, s, "index.html"), html);
}
writeFileSync(join(out, "BUILT"), JSON.stringify({ screens, at: new Date().toISOString() }));
console.log(JSON.stringify({ dist: out, screens }));
