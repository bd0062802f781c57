// server.mjs — tiny static server for the wllama cross-check, on 127.0.0.1 (random port).
// Every response carries COOP same-origin + COEP require-corp (+ CORP same-origin) so the page is cross-origin
// isolated: SharedArrayBuffer exists and wllama may pick its multi-thread build when asked for threads > 1.
// Routes (nothing else is reachable, no directory listing, no path escapes):
//   /page/<file>    files of tests/wllama/ (the page)
//   /wllama/<path>  node_modules/@wllama/wllama/esm/<path> (wllama's ES module, worker code and wasm files)
//   /model/<i>      the i-th GGUF of the list given to startServer (any path on disk)
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8', '.wasm': 'application/wasm', '.json': 'application/json' };

// Maps a URL path below `base` to a file, refusing anything that would leave `base`.
function under(base, rel) {
  const p = path.resolve(base, '.' + path.posix.normalize('/' + decodeURIComponent(rel)));
  return p.startsWith(path.resolve(base) + path.sep) ? p : null;
}

// Starts the server. pageDir, wllamaDir: folders; models: GGUF paths. Resolves to { url, close() }; the caller owns
// the server and must close it.
export function startServer({ pageDir, wllamaDir, models }) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let file = null;
    if (url.pathname.startsWith('/page/')) file = under(pageDir, url.pathname.slice(6));
    else if (url.pathname.startsWith('/wllama/')) file = under(wllamaDir, url.pathname.slice(8));
    else if (/^\/model\/\d+$/.test(url.pathname)) file = models[Number(url.pathname.slice(7))] ?? null;
    const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin', 'Cache-Control': 'no-store' };
    let st = null;
    try { st = file && fs.statSync(file); } catch { st = null; }
    if (!st || !st.isFile()) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Length': st.size,
      'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream' });
    if (req.method === 'HEAD') { res.end(); return; }
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}`,
      close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
    }));
  });
}
