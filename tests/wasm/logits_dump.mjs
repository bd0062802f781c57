#!/usr/bin/env node
// logits_dump.mjs — tests/tools/logits_dump.c for the wasm builds: the same command line, run on the wasm module's
// exports (wasm/shim.c), so the parity checkers (tests/parity/check_*.py) run unchanged against WebAssembly:
//   node tests/wasm/logits_dump.mjs [--build simd|simd-mt] [options] logits MODEL OUT.f32 SPLIT ID...
//   node tests/wasm/logits_dump.mjs [--build simd|simd-mt] [options] greedy MODEL N ID...
//   node tests/wasm/logits_dump.mjs [--build simd|simd-mt] [options] last MODEL OUT.f32 ID...
// Options (as the C tool's): --policy NAME, --threads N, --sink N, --window N, --seg N, --adapter FILE, --repeat R,
// --n-recent N, --pod-share scores|keys; --build simd|simd-mt (default simd) picks the wasm build (wasm_builds.mjs: the
// shipped binaries; simd-mt needs `make wasm-node` for its Node glue). --threads N <= 0 means every core, as natively.
// The tool refuses to run unless the engine's thread pool has exactly the threads asked (always 1 in simd), so every
// run of simd-mt with N > 1 shows the pool runs N threads: the calling thread only computes its own share of each
// split, so the results exist only if the N - 1 workers computed theirs.
// Exit status: 0 ok, 1 engine or I/O failure (message on stderr), 2 usage.

import fs from 'node:fs';
import os from 'node:os';
import { BUILDS, loadModule, heapOf, toHeap, loadModel, lastError } from './wasm_builds.mjs';

const USAGE = 'usage: logits_dump.mjs [--build simd|simd-mt] [options] ' +
  '(logits MODEL OUT SPLIT | greedy MODEL N | last MODEL OUT) ID...';

/** C's atoi: leading integer or 0. */
const atoi = (s) => { const v = parseInt(s, 10); return Number.isFinite(v) ? v : 0; };

/** Parses the command line exactly as the C tool does (options as pairs until the first non-option). */
function parseArgs(argv) {
  const o = { build: 'simd', policy: 'full', adapter: null, threads: 1, sink: 0, window: 0, seg: 0, repeat: 1,
    nRecent: 0, share: 0 };
  const set = {
    '--build': (v) => { o.build = v; }, '--policy': (v) => { o.policy = v; }, '--threads': (v) => { o.threads = atoi(v); },
    '--sink': (v) => { o.sink = atoi(v); }, '--window': (v) => { o.window = atoi(v); }, '--seg': (v) => { o.seg = atoi(v); },
    '--adapter': (v) => { o.adapter = v; }, '--repeat': (v) => { o.repeat = atoi(v); },
    '--n-recent': (v) => { o.nRecent = atoi(v); },
    '--pod-share': (v) => { o.share = v === 'scores' ? 1 : v === 'keys' ? 2 : -1; },
  };
  let a = 0;
  for (; a + 1 < argv.length && Object.hasOwn(set, argv[a]); a += 2) set[argv[a]](argv[a + 1]);
  o.cmd = argv[a];
  const firstId = a + (o.cmd === 'logits' ? 4 : 3);
  if (argv.length <= firstId || o.repeat < 1 || !['logits', 'greedy', 'last'].includes(o.cmd) ||
      !BUILDS.includes(o.build)) return null;
  if (o.threads <= 0) o.threads = os.availableParallelism(); // sizes the pre-started pthread pool too
  o.model = argv[a + 1];
  o.arg2 = argv[a + 2];
  o.split = atoi(argv[a + 3]);
  const base = argv.slice(firstId).map(atoi);
  o.ids = Int32Array.from({ length: base.length * o.repeat }, (_, i) => base[i % base.length]);
  return o;
}

function main(M, o) {
  const heap = () => heapOf(M);
  const cstr = (s) => { const n = M.lengthBytesUTF8(s) + 1; const p = M._malloc(n); M.stringToUTF8(s, p, n); return p; };
  const die = (what, rc) => { process.stderr.write(`logits_dump: ${what}: ${lastError(M, rc)}\n`); return 1; };

  const m = loadModel(M, o.model, o.threads);
  if (!m) return die('load', M._eiw_last_code());
  const pool = M._eiw_model_n_threads(m);
  const want = o.build === 'simd' ? 1 : o.threads;
  if (pool !== want) {
    process.stderr.write(`logits_dump: the ${o.build} build's thread pool has ${pool} threads, ${want} asked\n`);
    return 1;
  }
  if (o.adapter) {
    const ab = fs.readFileSync(o.adapter);
    const p = toHeap(M, ab);
    const rc = M._eiw_model_set_adapter(m, p, ab.length);
    M._free(p);
    if (rc < 0) return die('adapter', rc);
  }
  const pp = cstr(o.policy);
  const s = M._eiw_session_create_pod(m, pp, 0, o.sink, o.window, o.seg, o.nRecent, o.share, 0);
  M._free(pp);
  if (!s) return die('session', M._eiw_last_code());
  const n = o.ids.length;
  const ids = M._malloc(4 * n);
  new Int32Array(heap(), ids, n).set(o.ids);
  const nv = M._eiw_model_int(m, 0);
  const logits = () => new Float32Array(heap(), M._eiw_session_logits(s), nv);
  let rc;
  if (o.cmd === 'last') {
    for (let off = 0; off < n; off += 4096)
      if ((rc = M._eiw_session_prefill(s, ids + 4 * off, Math.min(4096, n - off))) < 0) return die('prefill', rc);
    fs.writeFileSync(o.arg2, logits().slice());
  } else if (o.cmd === 'logits') {
    const split = Math.min(Math.max(o.split, 1), n);
    const out = new Float32Array(n * nv);
    const dev = M._malloc(4 * split * nv);
    if (!dev) return die('eval', -4);
    if ((rc = M._eiw_session_eval(s, ids, split, dev)) < 0) return die('eval', rc);
    out.set(new Float32Array(heap(), dev, split * nv));
    M._free(dev);
    for (let i = split; i < n; i++) {
      if ((rc = M._eiw_session_decode(s, o.ids[i])) < 0) return die('decode', rc);
      out.set(logits(), i * nv);
    }
    fs.writeFileSync(o.arg2, out);
  } else {
    const nGen = atoi(o.arg2);
    if ((rc = M._eiw_session_prefill(s, ids, n)) < 0) return die('prefill', rc);
    const got = [];
    for (let i = 0; i < nGen; i++) {
      const x = logits();
      let b = 0;
      for (let j = 1; j < nv; j++) if (x[j] > x[b]) b = j;
      got.push(b);
      if (i + 1 < nGen && (rc = M._eiw_session_decode(s, b)) < 0) return die('decode', rc);
    }
    fs.writeSync(1, got.join(' ') + '\n');
  }
  M._free(ids);
  M._eiw_session_free(s);
  M._eiw_model_free(m);
  return 0;
}

const o = parseArgs(process.argv.slice(2));
if (!o) {
  process.stderr.write(USAGE + '\n');
  process.exit(2);
}
let code;
try {
  code = main(await loadModule(o.build, o.threads), o);
} catch (e) {
  process.stderr.write(`logits_dump: ${e && e.stack ? e.stack : e}\n`);
  code = 1;
}
// The threaded build's pthread workers would keep Node alive: leave explicitly (stdout/stderr writes were synchronous).
process.exit(code);
