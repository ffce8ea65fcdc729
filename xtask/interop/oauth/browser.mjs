// Headless Chromium (Debian's) loading a page that uses the TypeScript SDK client in the
// browser (browser_client.mjs, bundled here with esbuild) against an MCP server behind
// OAuth: the page is served from http://localhost:PAGE_PORT, a cross-origin caller of the
// MCP server and of the authorization server, so every step needs their CORS. Playwright
// (playwright-core, no browser download) drives Chromium; nothing is clicked: the
// authorization server's login and consent are scripted.
//
// usage: node browser.mjs MCP_URL PAGE_PORT [CHROMIUM]
// Prints one JSON object: the page's #result, with `console` (the page's errors).
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';

const [mcpUrl, pagePort, executable = '/usr/bin/chromium'] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const bundle = await esbuild.build({
  entryPoints: [path.join(here, 'browser_client.mjs')],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  write: false,
  logLevel: 'error',
});
const script = bundle.outputFiles[0].text;
const page = '<!doctype html><meta charset="utf-8"><title>hale interop</title><pre id="result"></pre><script type="module" src="/client.js"></script>';
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/client.js')) {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(script);
  } else {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  }
});
await new Promise((r) => server.listen(Number(pagePort), '127.0.0.1', r));

const browser = await chromium.launch({
  executablePath: executable,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const errors = [];
let out;
try {
  const tab = await browser.newPage();
  tab.on('console', (m) => { if (m.type() === 'error') errors.push(m.text().slice(0, 300)); });
  tab.on('pageerror', (e) => errors.push(String(e).slice(0, 300)));
  await tab.goto(`http://localhost:${pagePort}/?mcp=${encodeURIComponent(mcpUrl)}`);
  await tab.waitForFunction(() => document.getElementById('result')?.textContent, null, { timeout: 30000 });
  out = JSON.parse(await tab.textContent('#result'));
} catch (e) {
  out = { ok: false, error: String(e?.message ?? e).slice(0, 500) };
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify({ ...out, console: errors }));
process.exit(0);
