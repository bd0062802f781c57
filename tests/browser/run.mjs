// tests/browser/run.mjs — headless Chromium (Debian chromium + npm playwright-core) against the demo
// and the JS API, served by scripts/serve.mjs on 127.0.0.1 (one cross-origin isolated server, one
// not). Reference for generated text: the native CLI. Run from the repo root: `make test-browser`.
// Writes build/screenshots/demo.png and build/browser-results.json (load times, long tasks, sizes).

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../../scripts/serve.mjs';
import { createSuite, assert, assertEq, cliGreedy, fixturePrompt } from '../wasm/harness.mjs';
import { viteAppTest } from './vite-app.mjs';
import { registerSessionTests } from './sessions.mjs';
import { registerPolicyTests } from './policies.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TINY = 'tests/fixtures/tiny/tiny-q8_0.gguf';
const DEFAULT = 'models/edgeinf-default-q8_0.gguf';
const PROMPT = fixturePrompt();
const results = {};

// Fixture files derived from the tiny model.
fs.mkdirSync('build/browser-fixtures', { recursive: true });
const tinyBytes = fs.readFileSync(TINY);
fs.writeFileSync('build/browser-fixtures/truncated.gguf', tinyBytes.subarray(0, tinyBytes.length >> 1));

const iso = await startServer({ root: '.', isolation: true, testRoutes: true });
const plain = await startServer({ root: '.', isolation: false, testRoutes: true });
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
// Playwright gives every launch a fresh temporary --user-data-dir of its own.
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });

/** A fresh context (own storage) and page; console errors are collected for the failure message. */
async function newPage(t = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 } });
  const page = await context.newPage();
  page.logs = [];
  page.on('console', (m) => page.logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => page.logs.push(`pageerror: ${e.message}`));
  page.setDefaultTimeout(t.timeout || 60000);
  return { context, page };
}

/** Opens the demo and waits until it is ready to chat (or failed to load). */
async function openDemo(page, server, query = '') {
  await page.goto(`${server.url}/web/demo/${query}`);
  await page.waitForFunction(() => window.demo && (window.demo.ready || window.demo.loadError), null, { timeout: 120000 });
  return page.evaluate(() => ({ ready: window.demo.ready, loadError: window.demo.loadError, info: window.demo.info }));
}

/** Sends a chat message in the demo and waits for the reply to finish; returns the reply record. */
async function demoSend(page, text, maxTokens = 24) {
  await page.fill('#maxtok', String(maxTokens));
  const n = await page.evaluate(() => window.demo.replies.length);
  await page.fill('#prompt', text);
  await page.click('#send');
  await page.waitForFunction((k) => window.demo.replies[k] && window.demo.replies[k].done, n, { timeout: 120000 });
  return page.evaluate((k) => window.demo.replies[k], n);
}

/** Runs fn(page) in a fresh page on server's blank test page; closes the context afterwards. */
async function withPage(server, fn) {
  const { context, page } = await newPage();
  try {
    await page.goto(`${server.url}/tests/browser/blank.html`);
    return await fn(page);
  } catch (e) {
    e.message += page.logs.length ? `\n  browser console:\n    ${page.logs.slice(-15).join('\n    ')}` : '';
    throw e;
  } finally {
    await context.close();
  }
}

/** In the page: load a model through the worker API and generate greedily. */
async function pageGreedy(page, model, n, threads) {
  return page.evaluate(async ({ model, prompt, n, threads }) => {
    const { Engine } = await import('/web/index.js');
    const engine = await Engine.load({ model, threads, cache: false });
    const s = engine.createSession({ policy: 'full' });
    const r = await s.generate(prompt, { maxTokens: n, temperature: 0 });
    const info = engine.info();
    await engine.unload();
    return { text: r.text, info };
  }, { model: `/${model}`, prompt: PROMPT, n, threads });
}

const suite = createSuite('browser (headless Chromium)');
const test = suite.test;
const models = [TINY, 'tests/fixtures/tiny/tiny-q4_0.gguf'].concat(fs.existsSync(DEFAULT) ? [DEFAULT] : []);

// ------------------------------------------------------------------ builds and parity

for (const model of models) {
  test(`greedy output equals the native CLI, both wasm builds: ${model}`, async () => {
    const n = model === DEFAULT ? 24 : 32;
    const want = cliGreedy(model, PROMPT, n);
    const mt = await withPage(iso, (p) => pageGreedy(p, model, n, 2));
    assertEq(mt.info.build, 'simd-mt', 'isolated page uses the threaded build');
    assertEq(mt.text, want, 'simd-mt vs CLI');
    const st = await withPage(plain, (p) => pageGreedy(p, model, n, 'auto'));
    assertEq(st.info.build, 'simd', 'non-isolated page uses the single-thread build');
    assertEq(st.text, want, 'simd vs CLI');
  });
}

test('edgeinfinite with an adapter, past the window: both builds equal the native CLI', async () => {
  const ADAPTER = 'tests/fixtures/tiny-ei/tiny-ei-adapter.gguf';
  const want = cliGreedy(TINY, PROMPT, 80, ['--policy', 'edgeinfinite', '--adapter', ADAPTER, '--n-sink', '4', '--window', '16', '--seg', '8']);
  for (const server of [iso, plain]) {
    const r = await withPage(server, (page) => page.evaluate(async ({ model, adapter, prompt }) => {
      const { Engine } = await import('/web/index.js');
      const e = await Engine.load({ model, adapter, threads: 2 });
      const s = e.createSession({ policy: 'edgeinfinite', nSink: 4, window: 16, seg: 8 });
      const r = await s.generate(prompt, { maxTokens: 80, temperature: 0 });
      const out = { text: r.text, build: e.info().build, stats: s.stats() };
      await e.unload();
      return out;
    }, { model: `/${TINY}`, adapter: `/${ADAPTER}`, prompt: PROMPT }));
    assert(r.stats.compressions > 0, `memory used (${r.build})`);
    assertEq(r.text, want, `${r.build} vs CLI`);
  }
});

test('threads build picked when isolated, single-thread build when not (demo badges too)', async () => {
  for (const [server, build, isolated] of [[iso, 'simd-mt', true], [plain, 'simd', false]]) {
    const { context, page } = await newPage();
    try {
      const r = await openDemo(page, server, `?model=/${TINY}`);
      assert(r.ready, `demo ready (${JSON.stringify(r.loadError)})`);
      assertEq(r.info.build, build, 'build');
      assertEq(r.info.crossOriginIsolated, isolated, 'crossOriginIsolated');
      assertEq(r.info.worker, true, 'engine runs in a worker');
      const badges = await page.textContent('#badges');
      assert(badges.includes(isolated ? 'threads ×' : 'single thread'), `badges: ${badges}`);
    } finally {
      await context.close();
    }
  }
});

// ------------------------------------------------------------------ demo

test('the demo loads and streams: text arrives in several increments', async () => {
  const { context, page } = await newPage();
  try {
    const r = await openDemo(page, iso);
    assert(r.ready, `demo ready (${JSON.stringify(r.loadError)})`);
    // Watch the reply bubble from inside the page: every change of its text, with a timestamp.
    await page.evaluate(() => {
      window.__inc = [];
      new MutationObserver(() => {
        const b = document.querySelector('.msg.assistant:last-of-type');
        if (b) window.__inc.push({ t: performance.now(), len: b.textContent.length });
      }).observe(document.getElementById('messages'), { childList: true, subtree: true, characterData: true });
    });
    const reply = await demoSend(page, 'Tell me a short story about a robot.', 32);
    assert(!reply.error, `no error: ${JSON.stringify(reply.error)}`);
    const inc = await page.evaluate(() => window.__inc);
    const growing = inc.filter((x, i) => i > 0 && x.len > inc[i - 1].len);
    const times = new Set(growing.map((x) => x.t));
    assert(reply.chunks >= 3, `at least 3 text chunks, got ${reply.chunks}`);
    assert(times.size >= 3, `text grew at ${times.size} distinct moments`);
    results.demoStream = { chunks: reply.chunks, increments: times.size, tokensPerSecond: reply.tokensPerSecond, model: r.info.model.name };
  } finally {
    await context.close();
  }
});

test('stop aborts mid-stream, then a new reply works', async () => {
  const { context, page } = await newPage();
  try {
    const r = await openDemo(page, iso, `?model=/${TINY}`);
    assert(r.ready, 'demo ready');
    // Click Stop (as a user would) as soon as the reply has grown three times.
    await page.evaluate(() => {
      let n = 0;
      const obs = new MutationObserver(() => {
        const b = document.querySelector('.msg.assistant.streaming');
        if (b && b.textContent.length && ++n === 3) { document.getElementById('stop').click(); obs.disconnect(); }
      });
      obs.observe(document.getElementById('messages'), { childList: true, subtree: true, characterData: true });
    });
    const a = await demoSend(page, 'Count to one hundred.', 200);
    assertEq(a.finishReason, 'abort', 'first reply aborted');
    assert(!a.error, 'no error');
    const b = await demoSend(page, 'Again, please.', 12);
    assert(!b.error, `second reply: ${JSON.stringify(b.error)}`);
    assert(['stop', 'length'].includes(b.finishReason), `second reply finished: ${b.finishReason}`);
    assert(b.text.length > 0, 'second reply has text');
  } finally {
    await context.close();
  }
});

test('API: abort via AbortSignal between tokens; the session stays usable', async () => {
  const r = await withPage(iso, (page) => page.evaluate(async ({ model, prompt }) => {
    const { Engine } = await import('/web/index.js');
    const engine = await Engine.load({ model, cache: false });
    const s = engine.createSession();
    const ac = new AbortController();
    let n = 0;
    const a = await s.generate(prompt, { maxTokens: 100, temperature: 0, signal: ac.signal, onToken: () => { if (++n === 3) ac.abort(); } });
    const b = await s.generate(prompt, { maxTokens: 16, temperature: 0 });
    await engine.unload();
    return { a: a.finishReason, aTokens: a.usage.completionTokens, b: b.text };
  }, { model: `/${TINY}`, prompt: PROMPT }));
  assertEq(r.a, 'abort', 'aborted');
  assert(r.aTokens <= 4, `stopped within a token of the abort (${r.aTokens})`);
  assertEq(r.b, cliGreedy(TINY, PROMPT, 16), 'next generation after abort');
});

test('the page stays responsive during generation (no long main-thread tasks)', async () => {
  const { context, page } = await newPage();
  try {
    const r = await openDemo(page, iso, `?model=/${TINY}`);
    assert(r.ready, 'demo ready');
    await page.evaluate(() => {
      window.__long = [];
      new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); }).observe({ type: 'longtask' });
      window.__gaps = [];
      let last = performance.now();
      const tick = () => { const t = performance.now(); window.__gaps.push(t - last); last = t; if (!window.__stopTicks) setTimeout(tick, 10); };
      setTimeout(tick, 10);
    });
    const reply = await demoSend(page, 'Write a long answer.', 200);
    const m = await page.evaluate(() => { window.__stopTicks = true; return { long: window.__long, gaps: window.__gaps }; });
    const maxLong = Math.max(0, ...m.long);
    const maxGap = Math.max(0, ...m.gaps);
    results.responsiveness = { tokens: reply.text.length, longTasks: m.long.length, maxLongTaskMs: maxLong, maxTimerGapMs: maxGap };
    assert(maxLong < 100, `longest main-thread task ${maxLong.toFixed(0)} ms`);
    assert(maxGap < 150, `a 10 ms timer was late by up to ${maxGap.toFixed(0)} ms`);
  } finally {
    await context.close();
  }
});

test('a screenshot of the demo after a reply is saved', async () => {
  const { context, page } = await newPage();
  try {
    const r = await openDemo(page, iso);
    assert(r.ready, 'demo ready');
    await demoSend(page, 'Hello! What can you do?', 48);
    fs.mkdirSync('build/screenshots', { recursive: true });
    await page.screenshot({ path: 'build/screenshots/demo.png' });
    assert(fs.statSync('build/screenshots/demo.png').size > 10000, 'screenshot written');
  } finally {
    await context.close();
  }
});

// ------------------------------------------------------------------ cache

test('the second load comes from IndexedDB with the model URL unreachable', async () => {
  const model = fs.existsSync(DEFAULT) ? DEFAULT : TINY;
  const { context, page } = await newPage();
  try {
    const first = await openDemo(page, iso, `?model=/${model}`);
    assert(first.ready, `first load (${JSON.stringify(first.loadError)})`);
    assertEq(first.info.load.source, 'network', 'first load from the network');
    const cached = await page.evaluate(async () => (await import('/web/index.js')).Engine.cache.list());
    assert(cached.some((f) => f.url.endsWith(model) && f.size === fs.statSync(model).size), `cached entry: ${JSON.stringify(cached)}`);
    await fetch(`${iso.url}/__test/block?path=/${model}`);
    const reachable = await page.evaluate(async (u) => fetch(u).then(() => true, () => false), `/${model}`);
    assertEq(reachable, false, 'model URL unreachable');
    await page.reload();
    await page.waitForFunction(() => window.demo && (window.demo.ready || window.demo.loadError), null, { timeout: 120000 });
    const second = await page.evaluate(() => ({ ready: window.demo.ready, loadError: window.demo.loadError, info: window.demo.info }));
    assert(second.ready, `second load (${JSON.stringify(second.loadError)})`);
    assertEq(second.info.load.source, 'cache', 'second load from IndexedDB');
    const reply = await demoSend(page, 'Still there?', 12);
    assert(!reply.error && reply.text.length > 0, 'works offline');
    results.loadTimes = {
      model, sizeBytes: first.info.load.sizeBytes,
      networkMs: first.info.load.totalMs, networkFetchMs: first.info.load.fetchMs,
      cacheMs: second.info.load.totalMs, cacheReadMs: second.info.load.fetchMs,
    };
  } finally {
    await fetch(`${iso.url}/__test/unblock?path=/${model}`);
    await context.close();
  }
}, { timeoutMs: 300000 });

test('a corrupted cache entry is detected by its hash, dropped and downloaded again', async () => {
  const { context, page } = await newPage();
  try {
    const first = await openDemo(page, iso, `?model=/${TINY}`);
    assertEq(first.info.load.source, 'network', 'first load');
    // Flip one byte of the first stored chunk, keeping its size.
    const flipped = await page.evaluate(() => new Promise((resolve, reject) => {
      const req = indexedDB.open('edgeinf-cache');
      req.onerror = () => reject(req.error);
      req.onsuccess = () => {
        const db = req.result;
        const t = db.transaction(['chunks'], 'readwrite');
        const st = t.objectStore('chunks');
        const c = st.openCursor();
        c.onsuccess = () => {
          const cur = c.result;
          if (!cur) { resolve(false); return; }
          const u8 = new Uint8Array(cur.value.slice(0));
          u8[100] ^= 0xff;
          cur.update(u8.buffer);
        };
        t.oncomplete = () => { db.close(); resolve(true); };
      };
    }));
    assert(flipped, 'a chunk was modified');
    await page.reload();
    await page.waitForFunction(() => window.demo && (window.demo.ready || window.demo.loadError), null, { timeout: 60000 });
    const second = await page.evaluate(() => ({ ready: window.demo.ready, info: window.demo.info }));
    assert(second.ready, 'loads');
    assertEq(second.info.load.source, 'network', 'corrupted entry not used');
    assertEq(second.info.load.sha256, first.info.load.sha256, 'same file');
    await page.reload();
    await page.waitForFunction(() => window.demo && window.demo.ready, null, { timeout: 60000 });
    assertEq(await page.evaluate(() => window.demo.info.load.source), 'cache', 'cached again');
  } finally {
    await context.close();
  }
});

test('storage quota exceeded: the model still works and the page says it was not cached', async () => {
  const { context, page } = await newPage();
  try {
    const cdp = await context.newCDPSession(page);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: iso.url, quotaSize: 20000 });
    const r = await openDemo(page, iso, `?model=/${TINY}`);
    assert(r.ready, `demo ready (${JSON.stringify(r.loadError)})`);
    assertEq(r.info.load.cacheError && r.info.load.cacheError.code, 'QUOTA_EXCEEDED', 'cache error');
    assertEq(await page.getAttribute('#error', 'data-code'), 'QUOTA_EXCEEDED', 'error shown');
    assert(await page.isVisible('#error'), 'error visible');
    const cached = await page.evaluate(async () => (await import('/web/index.js')).Engine.cache.list());
    assertEq(cached.length, 0, 'nothing half-cached');
    const reply = await demoSend(page, 'Hi', 8);
    assert(!reply.error && reply.text.length > 0, 'model works');
  } finally {
    await context.close();
  }
});

// ------------------------------------------------------------------ bad input

const BAD = [
  ['a 404 model URL', '/models/no-such-model.gguf', 'HTTP', /404/],
  ['a truncated model file', '/build/browser-fixtures/truncated.gguf', 'FORMAT', /GGUF/],
  ['a non-GGUF file', '/web/demo/index.html', 'FORMAT', /GGUF/],
  ['a download cut off mid-way', `/__test/drop/${TINY}`, 'DOWNLOAD_INCOMPLETE', /download/i],
  ['an unreachable host', 'http://127.0.0.1:9/model.gguf', 'NETWORK', /fetch/],
];
for (const [what, url, code, re] of BAD) {
  test(`${what} shows a clear error in the page (${code}), and nothing is cached`, async () => {
    const { context, page } = await newPage();
    try {
      const r = await openDemo(page, iso, `?model=${encodeURIComponent(url)}`);
      assert(!r.ready, 'demo must not be ready');
      assertEq(r.loadError && r.loadError.code, code, 'error code');
      assert(await page.isVisible('#error'), 'error banner visible');
      const msg = await page.textContent('#error-message');
      assert(re.test(msg) && msg.length > 40, `actionable message: ${msg}`);
      const cached = await page.evaluate(async () => (await import('/web/index.js')).Engine.cache.list());
      assertEq(cached.length, 0, 'no cache entry');
      // A reload of the engine with a good model works in the same page.
      const ok = await page.evaluate(async (m) => {
        const { Engine } = await import('/web/index.js');
        const e = await Engine.load({ model: m, cache: false });
        const t = (await e.createSession().generate('Hi', { maxTokens: 4, temperature: 0 })).usage.completionTokens;
        await e.unload();
        return t;
      }, `/${TINY}`);
      assertEq(ok, 4, 'a good model loads afterwards');
    } finally {
      await context.close();
    }
  });
}

test('worker crash and wasm memory exhaustion give typed errors; a reload works', async () => {
  const r = await withPage(iso, (page) => page.evaluate(async (model) => {
    const { Engine, EdgeinfError } = await import('/web/index.js');
    const out = {};
    let e = await Engine.load({ model, cache: false });
    try { await e.createSession({ policy: 'full', nCtx: 2000000000 }).ready; } catch (x) { out.nomem = x.code; out.nomemTyped = x instanceof EdgeinfError; }
    out.afterNomem = (await e.createSession().generate('Hi', { maxTokens: 3, temperature: 0 })).usage.completionTokens;
    await e._simulateCrash();
    await new Promise((r) => setTimeout(r, 200));
    try { await e.createSession().generate('Hi', { maxTokens: 3 }); } catch (x) { out.crash = x.code; out.crashMsg = x.message; }
    e = await Engine.load({ model, cache: false });
    out.afterCrash = (await e.createSession().generate('Hi', { maxTokens: 3, temperature: 0 })).usage.completionTokens;
    await e.unload();
    return out;
  }, `/${TINY}`));
  assertEq(r.nomem, 'NOMEM', 'huge KV cache');
  assert(r.nomemTyped, 'EdgeinfError');
  assertEq(r.afterNomem, 3, 'works after NOMEM');
  assertEq(r.crash, 'WORKER_CRASHED', `worker crash (${r.crashMsg})`);
  assertEq(r.afterCrash, 3, 'a new engine works after the crash');
});

test('OpenAI-shaped streaming completions in the browser', async () => {
  const r = await withPage(iso, (page) => page.evaluate(async (model) => {
    const { Engine } = await import('/web/index.js');
    const e = await Engine.load({ model, cache: false });
    const req = { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10, temperature: 0 };
    const full = await e.chat.completions.create(req);
    let text = '', n = 0;
    for await (const c of await e.chat.completions.create({ ...req, stream: true })) { text += c.choices[0].delta.content || ''; n++; }
    await e.unload();
    return { full: full.choices[0].message.content, text, n };
  }, `/${TINY}`));
  assertEq(r.text, r.full, 'stream adds up to the full reply');
  assert(r.n >= 3, 'several chunks');
});

// ------------------------------------------------------------------ saved sessions (tests/browser/sessions.mjs)

const DEFAULT_ADAPTER = 'models/edgeinf-default-adapter.gguf';
registerSessionTests({
  test, newPage, openDemo, demoSend, iso, plain, results, prompt: PROMPT, chromium, chromiumPath: CHROMIUM, chromiumArgs: CHROMIUM_ARGS,
  defaultModel: fs.existsSync(DEFAULT) ? { model: DEFAULT, adapter: fs.existsSync(DEFAULT_ADAPTER) ? DEFAULT_ADAPTER : null } : null,
});

// ------------------------------------------------------------------ model choice and policies (tests/browser/policies.mjs)

registerPolicyTests({ test, newPage, openDemo, demoSend, iso, results });

test('npm pack -> fresh Vite app -> build -> Chromium: greedy output appears', async () => {
  const r = await viteAppTest({ browser, newPage, startServer, prompt: PROMPT, model: TINY, n: 24 });
  results.npmPackage = r.pkg;
  assertEq(r.text, cliGreedy(TINY, PROMPT, 24), 'Vite app output vs CLI');
}, { timeoutMs: 400000 });

const res = await suite.run();
fs.writeFileSync('build/browser-results.json', JSON.stringify(results, null, 2));
console.log(`results: ${path.resolve('build/browser-results.json')}`);
await browser.close();
await iso.close();
await plain.close();
process.exit(res.failed ? 1 : 0);
