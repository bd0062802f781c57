// wasm_builds.mjs — instantiates either wasm build in Node, straight on the shim's exports (no web/ runtime, which
// refuses the threaded build outside a cross-origin isolated page). Used by logits_dump.mjs and threads.mjs.
//   simd     dist/edgeinf-simd.{js,wasm}: the shipped single-thread build (its web,worker glue runs in Node as is).
//   simd-mt  dist/edgeinf-simd-mt.wasm, the shipped threaded binary, with the Node glue of `make wasm-node`
//            (build/wasm-node/edgeinf-simd-mt.js: same sources and flags, -sENVIRONMENT=node; the web glue has no
//            way to start pthreads in Node). Both links produce the same .wasm bytes; if they ever differ,
//            instantiation fails here rather than silently testing something else.

import fs from 'node:fs';
import { createRequire } from 'node:module';

const ROOT = new URL('../../', import.meta.url);
export const BUILDS = ['simd', 'simd-mt'];

/** Instantiates a build. threads sizes the threaded build's pre-started pthread pool (threads - 1 workers beside
 * this thread: a pthread started later could not run while this thread blocks in the engine). */
export async function loadModule(build, threads = 1) {
  const cfg = { print: (s) => console.log(s), printErr: (s) => console.error(s), edgeinfPool: Math.max(1, threads - 1) };
  if (build === 'simd') {
    cfg.wasmBinary = fs.readFileSync(new URL('dist/edgeinf-simd.wasm', ROOT));
    const mod = await import(new URL('dist/edgeinf-simd.js', ROOT).href);
    return mod.default(cfg);
  }
  if (build !== 'simd-mt') throw new Error(`unknown build ${build} (${BUILDS.join(', ')})`);
  const glue = new URL('build/wasm-node/edgeinf-simd-mt.js', ROOT);
  if (!fs.existsSync(glue)) throw new Error(`${glue.pathname} is missing: run \`make wasm-node\``);
  cfg.wasmBinary = fs.readFileSync(new URL('dist/edgeinf-simd-mt.wasm', ROOT));
  return createRequire(import.meta.url)(glue.pathname)(cfg);
}

/** The module's current memory (views made from M.HEAPU8 go stale when memory grows). */
export const heapOf = (M) => (M.wasmMemory ? M.wasmMemory.buffer : M.HEAPU8.buffer);

/** Copies bytes into a fresh malloc'd block; returns its address (0 if malloc failed). */
export function toHeap(M, bytes) {
  const p = M._malloc(bytes.length);
  if (p) new Uint8Array(heapOf(M), p, bytes.length).set(bytes);
  return p;
}

/** Loads a GGUF file into a model on a pool of `threads` (eiw_model_load); returns the handle, 0 on failure. */
export function loadModel(M, path, threads) {
  const b = fs.readFileSync(path);
  const p = toHeap(M, b);
  return p ? M._eiw_model_load(p, b.length, threads) : 0; // takes the buffer
}

/** "EI_ERR_X: description: context" of the last failure. */
export const lastError = (M, rc) => `${M.UTF8ToString(M._eiw_strerror(rc))}: ${M.UTF8ToString(M._eiw_last_error())}`;
