// vite-app.mjs — the npm package as a user gets it: `npm pack`, install the tarball into a fresh Vite
// app (under build/, not committed; vite@7 is installed there from the npm registry), `vite build`,
// serve the output with COOP/COEP, run it in Chromium.

import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const APP = 'build/vite-app';

/** Returns {text, build, pkg: {filename, packedBytes, unpackedBytes, files}}. */
export async function viteAppTest({ newPage, startServer, prompt, model, n }) {
  fs.mkdirSync('build/npm', { recursive: true });
  const packed = JSON.parse(execFileSync('npm', ['pack', '--pack-destination', 'build/npm', '--json', '--loglevel=error'], { encoding: 'utf8' }))[0];
  const tarball = path.resolve('build/npm', packed.filename);
  const files = packed.files.map((f) => f.path);
  for (const need of ['web/index.js', 'web/index.d.ts', 'web/worker.js', 'dist/edgeinf-simd.wasm', 'dist/edgeinf-simd-mt.wasm', 'dist/edgeinf-simd-mt.worker.js'])
    if (!files.includes(need)) throw new Error(`package lacks ${need}`);
  if (files.some((f) => f.startsWith('web/demo') || f.startsWith('src/') || f.includes('node_modules')))
    throw new Error(`package has files it should not: ${files.join(', ')}`);

  fs.rmSync(APP, { recursive: true, force: true });
  fs.mkdirSync(`${APP}/public`, { recursive: true });
  // vite@7 comes from the npm registry here (not a devDependency of edgeinf: its platform-specific optional
  // packages keep `npm ci` from accepting the lock file that this npm writes).
  fs.writeFileSync(`${APP}/package.json`, JSON.stringify({ name: 'edgeinf-vite-check', private: true, type: 'module', devDependencies: { vite: '^7.3.0' } }, null, 2));
  fs.writeFileSync(`${APP}/index.html`, `<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>edgeinf in Vite</title></head>
<body><pre id="out">loading…</pre><script type="module" src="/main.js"></script></body></html>\n`);
  fs.writeFileSync(`${APP}/main.js`, `import { Engine } from 'edgeinf';
const out = document.getElementById('out');
async function main() {
  try {
    const engine = await Engine.load({ model: '/model.gguf', cache: false });
    const session = engine.createSession();
    const r = await session.generate(${JSON.stringify(prompt)}, { maxTokens: ${n}, temperature: 0 });
    out.textContent = r.text;
    out.dataset.build = engine.info().build;
  } catch (e) {
    out.dataset.error = (e.code || 'ERROR') + ': ' + e.message;
  }
  out.dataset.done = '1';
}
main();
`);
  fs.copyFileSync(model, `${APP}/public/model.gguf`);
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', tarball], { cwd: APP, stdio: 'pipe' });
  execFileSync(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '--logLevel', 'warn'], { cwd: APP, stdio: 'pipe' });

  const srv = await startServer({ root: `${APP}/dist`, isolation: true });
  const { context, page } = await newPage();
  try {
    await page.goto(`${srv.url}/`);
    await page.waitForSelector('#out[data-done]', { timeout: 120000 });
    const r = await page.evaluate(() => {
      const o = document.getElementById('out');
      return { text: o.textContent, error: o.dataset.error, build: o.dataset.build };
    });
    if (r.error) throw new Error(`Vite app: ${r.error}\n  console: ${page.logs.slice(-10).join('\n  ')}`);
    return { text: r.text, build: r.build, pkg: { filename: packed.filename, packedBytes: packed.size, unpackedBytes: packed.unpackedSize, files: files.length } };
  } finally {
    await context.close();
    await srv.close();
  }
}
