// wasm-in-Node benchmark for `make bench` (tests/bench/run_bench.py): the single-thread SIMD build through the public
// JS API (in-thread engine). Same measure as `edgeinf bench`: prefill of N_PROMPT tokens, then N_GEN greedy decodes.
//   node tests/bench/wasm_bench.mjs BUILD MODEL N_PROMPT N_GEN THREADS      -> one JSON line
// BUILD is "simd" (Node has no cross-origin isolation, so the threaded build runs only in browsers: "simd-mt" is
// refused here rather than silently measured single-threaded).
import { Engine } from '../../web/index.js';

const [build, model, nPrompt, nGen] = process.argv.slice(2);
if (build !== 'simd') {
  console.error(`wasm_bench: build '${build}' is not runnable in Node (only 'simd')`);
  process.exit(2);
}
const engine = await Engine.load({ model, cache: false });
const session = engine.createSession({ policy: 'full' });
// A prompt of about N_PROMPT tokens: numbers tokenize to a few tokens each; the stats report the exact count.
let prompt = '';
for (let i = 0; prompt.length < Number(nPrompt); i++) prompt += `${(i * 7919) % 1000} `;
let gen = 0;
for await (const _ of session.generate(prompt, { maxTokens: Number(nGen), temperature: 0 })) gen++;
const st = session.stats();
console.log(JSON.stringify({
  build, n_prompt: st.prefillTokens, n_gen: st.decodeTokens, threads: 1,
  prefill_tps: st.prefillTokens / (st.prefillMs / 1000), decode_tps: st.decodeTokens / (st.decodeMs / 1000),
}));
await engine.unload();
