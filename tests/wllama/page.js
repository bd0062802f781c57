// page.js — runs one GGUF through llama.cpp (npm @wllama/wllama 2.x, its low-level API) and returns raw facts; the
// Node runner (run.mjs) compares them with our engine. Exposes window.wllamaCheck(spec) and sets window.wllamaReady.
// spec: { url, texts: [string], sequence: [id], prompt: [id], nContinue, topK, nThreads, nCtx }
// result: { loadMs, multithread, threads, info, tokenize: [[id]], forced: [[[id, p], ...] per row], greedy: [id],
//           forcedMs, greedyMs, logs: [string], error?: string }
import { Wllama } from '/wllama/index.js';

const PATHS = {
  'single-thread/wllama.wasm': '/wllama/single-thread/wllama.wasm',
  'multi-thread/wllama.wasm': '/wllama/multi-thread/wllama.wasm',
};

const logEl = document.getElementById('log');
const show = (s) => { logEl.textContent += '\n' + s; };

// Keeps the loader's messages (llama.cpp prints why it refuses a file through this logger).
function makeLogger(logs) {
  const keep = (level) => (...a) => logs.push(level + ': ' + a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' '));
  return { debug: keep('debug'), log: keep('log'), warn: keep('warn'), error: keep('error') };
}

// The metadata keys worth reporting (wllama returns every key as a string; token arrays are long).
function pickInfo(info) {
  const meta = {};
  for (const [k, v] of Object.entries(info.metadata || {}))
    if (!k.startsWith('tokenizer.ggml.tokens') && !k.startsWith('tokenizer.ggml.scores') &&
        !k.startsWith('tokenizer.ggml.token_type') && !k.startsWith('tokenizer.chat_template')) meta[k] = v;
  const { n_vocab, n_ctx, n_batch, n_ctx_train, n_embd, n_layer, token_bos, token_eos, add_bos_token, add_eos_token } = info;
  return { n_vocab, n_ctx, n_batch, n_ctx_train, n_embd, n_layer, token_bos, token_eos, add_bos_token, add_eos_token, meta };
}

// One model, a fresh Wllama instance (freed at the end, whatever happens).
async function wllamaCheck(spec) {
  const logs = [];
  const out = { logs };
  const w = new Wllama(PATHS, { logger: makeLogger(logs), suppressNativeLog: false });
  try {
    show('model ' + spec.url);
    const blob = await (await fetch(spec.url)).blob();
    let t0 = performance.now();
    // f32 KV cache: llama.cpp defaults to f16, our engine keeps f32; compare the same arithmetic.
    await w.loadModel([blob], { n_ctx: spec.nCtx, n_batch: spec.nCtx, n_threads: spec.nThreads, seed: 1,
      cache_type_k: 'f32', cache_type_v: 'f32', flash_attn: spec.flashAttn });
    out.loadMs = performance.now() - t0;
    out.multithread = w.isMultithread();
    out.threads = w.getNumThreads ? w.getNumThreads() : spec.nThreads;
    out.info = pickInfo(w.getLoadedContextInfo());

    // special=false: plain text, control-token names in the text are not parsed (as SentencePiece does).
    out.tokenize = [];
    for (const text of spec.texts) out.tokenize.push(await w.tokenize(text, false));

    // Teacher-forced: one token per decode, the top-K next-token probabilities after each.
    t0 = performance.now();
    await w.kvClear();
    out.forced = [];
    for (const id of spec.sequence) {
      await w.decode([id], {});
      const top = await w.getLogits(spec.topK);
      out.forced.push(top.map((t) => [t.token, t.p]));
    }
    out.forcedMs = performance.now() - t0;

    // Greedy continuation with wllama's own sampler (temp 0), the way its createCompletion drives it.
    t0 = performance.now();
    await w.kvClear();
    await w.samplingInit({ temp: 0 });
    await w.samplingAccept(spec.prompt);
    await w.decode(spec.prompt, {});
    out.greedy = [];
    for (let i = 0; i < spec.nContinue; i++) {
      const { token } = await w.samplingSample();
      out.greedy.push(token);
      if (i + 1 === spec.nContinue) break;
      await w.samplingAccept([token]);
      await w.decode([token], {});
    }
    out.greedyMs = performance.now() - t0;
    show('  done');
  } catch (e) {
    out.error = String((e && (e.stack || e.message)) || e);
    show('  error: ' + out.error);
  } finally {
    try { await w.exit(); } catch (e) { logs.push('exit: ' + e); }
  }
  return out;
}

window.wllamaCheck = wllamaCheck;
window.wllamaReady = true;
show('ready');
