// tests/browser/sessions.mjs — saved sessions in headless Chromium: IndexedDB across a page reload (both builds), the
// demo's "Saved conversations" panel, quota exceeded during a save, damaged stored records, two tabs saving side by
// side. Reference for "identical continuation": the same engine continuing without a reload. Registered by
// tests/browser/run.mjs, which passes its helpers.

import fs from 'node:fs';
import { assert, assertEq } from '../wasm/harness.mjs';

const TINY = 'tests/fixtures/tiny/tiny-q8_0.gguf';
const ADAPTER = 'tests/fixtures/tiny-ei/tiny-ei-adapter.gguf';
const LAYOUT = { nSink: 4, window: 16, seg: 8 };


export function registerSessionTests({ test, newPage, openDemo, demoSend, iso, plain, results, prompt, defaultModel, chromium, chromiumPath, chromiumArgs }) {
  results.sessions = {};
  const files = { model: `/${TINY}`, adapter: `/${ADAPTER}` };

  for (const [server, build] of [[iso, 'simd-mt'], [plain, 'simd']]) {
    test(`${build}: chat, save, RELOAD the page, restore, continue -> the continuation of a run without reload`, async () => {
      const { context, page } = await newPage();
      try {
        await page.goto(`${server.url}/tests/browser/blank.html`);
        const before = await page.evaluate(async ({ files, prompt, layout }) => {
          const e = await (await import('/web/index.js')).Engine.load({ ...files, cache: false });
          const opts = { policy: 'edgeinfinite', ...layout };
          const ids = (arr) => (c) => { if (c.token >= 0) arr.push(c.token); };
          // A chat: save after the first reply, then the second reply without any reload (the reference).
          const a = e.createSession(opts);
          const m1 = [{ role: 'user', content: 'Tell me about the sea.' }];
          const r1 = await a.chat(m1, { maxTokens: 24, temperature: 0 });
          const savedChat = await a.save('chat');
          const r2 = await a.chat(a.messages.concat({ role: 'user', content: 'And the mountains?' }), { maxTokens: 24, temperature: 0 });
          // Token-exact: 30 tokens, save, (reload), 30 more == one run of 60.
          const whole = [], first = [];
          await e.createSession(opts).generate(prompt, { maxTokens: 60, temperature: 0, onToken: ids(whole) });
          const b = e.createSession(opts);
          await b.generate(prompt, { maxTokens: 30, temperature: 0, onToken: ids(first) });
          const compressions = b.stats().compressions;
          const savedCont = await b.save('cont');
          const build = e.info().build;
          await e.unload();
          return { r1: r1.text, r2: r2.text, whole, first, compressions, savedChat, savedCont, build };
        }, { files, prompt, layout: LAYOUT});
        assertEq(before.build, build, 'build');
        assert(before.compressions > 0, 'the compressed memory was in use when saved');

        await page.reload();
        const after = await page.evaluate(async ({ files }) => {
          const e = await (await import('/web/index.js')).Engine.load({ ...files, cache: false });
          const list = await e.listSessions();
          const c = await e.restore('chat');
          const messages = c.messages;
          const r2 = await c.chat(messages.concat({ role: 'user', content: 'And the mountains?' }), { maxTokens: 24, temperature: 0 });
          const k = await e.restore('cont');
          const rest = [];
          await k.continue({ maxTokens: 30, onToken: (x) => { if (x.token >= 0) rest.push(x.token); } });
          const out = { list, messages, r2: r2.text, rest, restored: k.restored, policy: k.policy, stats: k.stats() };
          await e.unload();
          return out;
        }, { files });
        assertEq(after.list.map((x) => x.name).sort().join(','), 'chat,cont', 'listed after the reload');
        assert(after.list.every((x) => x.compatible && x.policy === 'edgeinfinite' && x.bytes > 0), `list: ${JSON.stringify(after.list)}`);
        assertEq(JSON.stringify(after.messages), JSON.stringify([{ role: 'user', content: 'Tell me about the sea.' }, { role: 'assistant', content: before.r1 }]), 'transcript');
        assertEq(after.r2, before.r2, 'chat reply after the reload');
        assertEq(before.first.concat(after.rest).join(' '), before.whole.join(' '), '30 + (reload) 30 tokens vs one run of 60');
        assertEq(after.policy, 'edgeinfinite', 'policy');
        results.sessions[build] = {
          model: TINY, policy: 'edgeinfinite', layout: LAYOUT, bytes: before.savedCont.bytes,
          saveMs: before.savedCont.timings.totalMs, serializeMs: before.savedCont.timings.serializeMs,
          storeMs: before.savedCont.timings.storeMs, restoreMs: after.restored.timings.totalMs,
          readMs: after.restored.timings.readMs, loadMs: after.restored.timings.loadMs,
        };
      } finally {
        await context.close();
      }
    });
  }

  test('a saved session survives closing the browser (profile on disk); sizes and save/restore times measured there', async () => {
    // Playwright's ordinary contexts keep IndexedDB in memory: here a persistent profile under build/ writes it to
    // disk (with the strict durability the store asks for), and the browser is closed and started again in between.
    const profile = 'build/browser-profile-sessions';
    fs.rmSync(profile, { recursive: true, force: true });
    const launch = () => chromium.launchPersistentContext(profile, { executablePath: chromiumPath, args: chromiumArgs });
    const models = [[TINY, ADAPTER]].concat(defaultModel ? [[defaultModel.model, defaultModel.adapter]] : []);
    const runIn = async (fn, arg) => {
      const ctx = await launch();
      try {
        const page = ctx.pages()[0] || (await ctx.newPage());
        await page.goto(`${iso.url}/tests/browser/blank.html`);
        return await page.evaluate(fn, arg);
      } finally {
        await ctx.close();
      }
    };
    const before = [], after = [];
    for (const [model, adapter] of models) {
      const mf = { model: `/${model}`, adapter: adapter ? `/${adapter}` : undefined };
      before.push(await runIn(async ({ files, prompt }) => {
        const e = await (await import('/web/index.js')).Engine.load({ ...files, cache: false });
        const rows = [];
        // Default layouts (the adapter's when there is one), and for the tiny model also 16 + 128 + 64.
        const configs = [{ policy: 'streaming' }].concat(e.info().adapter ? [{ policy: 'edgeinfinite' }] : []);
        if (e.info().model.nCtxTrain <= 256) configs.push(...configs.map((c) => ({ ...c, nSink: 16, window: 128, seg: 64 })));
        for (const cfg of configs) {
          const name = `${cfg.policy}-${cfg.window || 'default'}`;
          const s = e.createSession(cfg);
          const first = [];
          await s.generate(prompt.repeat(4), { maxTokens: 16, temperature: 0, onToken: (c) => { if (c.token >= 0) first.push(c.token); } });
          const saves = [], restores = [];
          for (let i = 0; i < 3; i++) saves.push(await s.save(name));
          for (let i = 0; i < 3; i++) { const b = await e.restore(name); restores.push(b.restored.timings); await b.free(); }
          const more = [];
          await s.continue({ maxTokens: 16, onToken: (c) => { if (c.token >= 0) more.push(c.token); } });
          const st = s.stats();
          rows.push({ name, policy: cfg.policy, layout: [st.nSink, st.window, st.seg], tokens: saves[0].tokens, bytes: saves[0].bytes, saves, restores, more });
        }
        const model = e.info().model.name;
        await e.unload();
        return { model, rows };
      }, { files: mf, prompt }));
      after.push(await runIn(async ({ files, names }) => {
        const e = await (await import('/web/index.js')).Engine.load({ ...files, cache: false });
        const rows = [];
        for (const name of names) {
          const b = await e.restore(name);
          const more = [];
          await b.continue({ maxTokens: 16, onToken: (c) => { if (c.token >= 0) more.push(c.token); } });
          rows.push({ name, timings: b.restored.timings, more });
        }
        await e.unload();
        return rows;
      }, { files: mf, names: before[before.length - 1].rows.map((r) => r.name) }));
    }
    const out = [];
    before.forEach((m, i) => m.rows.forEach((row, j) => {
      const cold = after[i][j];
      assertEq(cold.more.join(' '), row.more.join(' '), `${m.model} ${row.name}: continuation after a browser restart`);
      assert(row.saves.every((x) => x.bytes === row.bytes), 'same size every time');
      const best = (xs, f) => Math.min(...xs.map(f));
      out.push({
        model: m.model, policy: row.policy, layout: row.layout, tokens: row.tokens, bytes: row.bytes,
        saveMs: best(row.saves, (x) => x.timings.totalMs), serializeMs: best(row.saves, (x) => x.timings.serializeMs),
        storeMs: best(row.saves, (x) => x.timings.storeMs),
        restoreMs: best(row.restores, (x) => x.totalMs), readMs: best(row.restores, (x) => x.readMs), loadMs: best(row.restores, (x) => x.loadMs),
        coldRestoreMs: cold.timings.totalMs,
      });
    }));
    results.sessions.disk = out;
    for (const r of out)
      console.log(`     ${r.model} ${r.policy} ${r.layout.join('+')}: ${r.bytes} B after ${r.tokens} tokens; save ${r.saveMs.toFixed(1)} ms (serialise ${r.serializeMs.toFixed(1)}, store ${r.storeMs.toFixed(1)}), restore ${r.restoreMs.toFixed(1)} ms (read ${r.readMs.toFixed(1)}, load ${r.loadMs.toFixed(1)}), after a restart ${r.coldRestoreMs.toFixed(1)} ms`);
  }, { timeoutMs: 300000 });

  test('the demo saves a conversation, lists it after a reload, and resumes it with the same continuation', async () => {
    const { context, page } = await newPage();
    try {
      const q = `?model=/${TINY}&adapter=/${ADAPTER}&policy=edgeinfinite&cache=0`;
      const r = await openDemo(page, iso, q);
      assert(r.ready, `demo ready (${JSON.stringify(r.loadError)})`);
      await page.evaluate(() => { const t = document.getElementById('temp'); t.value = '0'; t.dispatchEvent(new Event('input')); });
      const a1 = await demoSend(page, 'Tell me about the sea.', 24);
      assert(!a1.error, `first reply: ${JSON.stringify(a1.error)}`);
      await page.fill('#save-name', 'Sea chat');
      await page.click('#save');
      await page.waitForFunction(() => window.demo.lastSave && (window.demo.saved || []).some((x) => x.name === 'Sea chat'));
      assert(await page.isVisible('#saved-list li[data-name="Sea chat"]'), 'listed in the panel');
      const hint = await page.textContent('#save-hint');
      assert(/Saved "Sea chat"/.test(hint), `save hint: ${hint}`);
      const ref = await demoSend(page, 'And the mountains?', 24); // continuation without reload
      assert(!ref.error && ref.text.length > 0, 'reference reply');

      await page.reload();
      await page.waitForFunction(() => window.demo && window.demo.ready && window.demo.saved, null, { timeout: 120000 });
      assert(await page.isVisible('#saved-list li[data-name="Sea chat"]'), 'listed after the reload');
      assertEq(await page.$$eval('.msg', (m) => m.length), 0, 'a fresh chat after the reload');
      await page.evaluate(() => { const t = document.getElementById('temp'); t.value = '0'; t.dispatchEvent(new Event('input')); });
      await page.click('#saved-list li[data-name="Sea chat"] button.resume');
      await page.waitForFunction(() => window.demo.lastRestore || window.demo.lastResumeError);
      const restored = await page.evaluate(() => ({ r: window.demo.lastRestore, err: window.demo.lastResumeError }));
      assert(!restored.err, `resume: ${JSON.stringify(restored.err)}`);
      const bubbles = await page.$$eval('.msg', (ms) => ms.map((m) => ({ role: m.classList.contains('user') ? 'user' : 'assistant', text: m.firstChild ? m.firstChild.textContent : '' })));
      assertEq(JSON.stringify(bubbles), JSON.stringify([{ role: 'user', text: 'Tell me about the sea.' }, { role: 'assistant', text: a1.text }]), 'transcript restored');
      assertEq(await page.inputValue('#policy'), 'edgeinfinite', 'policy shown');
      const b2 = await demoSend(page, 'And the mountains?', 24);
      assertEq(b2.text, ref.text, 'reply after resume == reply without reload');
      fs.mkdirSync('build/screenshots', { recursive: true });
      await page.screenshot({ path: 'build/screenshots/demo-saved.png' });
      // Delete it from the panel.
      await page.click('#saved-list li[data-name="Sea chat"] button.delete');
      await page.waitForFunction(() => !(window.demo.saved || []).some((x) => x.name === 'Sea chat'));
      assert(!(await page.isVisible('#saved-list li[data-name="Sea chat"]')), 'gone from the panel');
    } finally {
      await context.close();
    }
  });

  test('quota exceeded during a save: QUOTA_EXCEEDED, the previous save stays intact and restorable', async () => {
    const { context, page } = await newPage();
    try {
      // Room for the database and one small checkpoint (~22 KB), not for a 134 KB one.
      const cdp = await context.newCDPSession(page);
      await cdp.send('Storage.overrideQuotaForOrigin', { origin: iso.url, quotaSize: 160000 });
      await page.goto(`${iso.url}/tests/browser/blank.html`);
      const r = await page.evaluate(async ({ files, prompt, layout }) => {
        const e = await (await import('/web/index.js')).Engine.load({ ...files, cache: false });
        const ids = (arr) => (c) => { if (c.token >= 0) arr.push(c.token); };
        const small = e.createSession({ policy: 'edgeinfinite', ...layout });
        await small.generate(prompt, { maxTokens: 20, temperature: 0 });
        const first = await small.save('keep');
        const want = [];
        await (await e.restore('keep')).continue({ maxTokens: 12, onToken: ids(want) });
        const big = e.createSession({ policy: 'streaming', nSink: 4, window: 248, seg: 4 });
        await big.generate(prompt + prompt, { maxTokens: 20, temperature: 0 });
        const errs = [];
        for (const name of ['keep', 'other']) {
          try { await big.save(name); errs.push(null); } catch (x) { errs.push({ code: x.code, message: x.message }); }
        }
        const list = await e.listSessions();
        const got = [];
        const back = await e.restore('keep');
        await back.continue({ maxTokens: 12, onToken: ids(got) });
        await e.unload();
        return { first, errs, list, want, got, tokens: back.stats().tokens };
      }, { files, prompt, layout: LAYOUT});
      for (const [i, name] of ['keep', 'other'].entries()) {
        assert(r.errs[i], `saving "${name}" must fail`);
        assertEq(r.errs[i].code, 'QUOTA_EXCEEDED', `code for "${name}"`);
        assert(/quota/.test(r.errs[i].message) && /intact/.test(r.errs[i].message), `message: ${r.errs[i].message}`);
      }
      assertEq(r.list.map((x) => `${x.name}:${x.bytes}`).join(','), `keep:${r.first.bytes}`, 'only the first save is stored');
      assertEq(r.got.join(' '), r.want.join(' '), 'the previous save restores and continues as before');
      results.sessions.quota = { quotaBytes: 160000, keptBytes: r.first.bytes, message: r.errs[0].message };
    } finally {
      await context.close();
    }
  });

  test('a truncated or bit-flipped stored checkpoint is refused with FORMAT; it stays listed and deletable', async () => {
    const { context, page } = await newPage();
    try {
      await page.goto(`${iso.url}/tests/browser/blank.html`);
      // Rewrites the stored checkpoint of `name` in IndexedDB with f(bytes), as storage corruption would.
      const tamper = (name, how) => page.evaluate(({ name, how }) => new Promise((resolve, reject) => {
        const req = indexedDB.open('edgeinf-sessions');
        req.onerror = () => reject(req.error);
        req.onsuccess = () => {
          const db = req.result;
          const t = db.transaction(['payloads'], 'readwrite');
          const st = t.objectStore('payloads');
          const g = st.get(name);
          g.onsuccess = () => {
            const rec = g.result;
            let u8 = new Uint8Array(rec.checkpoint.slice(0));
            if (how === 'truncate') u8 = u8.slice(0, u8.length - 1000);
            else u8[u8.length >> 1] ^= 0x20;
            rec.checkpoint = u8.buffer;
            st.put(rec);
          };
          t.oncomplete = () => { db.close(); resolve(true); };
          t.onabort = () => reject(t.error);
        };
      }), { name, how });
      await page.evaluate(async ({ files, prompt, layout }) => {
        const e = await (await import('/web/index.js')).Engine.load({ ...files, cache: false });
        const s = e.createSession({ policy: 'edgeinfinite', ...layout });
        await s.generate(prompt, { maxTokens: 20, temperature: 0 });
        for (const n of ['cut', 'flip', 'good']) await s.save(n);
        await e.unload();
      }, { files, prompt, layout: LAYOUT});
      await tamper('cut', 'truncate');
      await tamper('flip', 'flip');
      const r = await page.evaluate(async ({ files }) => {
        const e = await (await import('/web/index.js')).Engine.load({ ...files, cache: false });
        const out = {};
        for (const n of ['cut', 'flip']) {
          try { await e.restore(n); out[n] = null; } catch (x) { out[n] = { code: x.code, message: x.message }; }
        }
        out.listed = (await e.listSessions()).map((x) => x.name).sort();
        out.good = (await (await e.restore('good')).continue({ maxTokens: 4 })).usage.completionTokens;
        out.deleted = [await e.deleteSession('cut'), await e.deleteSession('flip')];
        out.after = (await e.listSessions()).map((x) => x.name);
        await e.unload();
        return out;
      }, { files });
      assertEq(r.cut && r.cut.code, 'FORMAT', 'truncated');
      assert(/truncated/.test(r.cut.message) && /damaged/.test(r.cut.message), `truncated message: ${r.cut.message}`);
      assertEq(r.flip && r.flip.code, 'FORMAT', 'bit flip');
      assert(/CRC|differ/.test(r.flip.message), `bit-flip message: ${r.flip.message}`);
      assertEq(r.listed.join(','), 'cut,flip,good', 'damaged ones still listed');
      assertEq(r.good, 4, 'an intact save still works');
      assertEq(r.deleted.join(','), 'true,true', 'deleted');
      assertEq(r.after.join(','), 'good', 'list after delete');
    } finally {
      await context.close();
    }
  });

  test('two tabs save side by side without erasing each other', async () => {
    const { context, page } = await newPage();
    const page2 = await context.newPage();
    try {
      for (const p of [page, page2]) await p.goto(`${iso.url}/tests/browser/blank.html`);
      const setup = ({ files }) => (async () => { window.__e = await (await import('/web/index.js')).Engine.load({ ...files, cache: false }); window.__s = window.__e.createSession({ policy: 'full' }); await window.__s.generate('Hi', { maxTokens: 2, temperature: 0 }); })();
      await Promise.all([page, page2].map((p) => p.evaluate(setup, { files })));
      await page.evaluate(() => window.__s.save('from-tab-1'));
      await page2.evaluate(() => window.__s.save('from-tab-2'));
      await page.evaluate(() => window.__s.save('from-tab-1b'));
      const lists = await Promise.all([page, page2].map((p) => p.evaluate(async () => (await window.__e.listSessions()).map((x) => x.name).sort().join(','))));
      assertEq(lists[0], 'from-tab-1,from-tab-1b,from-tab-2', 'tab 1 sees all');
      assertEq(lists[1], lists[0], 'tab 2 sees the same');
    } finally {
      await context.close();
    }
  });
}
