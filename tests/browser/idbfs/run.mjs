// tests/browser/idbfs/run.mjs — `make idbfs-check`: why saved sessions do not use Emscripten's IDBFS (see
// web/session-store.js). Builds a minimal module with -sFILESYSTEM=1 -lidbfs.js (single-thread and -pthread) under
// build/idbfs-check/, runs it in a Web Worker in headless Chromium, and checks three observations. A check that fails
// means this Emscripten/Chromium no longer behaves that way: time to reconsider IDBFS.
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { startServer } from '../../../scripts/serve.mjs';
import { createSuite, assert, assertEq } from '../../wasm/harness.mjs';

const OUT = 'build/idbfs-check';
const SRC = 'tests/browser/idbfs';
fs.mkdirSync(OUT, { recursive: true });
const flags = ['-O2', '-sMODULARIZE=1', '-sEXPORT_ES6=1', '-sEXPORT_NAME=createSpike', '-sALLOW_MEMORY_GROWTH=1',
  '-sFILESYSTEM=1', '-lidbfs.js', '-sEXPORTED_RUNTIME_METHODS=FS,stringToUTF8', '-sEXPORTED_FUNCTIONS=_malloc,_free',
  '-sENVIRONMENT=web,worker'];
const env = { ...process.env, NODE_PATH: '/usr/share/nodejs' };
execFileSync(process.env.EMCC || 'emcc', [`${SRC}/spike.c`, ...flags, '-o', `${OUT}/spike-st.js`], { env, stdio: 'pipe' });
execFileSync(process.env.EMCC || 'emcc', [`${SRC}/spike.c`, ...flags, '-pthread', '-sPTHREAD_POOL_SIZE=1', '-o', `${OUT}/spike-mt.js`], { env, stdio: 'pipe' });
for (const f of ['worker.js', 'index.html']) fs.copyFileSync(`${SRC}/${f}`, `${OUT}/${f}`);

const srv = await startServer({ root: '.', isolation: true });
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
const suite = createSuite('Emscripten IDBFS in a worker (why web/session-store.js uses IndexedDB transactions)');

async function page(quota) {
  const context = await browser.newContext();
  const p = await context.newPage();
  if (quota) await (await context.newCDPSession(p)).send('Storage.overrideQuotaForOrigin', { origin: srv.url, quotaSize: quota });
  await p.goto(`${srv.url}/${OUT}/index.html`);
  await p.waitForFunction(() => window.ready);
  return { context, p };
}

for (const build of ['st', 'mt']) {
  test(`${build}: a save (temp file, sync, rename, sync) works in a worker`, async () => {
    const { context, p } = await page();
    try {
      const r = await p.evaluate(async (build) => {
        const A = W(build);
        const out = [await A('init'), await A('write', { name: 'x.tmp', n: 50000, v: 1 }), await A('sync')];
        await A('rename', { from: 'x.tmp', to: 'x' });
        out.push(await A('sync'));
        return { out, stored: await stored() };
      }, build);
      assert(r.out.every((x) => x.ok !== false && x.rc !== -1), JSON.stringify(r.out));
      assertEq(r.stored.join(','), '/ck/x', 'stored paths');
    } finally { await context.close(); }
  });

  test(`${build}: a second worker's sync deletes what the first stored meanwhile`, async () => {
    const { context, p } = await page();
    try {
      const r = await p.evaluate(async (build) => {
        const A = W(build), B = W(build);
        await A('init');
        await B('init');
        await A('write', { name: 'saved-by-a', n: 1000, v: 2 });
        await A('sync');
        const between = await stored();
        await B('write', { name: 'saved-by-b', n: 1000, v: 3 });
        await B('sync');
        return { between, after: await stored() };
      }, build);
      assertEq(r.between.join(','), '/ck/saved-by-a', 'after A');
      assertEq(r.after.join(','), '/ck/saved-by-b', "after B's sync: A's save is gone");
    } finally { await context.close(); }
  });

  test(`${build}: over quota the sync never calls back (the transaction aborts with QuotaExceededError)`, async () => {
    const { context, p } = await page(400000);
    try {
      const r = await p.evaluate(async (build) => {
        const A = W(build);
        await A('init');
        await A('write', { name: 'x', n: 50000, v: 9 });
        const small = await A('sync');
        await A('write', { name: 'x.tmp', n: 3000000, v: 9 });
        const big = await A('sync');
        return { small, big, stored: await stored(), memfs: await A('list'), logs: window.logs };
      }, build);
      assert(r.small.ok, 'small sync');
      assertEq(r.big.hung, true, `the big sync's callback (${JSON.stringify(r.big)})`);
      assert(r.logs.some((l) => /QuotaExceededError/.test(l)), `abort logged: ${r.logs}`);
      assertEq(r.stored.join(','), '/ck/x', 'the database kept the old state');
      assertEq(r.memfs.join(','), 'x,x.tmp', 'the in-memory FS holds the unsynced file');
    } finally { await context.close(); }
  }, { timeoutMs: 30000 });
}

function test(name, fn, o) { suite.test(name, fn, o); }
const res = await suite.run();
await browser.close();
await srv.close();
process.exit(res.failed ? 1 : 0);
