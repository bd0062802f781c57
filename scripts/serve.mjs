#!/usr/bin/env node
// serve.mjs — a tiny static file server for the demo and the browser tests.
//
//   node scripts/serve.mjs [--port 8080] [--root .] [--no-isolation] [--test-routes] [--quiet]
//
// Binds 127.0.0.1 only. Sends COOP same-origin + COEP require-corp (so pages are cross-origin isolated
// and may use the threaded wasm build) unless --no-isolation, and the right MIME types (.wasm as
// application/wasm, which streaming compilation requires). Prints "serving <url>" once listening.
// --test-routes adds endpoints the browser tests use to break things on purpose:
//   /__test/drop/<path>      sends the file's full Content-Length, then half the bytes, then resets
//   /__test/block?path=/x    later requests for /x fail (connection reset); /__test/unblock?path=/x
//   /__test/hits?path=/x     how many times /x was requested (JSON)
// Also importable: startServer(opts) -> {url, port, close()}.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const MIME = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json; charset=utf-8', '.wasm': 'application/wasm',
  '.gguf': 'application/octet-stream', '.bin': 'application/octet-stream', '.png': 'image/png', '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon', '.txt': 'text/plain; charset=utf-8', '.md': 'text/plain; charset=utf-8', '.map': 'application/json',
  '.ts': 'text/plain; charset=utf-8',
};

/** Starts the server; resolves when listening. */
export function startServer({ port = 0, root = '.', isolation = true, testRoutes = false, quiet = true } = {}) {
  const rootAbs = path.resolve(root);
  const blocked = new Set();
  const hits = new Map();

  const headers = (extra) => ({
    ...(isolation ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } : {}),
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Cache-Control': 'no-cache',
    ...extra,
  });

  /** Maps a URL path to a file under root (null if outside root or missing); directories -> index.html. */
  function resolveFile(urlPath) {
    let p;
    try { p = decodeURIComponent(urlPath); } catch { return null; }
    const abs = path.resolve(rootAbs, '.' + p);
    if (abs !== rootAbs && !abs.startsWith(rootAbs + path.sep)) return null;
    try {
      const st = fs.statSync(abs);
      if (st.isDirectory()) {
        const idx = path.join(abs, 'index.html');
        return fs.existsSync(idx) ? idx : null;
      }
      return st.isFile() ? abs : null;
    } catch {
      return null;
    }
  }

  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://127.0.0.1');
    hits.set(u.pathname, (hits.get(u.pathname) || 0) + 1);
    if (!quiet) console.log(req.method, u.pathname);
    if (testRoutes && u.pathname.startsWith('/__test/')) return testRoute(u, req, res);
    if (blocked.has(u.pathname)) { req.socket.destroy(); return; }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, headers({ 'Content-Type': 'text/plain' }));
      res.end('method not allowed');
      return;
    }
    // A directory without trailing slash: redirect so relative URLs in its index.html resolve.
    const file = resolveFile(u.pathname);
    if (file && file.endsWith(`${path.sep}index.html`) && !u.pathname.endsWith('/') && !u.pathname.endsWith('.html')) {
      res.writeHead(301, headers({ Location: u.pathname + '/' + u.search }));
      res.end();
      return;
    }
    if (!file) {
      res.writeHead(404, headers({ 'Content-Type': 'text/plain; charset=utf-8' }));
      res.end(`not found: ${u.pathname}`);
      return;
    }
    const size = fs.statSync(file).size;
    res.writeHead(200, headers({ 'Content-Type': MIME[path.extname(file)] || 'application/octet-stream', 'Content-Length': size }));
    if (req.method === 'HEAD') { res.end(); return; }
    fs.createReadStream(file).pipe(res);
  });

  function testRoute(u, req, res) {
    const json = (v) => { res.writeHead(200, headers({ 'Content-Type': 'application/json' })); res.end(JSON.stringify(v)); };
    if (u.pathname === '/__test/block') { blocked.add(u.searchParams.get('path')); return json(true); }
    if (u.pathname === '/__test/unblock') { blocked.delete(u.searchParams.get('path')); return json(true); }
    if (u.pathname === '/__test/hits') return json(hits.get(u.searchParams.get('path')) || 0);
    if (u.pathname.startsWith('/__test/drop/')) {
      const file = resolveFile(u.pathname.slice('/__test/drop'.length));
      if (!file) { res.writeHead(404, headers()); res.end(); return; }
      const data = fs.readFileSync(file);
      res.writeHead(200, headers({ 'Content-Type': 'application/octet-stream', 'Content-Length': data.length }));
      res.write(data.subarray(0, data.length >> 1), () => setTimeout(() => req.socket.destroy(), 50));
      return;
    }
    res.writeHead(404, headers());
    res.end();
  }

  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const p = server.address().port;
      resolve({
        port: p,
        url: `http://127.0.0.1:${p}`,
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
      });
    });
  });
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const args = process.argv.slice(2);
  const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def; };
  const srv = await startServer({
    port: Number(opt('--port', '8080')),
    root: opt('--root', '.'),
    isolation: !args.includes('--no-isolation'),
    testRoutes: args.includes('--test-routes'),
    quiet: args.includes('--quiet') || !args.includes('--verbose'),
  });
  const page = opt('--page', '/');
  console.log(`serving ${srv.url}${page}`);
  const stop = async () => { await srv.close(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
