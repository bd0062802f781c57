// tests/wasm/sessions.mjs — saved sessions in Node (in-thread engine, single-thread wasm build): buffer round trips,
// the directory store (Engine.load({sessionDir})), exact continuation after a restore, interop with the native CLI's
// checkpoints, and bad input. References: one uninterrupted run of the same engine, and the native CLI (greedy text
// of an uninterrupted run; its own --save/--restore). Registered by tests/wasm/run.mjs.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Engine } from '../../web/index.js';
import { assert, assertEq, assertRejects, cliGreedy, fixturePrompt } from './harness.mjs';

const TINY = 'tests/fixtures/tiny/tiny-q8_0.gguf';
const TINY_F32 = 'tests/fixtures/tiny/tiny-f32.gguf';
const ADAPTER = 'tests/fixtures/tiny-ei/tiny-ei-adapter.gguf';
const LAYOUT = { nSink: 4, window: 16, seg: 8 }; // the adapter's layout: the windows fill after a few dozen tokens
const LAYOUT_CLI = ['--n-sink', '4', '--window', '16', '--seg', '8'];
const PROMPT = fixturePrompt();

/** Generation options that also collect the token ids. */
function collect(opts = {}) {
  const ids = [];
  return { ids, opts: { ...opts, onToken: (c) => { if (c.token >= 0) ids.push(c.token); } } };
}

/** Runs fn with a fresh temporary directory, removed afterwards. */
async function withDir(fn) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeinf-sessions-'));
  try {
    return await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function registerSessionTests(test) {
  // ---------------------------------------------------------------- exact continuation

  for (const policy of ['streaming', 'edgeinfinite']) {
    test(`${policy}: save -> restore -> continue gives the tokens of one uninterrupted run (buffer and directory store)`, async () => {
      await withDir(async (dir) => {
        const e = await Engine.load({ model: TINY, adapter: ADAPTER, sessionDir: dir });
        try {
          const opts = { policy, ...LAYOUT };
          const whole = collect({ maxTokens: 60, temperature: 0 });
          const ref = await e.createSession(opts).generate(PROMPT, whole.opts);
          // The uninterrupted text is the native CLI's too (an independent reference for the whole run).
          assertEq(ref.text, cliGreedy(TINY, PROMPT, 60, ['--policy', policy, '--adapter', ADAPTER, ...LAYOUT_CLI]), 'uninterrupted run vs CLI');

          const a = e.createSession(opts);
          const first = collect({ maxTokens: 30, temperature: 0 });
          await a.generate(PROMPT, first.opts);
          const st = a.stats();
          assert(st.kvTokens < st.tokens, `tokens left the window before the save (${st.kvTokens} of ${st.tokens})`);
          if (policy === 'edgeinfinite') assert(st.compressions > 0, `memory in use at the save (${st.compressions} compressions)`);
          const bytes = await a.saveToBuffer();
          const saved = await a.save('split');
          assertEq(saved.tokens, st.tokens, 'saved tokens');

          for (const [how, s] of [['buffer', await e.restoreFromBuffer(bytes)], ['directory', await e.restore('split')]]) {
            assertEq(s.policy, policy, `${how}: policy`);
            assertEq(s.stats().tokens, st.tokens, `${how}: tokens after restore`);
            const rest = collect({ maxTokens: 30 });
            await s.continue(rest.opts);
            assertEq(first.ids.concat(rest.ids).join(' '), whole.ids.join(' '), `${how}: 30 + 30 tokens vs one run of 60`);
            await s.free();
          }
          // The saved session did not change the original: it continues the same way.
          const own = collect({ maxTokens: 30 });
          await a.continue(own.opts);
          assertEq(first.ids.concat(own.ids).join(' '), whole.ids.join(' '), 'the original continues too');
        } finally {
          await e.unload();
        }
      });
    });
  }

  test('seeded sampling: the sampler (RNG, penalty history) is saved too', async () => {
    const e = await Engine.load({ model: TINY, adapter: ADAPTER });
    try {
      const opts = { policy: 'edgeinfinite', ...LAYOUT };
      const samp = { temperature: 0.9, topK: 20, repeatPenalty: 1.3, seed: 11 };
      const whole = collect({ maxTokens: 40, ...samp });
      await e.createSession(opts).generate(PROMPT, whole.opts);
      const a = e.createSession(opts);
      const first = collect({ maxTokens: 20, ...samp });
      await a.generate(PROMPT, first.opts);
      const b = await e.restoreFromBuffer(await a.saveToBuffer());
      const rest = collect({ maxTokens: 20 });
      await b.continue(rest.opts);
      assertEq(first.ids.concat(rest.ids).join(' '), whole.ids.join(' '), 'sampled 20 + 20 vs 40');
      // A restore without the sampler (new sampling options) samples differently: the test can tell.
      const c = await e.restoreFromBuffer(await a.saveToBuffer());
      const other = collect({ maxTokens: 20, temperature: 0.9, topK: 20, repeatPenalty: 1.3, seed: 12 });
      await c.continue(other.opts);
      assert(other.ids.join(' ') !== rest.ids.join(' '), 'another seed gives other tokens');
    } finally {
      await e.unload();
    }
  });

  test('a restored session reuses its KV cache for a prompt that extends its text, like the uninterrupted one', async () => {
    const e = await Engine.load({ model: TINY, adapter: ADAPTER });
    try {
      const opts = { policy: 'edgeinfinite', ...LAYOUT };
      const a = e.createSession(opts);
      // 2 tokens: this gibberish model's longer replies do not re-tokenize to the same ids (then nothing is reused).
      const r1 = await a.generate(PROMPT, { maxTokens: 2, temperature: 0 });
      assert(a.stats().compressions > 0, 'memory in use');
      const bytes = await a.saveToBuffer();
      const r2 = await a.generate(a.text + ' and then', { maxTokens: 12, temperature: 0 });
      const b = await e.restoreFromBuffer(bytes);
      assertEq(b.text, PROMPT + r1.text, 'text transcript');
      const r2b = await b.generate(b.text + ' and then', { maxTokens: 12, temperature: 0 });
      assertEq(r2b.text, r2.text, 'continuation');
      const fresh = await e.createSession(opts).generate(PROMPT + r1.text + ' and then', { maxTokens: 12, temperature: 0 });
      assertEq(r2b.usage.promptTokens, r2.usage.promptTokens, 'tokens prefilled: restored vs uninterrupted');
      assert(r2b.usage.promptTokens < fresh.usage.promptTokens, `only the new tail was prefilled (${r2b.usage.promptTokens} of ${fresh.usage.promptTokens})`);
    } finally {
      await e.unload();
    }
  });

  test('a restored chat keeps its transcript and app data, and replies like the uninterrupted session', async () => {
    const e = await Engine.load({ model: TINY, adapter: ADAPTER });
    try {
      const opts = { policy: 'edgeinfinite', ...LAYOUT };
      const m1 = [{ role: 'user', content: 'Tell me about the sea.' }];
      const a = e.createSession(opts);
      const r1 = await a.chat(m1, { maxTokens: 24, temperature: 0 });
      const bytes = await a.saveToBuffer({ data: { title: 'sea' } });
      const next = (msgs) => msgs.concat({ role: 'user', content: 'And the mountains?' });
      const r2 = await a.chat(next(a.messages), { maxTokens: 24, temperature: 0 });
      const b = await e.restoreFromBuffer(bytes);
      assertEq(JSON.stringify(b.messages), JSON.stringify(m1.concat({ role: 'assistant', content: r1.text })), 'transcript');
      assertEq(b.restored.data.title, 'sea', 'app data');
      const r2b = await b.chat(next(b.messages), { maxTokens: 24, temperature: 0 });
      assertEq(r2b.text, r2.text, 'next reply');
      assertEq(r2b.usage.promptTokens, r2.usage.promptTokens, 'same tokens prefilled');
    } finally {
      await e.unload();
    }
  });

  test("the native CLI's checkpoint (--save) continues in wasm exactly like the CLI's --restore", async () => {
    await withDir(async (dir) => {
      const ck = path.join(dir, 'cli.eick');
      const args = ['--policy', 'edgeinfinite', '--adapter', ADAPTER, ...LAYOUT_CLI, '--temp', '0'];
      execFileSync('build/edgeinf', ['generate', '-m', TINY, '-p', PROMPT, '-n', '30', '--save', ck, ...args], { stdio: 'pipe' });
      let want = execFileSync('build/edgeinf', ['generate', '-m', TINY, '--restore', ck, '-n', '30', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      if (want.endsWith('\n')) want = want.slice(0, -1);
      const e = await Engine.load({ model: TINY, adapter: ADAPTER });
      try {
        const s = await e.restoreFromBuffer(fs.readFileSync(ck));
        assertEq(s.policy, 'edgeinfinite', 'policy from the checkpoint header');
        assertEq(s.stats().window, 16, 'layout from the checkpoint header');
        const r = await s.continue({ maxTokens: 30, temperature: 0 });
        assertEq(r.text, want, 'wasm continuation vs CLI --restore');
        // Its history is unknown: a new prompt starts over (same text as a fresh session).
        const again = await s.generate(PROMPT, { maxTokens: 8, temperature: 0 });
        const fresh = await e.createSession({ policy: 'edgeinfinite', ...LAYOUT }).generate(PROMPT, { maxTokens: 8, temperature: 0 });
        assertEq(again.text, fresh.text, 'generate after a bare checkpoint starts over');
      } finally {
        await e.unload();
      }
    });
  });

  test('streaming checkpoints have a constant size; full ones grow with the context', async () => {
    const e = await Engine.load({ model: TINY, adapter: ADAPTER });
    try {
      // Bytes of the engine checkpoint inside saved-session bytes (after the JSON metadata).
      const ckBytes = (b) => b.length - 16 - new DataView(b.buffer, b.byteOffset).getUint32(8, true);
      const sizes = {};
      for (const policy of ['streaming', 'edgeinfinite', 'full']) {
        const s = e.createSession(policy === 'full' ? { policy, nCtx: 256 } : { policy, ...LAYOUT });
        // 30 tokens: the sampler's penalty history (64 tokens, saved too) is full from there on.
        await s.generate(PROMPT, { maxTokens: 30, temperature: 0 });
        const small = ckBytes(await s.saveToBuffer());
        await s.continue({ maxTokens: 80 });
        const big = ckBytes(await s.saveToBuffer());
        sizes[policy] = [small, big];
      }
      assertEq(sizes.streaming[1], sizes.streaming[0], 'streaming: same bytes after 70 and 150 tokens');
      assertEq(sizes.edgeinfinite[1], sizes.edgeinfinite[0], 'edgeinfinite: same bytes');
      assert(sizes.full[1] > sizes.full[0] + 80 * 500, `full grows (${sizes.full})`);
    } finally {
      await e.unload();
    }
  });

  // ---------------------------------------------------------------- bad input

  test('bad session names are refused with INVALID_ARG; odd but valid names round-trip', async () => {
    await withDir(async (dir) => {
      const e = await Engine.load({ model: TINY, sessionDir: dir });
      try {
        const s = e.createSession();
        await s.generate(PROMPT, { maxTokens: 2, temperature: 0 });
        for (const bad of ['', 'a/b', 'a\\b', '..', '../x', 'x..y', 'a'.repeat(129), ' lead', 'tab\there', 42, null]) {
          await assertRejects(s.save(bad), 'INVALID_ARG', `save ${JSON.stringify(bad)}`);
          await assertRejects(e.restore(bad), 'INVALID_ARG', `restore ${JSON.stringify(bad)}`);
          await assertRejects(e.deleteSession(bad), 'INVALID_ARG', `delete ${JSON.stringify(bad)}`);
        }
        assertEq(fs.readdirSync(dir).length, 0, 'nothing written');
        const odd = 'Été 100% ✓ : a?b*c "q" <x>';
        await s.save(odd);
        await s.save('a'.repeat(128));
        const names = (await e.listSessions()).map((x) => x.name).sort();
        assertEq(JSON.stringify(names), JSON.stringify(['a'.repeat(128), odd].sort()), 'listed names');
        assertEq((await e.restore(odd)).stats().tokens, s.stats().tokens, 'restores');
        assertEq(await e.deleteSession(odd), true, 'deleted');
        assertEq(await e.deleteSession(odd), false, 'already gone');
        await assertRejects(e.restore(odd), 'NOT_FOUND', 'deleted session');
      } finally {
        await e.unload();
      }
    });
  });

  test('corrupted, truncated, empty and other-version bytes are refused with typed errors; the engine keeps working', async () => {
    const e = await Engine.load({ model: TINY, adapter: ADAPTER });
    try {
      const s = e.createSession({ policy: 'edgeinfinite', ...LAYOUT });
      await s.generate(PROMPT, { maxTokens: 30, temperature: 0 });
      const good = await s.saveToBuffer();
      const jlen = new DataView(good.buffer).getUint32(8, true);
      const ck0 = 16 + jlen; // where the engine checkpoint starts
      const mutate = (f) => { const b = good.slice(); f(b); return b; };
      const cases = [
        ['empty', new Uint8Array(0), 'FORMAT', /empty/],
        ['not a session', new TextEncoder().encode('hello, this is not a saved session at all'), 'FORMAT', /magic/],
        ['truncated in the metadata', good.subarray(0, 40), 'FORMAT', /truncated/],
        ['truncated in the checkpoint header', good.subarray(0, ck0 + 50), 'FORMAT', /truncated/],
        ['truncated mid-checkpoint', good.subarray(0, ck0 + ((good.length - ck0) >> 1)), 'FORMAT', /truncated/],
        ['one byte short', good.subarray(0, good.length - 1), 'FORMAT', /truncated/],
        ['bit flip in the metadata', mutate((b) => { b[20] ^= 0x04; }), 'FORMAT', /CRC/],
        ['bit flip in the KV cache', mutate((b) => { b[ck0 + 2000] ^= 0x10; }), 'FORMAT', /CRC|differ/],
        ['bit flip in the compressed memory', mutate((b) => { b[b.length - 3000] ^= 0x01; }), 'FORMAT', /CRC|differ/],
        ['saved-session format version 2', mutate((b) => { b[4] = 2; }), 'UNSUPPORTED', /version 2.*version 1/],
      ];
      // A bare engine checkpoint with another format version: the engine names both.
      const bare = good.slice(ck0);
      bare[4] = 7;
      cases.push(['engine checkpoint format version 7', bare, 'UNSUPPORTED', /version 7.*version 1/]);
      // The shim state of another save (same length and CRC link broken): refused, not applied.
      const meta = JSON.parse(new TextDecoder().decode(good.subarray(16, ck0)));
      const s2 = e.createSession({ policy: 'edgeinfinite', ...LAYOUT });
      await s2.generate(PROMPT, { maxTokens: 31, temperature: 0 });
      const other = await s2.saveToBuffer();
      const meta2 = JSON.parse(new TextDecoder().decode(other.subarray(16, 16 + new DataView(other.buffer).getUint32(8, true))));
      const { encodeSaved } = await import('../../web/session-format.js');
      cases.push(['a state that belongs to another checkpoint', encodeSaved({ ...meta, state: meta2.state }, good.subarray(ck0)), 'FORMAT', /differ|saved with/]);
      for (const [what, bytes, code, re] of cases) {
        const err = await assertRejects(e.restoreFromBuffer(bytes), code, what);
        assert(re.test(err.message), `${what}: message ${JSON.stringify(err.message)}`);
      }
      const ok = await e.restoreFromBuffer(good);
      const r = await ok.continue({ maxTokens: 5 });
      assertEq(r.usage.completionTokens, 5, 'the good bytes still restore and continue');
    } finally {
      await e.unload();
    }
  });

  test('another model, a missing adapter or another layout: MISMATCH', async () => {
    const q8 = await Engine.load({ model: TINY, adapter: ADAPTER });
    const f32 = await Engine.load({ model: TINY_F32, adapter: ADAPTER });
    const bare = await Engine.load({ model: TINY });
    try {
      const ei = q8.createSession({ policy: 'edgeinfinite', ...LAYOUT });
      await ei.generate(PROMPT, { maxTokens: 10, temperature: 0 });
      const eiBytes = await ei.saveToBuffer();
      const e1 = await assertRejects(f32.restoreFromBuffer(eiBytes), 'MISMATCH', 'other model');
      assert(/model/.test(e1.message), e1.message);
      const e2 = await assertRejects(bare.restoreFromBuffer(eiBytes), 'MISMATCH', 'no adapter');
      assert(/adapter/.test(e2.message), e2.message);
      // streaming takes the adapter's layout by default: without the adapter the session has another one.
      const st = q8.createSession({ policy: 'streaming' });
      await st.generate(PROMPT, { maxTokens: 10, temperature: 0 });
      const e3 = await assertRejects(bare.restoreFromBuffer(await st.saveToBuffer()), 'MISMATCH', 'other layout');
      assert(/config differs/.test(e3.message), e3.message);
      // The refusals left every engine usable.
      for (const e of [q8, f32, bare]) assertEq((await e.createSession().generate(PROMPT, { maxTokens: 3, temperature: 0 })).usage.completionTokens, 3, 'usable');
    } finally {
      await q8.unload();
      await f32.unload();
      await bare.unload();
    }
  });

  test('listSessions: newest first, and only sessions this engine can restore are compatible', async () => {
    await withDir(async (dir) => {
      const q8 = await Engine.load({ model: TINY, adapter: ADAPTER, sessionDir: dir });
      try {
        for (const [name, policy] of [['ei', 'edgeinfinite'], ['full', 'full']]) {
          const s = q8.createSession(policy === 'full' ? { policy } : { policy, ...LAYOUT });
          await s.chat([{ role: 'user', content: 'Hi' }], { maxTokens: 3, temperature: 0 });
          await s.save(name, { data: { title: `t-${name}` } });
          await new Promise((r) => setTimeout(r, 5)); // distinct savedAt
        }
        const mine = await q8.listSessions();
        assertEq(mine.map((x) => `${x.name}:${x.compatible}:${x.messages}:${x.title}`).join(','), 'full:true:2:t-full,ei:true:2:t-ei', 'same engine');
        assert(mine.every((x) => x.bytes > 0 && x.tokens > 0 && x.savedAt > 0 && x.model.name), JSON.stringify(mine));
      } finally {
        await q8.unload();
      }
      const noAdapter = await Engine.load({ model: TINY, sessionDir: dir });
      const f32 = await Engine.load({ model: TINY_F32, sessionDir: dir });
      try {
        assertEq((await noAdapter.listSessions()).map((x) => `${x.name}:${x.compatible}`).join(','), 'full:true,ei:false', 'without the adapter');
        assertEq((await f32.listSessions()).map((x) => `${x.name}:${x.compatible}`).join(','), 'full:false,ei:false', 'another model');
        await assertRejects(f32.restore('full'), 'MISMATCH', 'restore on another model');
        assertEq((await noAdapter.restore('full')).messages.length, 2, 'a full-attention save needs no adapter');
      } finally {
        await noAdapter.unload();
        await f32.unload();
      }
    });
  });

  test('directory store: a failed save leaves the previous one intact; a damaged file is reported and deletable', async () => {
    await withDir(async (dir) => {
      const e = await Engine.load({ model: TINY, adapter: ADAPTER, sessionDir: dir });
      try {
        const opts = { policy: 'edgeinfinite', ...LAYOUT };
        const a = e.createSession(opts);
        await a.generate(PROMPT, { maxTokens: 20, temperature: 0 });
        await a.save('keep');
        const want = (await (await e.restoreFromBuffer(await a.saveToBuffer())).continue({ maxTokens: 10 })).text;
        const file = path.join(dir, 'keep.eis');
        const before = fs.readFileSync(file);
        // The temporary file cannot be created (a directory is in the way): the save fails, the old file stays.
        fs.mkdirSync(`${file}.tmp`);
        const b = e.createSession(opts);
        await b.generate(PROMPT + ' more', { maxTokens: 25, temperature: 0 });
        const err = await assertRejects(b.save('keep'), 'IO', 'save over a blocked temp file');
        assert(/intact/.test(err.message), err.message);
        assert(Buffer.compare(fs.readFileSync(file), before) === 0, 'previous file unchanged');
        const r = await (await e.restore('keep')).continue({ maxTokens: 10 });
        assertEq(r.text, want, 'the previous save restores');
        fs.rmdirSync(`${file}.tmp`);
        await b.save('keep');
        assertEq((await e.restore('keep')).stats().tokens, b.stats().tokens, 'the next save replaces it');
        // Damage the file: restore says FORMAT, the list still shows it, delete removes it.
        const bytes = fs.readFileSync(file);
        fs.writeFileSync(file, bytes.subarray(0, bytes.length - 100));
        await assertRejects(e.restore('keep'), 'FORMAT', 'truncated file');
        const listed = await e.listSessions();
        assert(listed.length === 1 && listed[0].name === 'keep' && listed[0].error && listed[0].error.code === 'FORMAT', `listed: ${JSON.stringify(listed)}`);
        assertEq(await e.deleteSession('keep'), true, 'deleted');
        assertEq((await e.listSessions()).length, 0, 'empty list');
      } finally {
        await e.unload();
      }
    });
  });

  test('without sessionDir, Node has no store (UNSUPPORTED) but buffers work; continue needs a context', async () => {
    const e = await Engine.load({ model: TINY });
    try {
      const s = e.createSession();
      await assertRejects(s.continue({ maxTokens: 3 }), 'INVALID_ARG', 'nothing to continue');
      await s.generate(PROMPT, { maxTokens: 3, temperature: 0 });
      await assertRejects(s.save('x'), 'UNSUPPORTED', 'save');
      await assertRejects(e.listSessions(), 'UNSUPPORTED', 'list');
      const b = await e.restoreFromBuffer(await s.saveToBuffer());
      assertEq(b.stats().tokens, s.stats().tokens, 'buffer round trip');
      assertEq(b.text, s.text, 'text transcript');
    } finally {
      await e.unload();
    }
  });

  test('save waits for a running generation and saves the state after it', async () => {
    const e = await Engine.load({ model: TINY });
    try {
      const s = e.createSession({ policy: 'full' });
      const gen = s.generate(PROMPT, { maxTokens: 20, temperature: 0 });
      const saving = s.saveToBuffer();
      const r = await gen;
      const b = await e.restoreFromBuffer(await saving);
      assertEq(b.stats().tokens, r.usage.promptTokens + r.usage.completionTokens - 1, 'tokens after the generation');
    } finally {
      await e.unload();
    }
  });
}
