// tests/browser/policies.mjs — the demo's "Model" choice and attention policies in headless Chromium (issue 7:
// policy selectable in the demo with live KV bytes): the PoD post-trained set (?set=pod) serves pod and
// edgeinfinite+pod, the stats panel updates while tokens arrive, pod's displayed KV bytes are below full's with the
// same model, and the default set explains (instead of breaking) when pod is chosen. Registered by
// tests/browser/run.mjs, which passes its helpers.

import fs from 'node:fs';
import { assert, assertEq } from '../wasm/harness.mjs';

const TINY = 'tests/fixtures/tiny/tiny-q8_0.gguf';
const DEFAULT_SET = ['models/edgeinf-default-q8_0.gguf', 'models/edgeinf-default-adapter.gguf'];
const POD_SET = ['models/edgeinf-podtrained-q8_0.gguf', 'models/edgeinf-podtrained-eipod.gguf'];
const POD_LABEL = 'PoD post-trained (all policies)';
const UNITS = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };

/** Bytes from a displayed size such as "5.4 MB (68% of full)"; throws on anything else. */
export function parseShownBytes(text) {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB)\b/.exec(text || '');
  if (!m) throw new Error(`not a displayed size: ${JSON.stringify(text)}`);
  return Number(m[1]) * UNITS[m[2]];
}

/** The stats panel as the page shows it. */
const readPanel = (page) => page.evaluate(() => {
  const t = (id) => document.getElementById(id).textContent;
  return {
    policy: t('st-policy'), tokens: t('st-tokens'), kvTokens: t('st-kvtokens'), kv: t('st-kv'), kvFull: t('st-kvfull'), mem: t('st-mem'),
    kvAttr: Number(document.getElementById('st-kv').dataset.bytes), memAttr: Number(document.getElementById('st-mem').dataset.bytes),
    api: window.demo.session.stats(),
  };
});

/** Selects a policy in the demo and waits until its session is in use; returns the hint text. */
async function choosePolicy(page, policy) {
  await page.selectOption('#policy', policy);
  await page.waitForFunction((p) => window.demo.session && window.demo.session.policy === p, policy, { timeout: 60000 });
  return page.textContent('#policy-hint');
}

/** Sends a message and records, from inside the page, every value the stats panel showed while the reply streamed. */
async function sendWatchingStats(page, demoSend, text, n) {
  await page.evaluate(() => {
    window.__seen = { tokens: [], kv: [], mem: [] };
    const rec = () => {
      const s = window.__seen, g = (id) => document.getElementById(id).textContent;
      if (!document.querySelector('.msg.assistant.streaming')) return;
      if (s.tokens[s.tokens.length - 1] !== g('st-tokens')) s.tokens.push(g('st-tokens'));
      s.kv.push(g('st-kv'));
      s.mem.push(g('st-mem'));
    };
    window.__obs && window.__obs.disconnect();
    window.__obs = new MutationObserver(rec);
    window.__obs.observe(document.querySelector('.stats'), { childList: true, subtree: true, characterData: true });
  });
  const reply = await demoSend(page, text, n);
  const seen = await page.evaluate(() => { window.__obs.disconnect(); return window.__seen; });
  return { reply, seen };
}

export function registerPolicyTests({ test, newPage, openDemo, demoSend, iso, results }) {
  const have = (files) => files.every((f) => fs.existsSync(f));
  results.demoPolicies = {};

  test('demo ?set=pod: pod and edgeinfinite+pod generate, stats live, pod shows fewer KV bytes than full', async () => {
    if (!have(POD_SET)) return `skip: ${POD_SET.join(' / ')} not present`;
    const { context, page } = await newPage();
    try {
      const r = await openDemo(page, iso, '?set=pod');
      assert(r.ready, `demo ready (${JSON.stringify(r.loadError)})`);
      assertEq(await page.inputValue('#model-set'), 'pod', 'model choice shown');
      assert(r.info.adapter, 'adapter loaded');
      assert((await page.textContent('#model-info')).includes('edgeinf-podtrained-eipod.gguf'), 'adapter file named in the model card');
      // auto resolves to edgeinfinite+pod with this adapter.
      assertEq(await page.textContent('#st-policy'), 'edgeinfinite+pod', 'auto in use');
      const shown = {};
      for (const policy of ['full', 'pod', 'edgeinfinite+pod']) {
        const hint = await choosePolicy(page, policy);
        assert(hint.includes(`Using "${policy}"`), `hint for ${policy}: ${hint}`);
        const { reply, seen } = await sendWatchingStats(page, demoSend, 'Tell me about the sea.', 8);
        assert(!reply.error, `${policy}: reply without error (${JSON.stringify(reply.error)})`);
        assert(reply.text.length > 0, `${policy}: reply has text`);
        const p = await readPanel(page);
        assertEq(p.policy, policy, `${policy}: policy in use shown`);
        // Live: the panel changed while the reply streamed (a new token count at least 3 times), and the KV bytes
        // were on display throughout.
        assert(seen.tokens.length >= 3, `${policy}: token count updated live (${JSON.stringify(seen.tokens)})`);
        assert(seen.kv.length > 0 && seen.kv.every((x) => parseShownBytes(x) > 0), `${policy}: KV bytes shown during the reply`);
        assertEq(p.kvAttr, p.api.kvBytes, `${policy}: panel KV bytes == session.stats().kvBytes`);
        assertEq(p.memAttr, p.api.memoryBytes, `${policy}: panel memory bytes == session.stats().memoryBytes`);
        assert(Number(p.tokens) > 8 && Number(p.kvTokens) > 0, `${policy}: tokens ${p.tokens}, in KV ${p.kvTokens}`);
        shown[policy] = { kv: parseShownBytes(p.kv), kvText: p.kv, kvVsFull: p.kvFull, mem: parseShownBytes(p.mem), memText: p.mem, kvBytes: p.kvAttr, memoryBytes: p.memAttr, tokens: Number(p.tokens) };
      }
      assert(shown.pod.kv < shown.full.kv, `displayed KV: pod ${shown.pod.kvText} < full ${shown.full.kvText}`);
      assert(shown['edgeinfinite+pod'].kv < shown.full.kv, `displayed KV: edgeinfinite+pod ${shown['edgeinfinite+pod'].kvText} < full ${shown.full.kvText}`);
      assertEq(shown.full.kvVsFull, '100%', 'full: KV vs full');
      assert(/^[0-9]+%$/.test(shown.pod.kvVsFull) && parseInt(shown.pod.kvVsFull, 10) < 100, `pod: KV vs full ${shown.pod.kvVsFull}`);
      assert(shown['edgeinfinite+pod'].mem > 0, `edgeinfinite+pod shows its compressed memory (${shown['edgeinfinite+pod'].memText})`);
      assertEq(shown.full.mem, 0, 'full has no compressed memory');
      assert(!(await page.isVisible('#error')), 'no error banner');
      results.demoPolicies.podSet = shown;
      console.log(`     ?set=pod displayed KV: full ${shown.full.kvText}, pod ${shown.pod.kvText} (${shown.pod.kvVsFull} of full), edgeinfinite+pod ${shown['edgeinfinite+pod'].kvText} + memory ${shown['edgeinfinite+pod'].memText}`);
    } finally {
      await context.close();
    }
  }, { timeoutMs: 300000 });

  test('demo default set: pod shows a hint naming the PoD model choice; chat keeps working; its button switches', async () => {
    if (!have(DEFAULT_SET) || !have(POD_SET)) return 'skip: the default or the PoD model set is not present';
    const { context, page } = await newPage();
    try {
      const r = await openDemo(page, iso);
      assert(r.ready, `demo ready (${JSON.stringify(r.loadError)})`);
      assertEq(await page.inputValue('#model-set'), 'default', 'default set chosen');
      for (const policy of ['pod', 'edgeinfinite+pod']) {
        await page.selectOption('#policy', policy);
        await page.waitForFunction((p) => window.demo.policyError && window.demo.policyError.policy === p, policy);
        const hint = await page.textContent('#policy-hint-text');
        assert(hint.includes(POD_LABEL) && hint.includes(policy), `hint names the model choice: ${hint}`);
        assertEq(await page.getAttribute('#policy-hint', 'class'), 'hint bad', 'hint marked');
        assert(await page.isVisible('#policy-switch'), 'switch button offered');
        assertEq(await page.inputValue('#policy'), 'auto', 'the policy select falls back to the one in use');
        assert(!(await page.isVisible('#error')), 'no error banner for an explained policy');
        assert(!(await page.isDisabled('#prompt')) && !(await page.isDisabled('#policy')), 'controls stay usable');
      }
      const reply = await demoSend(page, 'Hello!', 6);
      assert(!reply.error && reply.text.length > 0, `chat still works (${JSON.stringify(reply.error)})`);
      // The hint's button reloads the engine with the PoD set, with progress shown.
      const nProgress = await page.evaluate(() => window.demo.progress.length);
      await page.click('#policy-switch');
      await page.waitForFunction(() => window.demo.set === 'pod' && window.demo.ready && !window.demo.loading, null, { timeout: 120000 });
      const prog = await page.evaluate((k) => window.demo.progress.slice(k), nProgress);
      assert(prog.some((p) => p.phase === 'download' || p.phase === 'cache'), `load progress reported (${JSON.stringify(prog.slice(0, 3))})`);
      assertEq(await page.inputValue('#model-set'), 'pod', 'model select follows');
      assert(page.url().includes('set=pod'), `address bar has ?set=pod: ${page.url()}`);
      await choosePolicy(page, 'pod');
      const after = await demoSend(page, 'Hello!', 6);
      assert(!after.error && after.text.length > 0, 'pod works after the switch');
      assertEq(await page.textContent('#st-policy'), 'pod', 'pod in use');
    } finally {
      await context.close();
    }
  }, { timeoutMs: 300000 });

  test('demo ?model= takes precedence over ?set=; pod without an adapter is explained; the select switches sets', async () => {
    const { context, page } = await newPage();
    try {
      const r = await openDemo(page, iso, `?set=pod&model=/${TINY}&policy=pod`);
      assert(r.ready, `demo ready with ?policy=pod on a model without adapter (${JSON.stringify(r.loadError)})`);
      assertEq(r.info.adapter, null, 'no adapter');
      assertEq(await page.inputValue('#model-set'), 'custom', 'custom entry chosen');
      assertEq(await page.textContent('#st-policy'), 'full', 'auto -> full in use');
      const hint = await page.textContent('#policy-hint-text');
      if (have(POD_SET)) assert(hint.includes(POD_LABEL), `hint names the PoD model choice: ${hint}`);
      assert(/needs/.test(hint) && hint.includes('auto'), `hint explains the fallback: ${hint}`);
      const reply = await demoSend(page, 'Hi', 4);
      assert(!reply.error, 'chat works');
      if (!have(DEFAULT_SET)) return 'skip: the default set is not present (switch not tested)';
      await page.selectOption('#model-set', 'default');
      await page.waitForFunction(() => window.demo.set === 'default' && window.demo.ready && !window.demo.loading, null, { timeout: 120000 });
      assert(!page.url().includes('model='), `?model= dropped after a switch: ${page.url()}`);
      assert((await page.evaluate(() => window.demo.info.adapter)) !== null, 'default adapter loaded');
      assertEq(await page.textContent('#st-policy'), 'edgeinfinite', 'auto -> edgeinfinite with the default adapter');
    } finally {
      await context.close();
    }
  }, { timeoutMs: 300000 });
}
