// threads.mjs — the threaded wasm build's pool in Node (tests/wasm/wasm_builds.mjs): the engine reports the pool size
// asked for, results do not depend on the thread count or the build, and a matmul-heavy prefill is timed with 1 and 2
// threads: each thread's CPU time is asserted, the speed-up only printed (cores may be shared with other work).
//   node tests/wasm/threads.mjs [RANDOM_MODEL.gguf]   (the model for the timing, e.g. models/tools/make_random.py 25m)
// Ends with "N passed, N failed".

import fs from 'node:fs';
import { createSuite, assert, assertEq } from './harness.mjs';
import { loadModule, heapOf, loadModel, lastError } from './wasm_builds.mjs';

const suite = createSuite('wasm threads in Node (simd-mt pool, simd)');
const test = suite.test;
const TINY = 'tests/fixtures/tiny/tiny-q8_0.gguf';
const PROMPT = JSON.parse(fs.readFileSync('tests/fixtures/tiny/manifest.json', 'utf8')).prompt_ids;
const BIG = process.argv[2];

/** A module of `build` with a model on a pool of `threads`; throws with the engine's message on failure. */
async function open(build, threads, model = TINY) {
  const M = await loadModule(build, threads);
  const m = loadModel(M, model, threads);
  if (!m) throw new Error(`load ${model}: ${lastError(M, M._eiw_last_code())}`);
  const p = M._malloc(5);
  M.stringToUTF8('full', p, 5);
  const s = M._eiw_session_create_pod(m, p, 0, 0, 0, 0, 0, 0, 0);
  M._free(p);
  if (!s) throw new Error(`session: ${lastError(M, M._eiw_last_code())}`);
  return { M, m, s, nv: M._eiw_model_int(m, 0) };
}

/** Logits after every one of ids, from one eval (one prefill) — a copy. */
function evalAll({ M, s, nv }, ids) {
  const pi = M._malloc(4 * ids.length), po = M._malloc(4 * ids.length * nv);
  new Int32Array(heapOf(M), pi, ids.length).set(ids);
  const rc = M._eiw_session_eval(s, pi, ids.length, po);
  if (rc < 0) throw new Error(`eval: ${lastError(M, rc)}`);
  const out = new Float32Array(heapOf(M), po, ids.length * nv).slice();
  M._free(pi);
  M._free(po);
  M._eiw_session_reset(s);
  return out;
}

const sameBits = (a, b) => a.length === b.length &&
  Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

for (const n of [1, 2, 4]) {
  test(`simd-mt: ${n} thread(s) asked, the engine's pool has ${n}`, async () => {
    const e = await open('simd-mt', n);
    assertEq(e.M._eiw_model_n_threads(e.m), n, 'pool size');
  });
}

test('simd: the single-thread build reports a pool of 1 whatever is asked', async () => {
  const e = await open('simd', 4);
  assertEq(e.M._eiw_model_n_threads(e.m), 1, 'pool size');
});

test('logits of every position are bit-identical for simd, simd-mt x1, x2 and x4 (work is split by rows and heads)', async () => {
  const ref = evalAll(await open('simd', 1), PROMPT);
  assert(ref.some((x) => x !== 0), 'non-zero logits');
  for (const n of [1, 2, 4]) assert(sameBits(evalAll(await open('simd-mt', n), PROMPT), ref), `simd-mt x${n} == simd`);
});

/** CPU ticks (user + system) of every OS thread of this process, by thread id; null where /proc is not there. */
function threadTicks() {
  const dir = '/proc/self/task';
  if (!fs.existsSync(dir)) return null;
  const t = new Map();
  for (const tid of fs.readdirSync(dir)) {
    try {
      const st = fs.readFileSync(`${dir}/${tid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' '); // from field 3 on (the name may hold spaces)
      t.set(Number(tid), Number(f[11]) + Number(f[12])); // fields 14 and 15 of stat(5): utime, stime
    } catch { /* the thread ended */ }
  }
  return t;
}

/** Shares of the CPU ticks spent between two threadTicks() samples: [main thread, busiest other thread]. */
function shares(a, b) {
  let total = 0, main = 0, other = 0;
  for (const [tid, v] of b) {
    const d = v - (a.get(tid) || 0);
    total += d;
    if (tid === process.pid) main = d;
    else other = Math.max(other, d);
  }
  return total ? [main / total, other / total] : [0, 0];
}

// The proof that a second thread computes: per-thread CPU time, which does not need a free core (on a loaded machine
// two threads may share one core, so wall-clock speed-up is printed only). With a pool of 2 the engine's calling
// thread computes half of every split and a worker the other half; with a pool of 1, the workers stay idle.
test('prefill of a matmul-heavy model: CPU split over OS threads with 1 and 2 threads; timing printed', async () => {
  if (!BIG) return 'skip: no model given';
  const ids = Array.from({ length: 256 }, (_, i) => PROMPT[i % PROMPT.length]);
  const row = [];
  let one;
  for (const n of [1, 2]) {
    const e = await open('simd-mt', n, BIG);
    evalAll(e, ids.slice(0, 16)); // warm up (first touch of the weights, worker start)
    let best = Infinity, cpu = 0, out;
    const k0 = threadTicks();
    for (let r = 0; r < 3; r++) {
      const c0 = process.cpuUsage(), t0 = performance.now();
      out = evalAll(e, ids);
      const ms = performance.now() - t0, c = process.cpuUsage(c0);
      if (ms < best) { best = ms; cpu = (c.user + c.system) / 1000; }
    }
    const sh = k0 ? shares(k0, threadTicks()) : null;
    if (n === 1) one = { ms: best, out };
    else assert(sameBits(out, one.out), '2 threads == 1 thread on the big model');
    if (sh && n === 1) assert(sh[1] < 0.1, `1 thread: another thread got ${(sh[1] * 100).toFixed(0)}% of the CPU`);
    if (sh && n === 2) assert(sh[0] > 0.25 && sh[1] > 0.25, `2 threads: CPU shares ${sh.map((x) => (x * 100).toFixed(0))}%`);
    row.push(`${n} thread(s): ${best.toFixed(0)} ms wall, ${cpu.toFixed(0)} ms CPU (x${(cpu / best).toFixed(2)})` +
      (n > 1 ? `, speed-up x${(one.ms / best).toFixed(2)}` : '') +
      (sh ? `, CPU share main ${(sh[0] * 100).toFixed(0)}% / busiest other thread ${(sh[1] * 100).toFixed(0)}%` : ''));
  }
  console.log(`info prefill 256 tokens of ${BIG} (best of 3): ${row.join('; ')}`);
}, { timeoutMs: 300000 });

const r = await suite.run();
process.exit(r.failed ? 1 : 0); // pthread workers would keep Node alive
