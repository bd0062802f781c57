// engine-core.js — the engine in the current thread: loads a wasm build, owns the model and the
// sessions, and runs the streaming generation loop. The Web Worker (worker.js) hosts one of these;
// Node uses it directly. Everything here talks to the C shim (wasm/shim.c) through `M`.

import { EdgeinfError, cError, toEdgeinfError } from './errors.js';
import { loadBytes, forgetCached } from './loader.js';
import { StopMatcher } from './stop.js';
import { chatFormat } from './chat-template.js';
import { SAVED_HINTS, SAVE_HINTS, toHex, fromHex } from './session-format.js';

export const POLICIES = ['auto', 'full', 'streaming', 'edgeinfinite', 'pod', 'edgeinfinite+pod'];
const EOS = -1000;          // EIW_DONE_EOS in wasm/shim.c
const CONTEXT_FULL = -7;    // EI_ERR_CONTEXT_FULL
const PREFILL_CHUNK = 512;  // prompt tokens per prefill call: abort and progress between calls
const MAX_POOL = 8;

const isNode = typeof process === 'object' && !!(process.versions && process.versions.node) &&
  typeof window === 'undefined' && typeof importScripts === 'undefined';

/** Resolves between tokens to the event loop, so abort messages get in (MessageChannel is not clamped
 * like setTimeout). */
const yieldToEventLoop = (() => {
  if (typeof setImmediate === 'function') return () => new Promise((r) => setImmediate(r));
  if (typeof MessageChannel === 'function') {
    const ch = new MessageChannel();
    const q = [];
    ch.port1.onmessage = () => { const r = q.shift(); if (r) r(); };
    return () => new Promise((r) => { q.push(r); ch.port2.postMessage(0); });
  }
  return () => new Promise((r) => setTimeout(r, 0));
})();

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** Which build and how many threads: the threaded build needs cross-origin isolation (SharedArrayBuffer). */
export function chooseBuild(threads, forced) {
  const isolated = typeof crossOriginIsolated !== 'undefined' && crossOriginIsolated === true &&
    typeof SharedArrayBuffer !== 'undefined';
  const hw = (typeof navigator !== 'undefined' && navigator.hardwareConcurrency) || 4;
  let n = threads === 'auto' || threads == null ? Math.min(hw, MAX_POOL) : Math.max(1, Math.floor(Number(threads)) || 1);
  // Isolated pages get the threaded build unless one thread was asked for explicitly.
  let build = forced || (isolated && !isNode && threads !== 1 ? 'simd-mt' : 'simd');
  if (build === 'simd-mt' && (!isolated || isNode)) {
    throw new EdgeinfError('UNSUPPORTED', 'The threaded build needs a cross-origin isolated page (COOP same-origin + COEP require-corp headers).');
  }
  if (build === 'simd') n = 1;
  return { build, threads: n, isolated };
}

/** URLs of a build's files. Literal new URL(...) calls let bundlers (Vite, webpack) copy the files. */
function buildUrls(build, wasmBase) {
  if (wasmBase) {
    const base = new URL(wasmBase, typeof location !== 'undefined' ? location.href : undefined);
    const u = (f) => new URL(f, base).href;
    return build === 'simd-mt'
      ? { js: u('edgeinf-simd-mt.js'), wasm: u('edgeinf-simd-mt.wasm'), worker: u('edgeinf-simd-mt.worker.js') }
      : { js: u('edgeinf-simd.js'), wasm: u('edgeinf-simd.wasm') };
  }
  return build === 'simd-mt'
    ? {
      js: new URL('../dist/edgeinf-simd-mt.js', import.meta.url).href,
      wasm: new URL('../dist/edgeinf-simd-mt.wasm', import.meta.url).href,
      worker: new URL('../dist/edgeinf-simd-mt.worker.js', import.meta.url).href,
    }
    : {
      js: new URL('../dist/edgeinf-simd.js', import.meta.url).href,
      wasm: new URL('../dist/edgeinf-simd.wasm', import.meta.url).href,
    };
}

/** Instantiates the emscripten module of a build. */
export async function loadRuntime({ build, threads, wasmBase }) {
  const urls = buildUrls(build, wasmBase);
  // Bundlers may inline the small pthread worker file as a data: URL; a worker from a data: URL has an
  // opaque origin and could not import the (same-origin) engine script, so give it a blob: URL instead.
  if (urls.worker && urls.worker.startsWith('data:')) {
    const blob = await (await fetch(urls.worker)).blob();
    urls.worker = URL.createObjectURL(new Blob([blob], { type: 'text/javascript' }));
  }
  const cfg = {
    locateFile: (p) => (p.endsWith('.wasm') ? urls.wasm : p.endsWith('.worker.js') ? urls.worker : p),
    mainScriptUrlOrBlob: urls.js,
    edgeinfPool: Math.max(1, threads - 1), // the model's pool: threads - 1 workers beside the caller
    print: (s) => console.log(s),
    printErr: (s) => console.warn(s),
  };
  try {
    if (isNode) {
      const fsName = 'node:fs/promises';
      const fs = await import(/* @vite-ignore */ fsName);
      cfg.wasmBinary = await fs.readFile(new URL(urls.wasm));
    }
    const mod = await import(/* @vite-ignore */ urls.js);
    return await mod.default(cfg);
  } catch (e) {
    throw new EdgeinfError('WASM_LOAD', `Loading the ${build} build from ${urls.js} failed: ${e && e.message ? e.message : e}.`);
  }
}

export class CoreEngine {
  /**
   * Loads the runtime and the model. opts: {model, adapter, threads, cache, onProgress, wasmBase,
   * sha256, build, signal}. Progress phases: download | cache | load.
   */
  static async load(opts = {}) {
    if (opts.model == null) throw new EdgeinfError('INVALID_ARG', 'Engine.load: the model option is required (URL, ArrayBuffer or Blob).');
    const { build, threads, isolated } = chooseBuild(opts.threads, opts.build);
    const onProgress = opts.onProgress || (() => {});
    const t0 = now();
    const [M, bytes] = await Promise.all([
      loadRuntime({ build, threads, wasmBase: opts.wasmBase }),
      loadBytes(opts.model, { what: 'model', cache: opts.cache, sha256: opts.sha256, onProgress, signal: opts.signal }),
    ]);
    const adapter = opts.adapter == null ? null
      : await loadBytes(opts.adapter, { what: 'adapter', cache: opts.cache, onProgress, signal: opts.signal });
    const tLoad = now();
    onProgress({ phase: 'load', loaded: 0, total: bytes.size });
    const eng = new CoreEngine(M, { build, threads, isolated });
    try {
      eng.#loadModel(bytes, threads);
    } catch (e) {
      // Bytes the engine rejects must not stay cached: drop the download's chunks or the cached entry.
      if (bytes.discard) await bytes.discard();
      if (bytes.from === 'cache') await forgetCached(bytes.url);
      throw e;
    }
    if (bytes.commit) bytes.cacheError = await bytes.commit();
    if (adapter) {
      try {
        eng.#loadAdapter(adapter);
      } catch (e) {
        await eng.unload();
        if (adapter.discard) await adapter.discard();
        if (adapter.from === 'cache') await forgetCached(adapter.url);
        throw e;
      }
      if (adapter.commit) await adapter.commit();
    }
    onProgress({ phase: 'load', loaded: bytes.size, total: bytes.size });
    eng.#loadInfo = {
      source: bytes.from, url: bytes.url, sizeBytes: bytes.size, sha256: bytes.sha256,
      fetchMs: bytes.ms, initMs: now() - tLoad, totalMs: now() - t0,
      cacheError: bytes.cacheError ? bytes.cacheError.toWire() : undefined,
    };
    return eng;
  }

  #M; #model = 0; #sessions = new Map(); #nextSid = 1; #env; #loadInfo; #format; #lock = Promise.resolve();
  #dead = null; #stats; #unloaded = false; #adapterInfo = null;

  constructor(M, env) {
    this.#M = M;
    this.#env = env;
    this.#stats = M._malloc(13 * 8);
  }

  /** Copies the model bytes into wasm memory and hands them to the engine (which then owns them). */
  #loadModel(bytes, threads) {
    const M = this.#M;
    const ptr = M._malloc(bytes.size);
    if (!ptr) throw new EdgeinfError('NOMEM', `The model (${(bytes.size / 1048576).toFixed(1)} MB) does not fit in WebAssembly memory.`);
    let off = 0;
    const heap = M.HEAPU8; // fresh: malloc above ran on this thread
    for (const p of bytes.parts) { heap.set(p, ptr + off); off += p.length; }
    bytes.parts.length = 0;
    const h = M._eiw_model_load(ptr, bytes.size, threads); // takes ownership of ptr
    if (!h) throw this.#cErr(M._eiw_last_code(), `Loading the model${bytes.url ? ` "${bytes.url}"` : ''}`);
    this.#model = h;
    const tmpl = this.#metaStr('tokenizer.chat_template');
    this.#format = chatFormat(tmpl);
  }

  /** Hands an adapter GGUF to the engine (it copies what it needs; our copy is freed). */
  #loadAdapter(bytes) {
    const M = this.#M;
    const ptr = M._malloc(bytes.size);
    if (!ptr) throw new EdgeinfError('NOMEM', 'The adapter does not fit in WebAssembly memory.');
    try {
      let off = 0;
      const heap = M.HEAPU8;
      for (const p of bytes.parts) { heap.set(p, ptr + off); off += p.length; }
      const rc = M._eiw_model_set_adapter(this.#model, ptr, bytes.size);
      if (rc < 0) throw this.#cErr(rc, `Loading the adapter${bytes.url ? ` "${bytes.url}"` : ''}`);
    } finally {
      M._free(ptr);
    }
    this.#adapterInfo = { source: bytes.from, url: bytes.url, sizeBytes: bytes.size, nParams: M._eiw_adapter_n_params(this.#model),
      kind: M.UTF8ToString(M._eiw_adapter_kind(this.#model)) };
  }

  #cErr(code, context, hints) {
    return cError(code, this.#M.UTF8ToString(this.#M._eiw_last_error()), context, hints);
  }

  #metaStr(key) {
    const p = this.#withStr(key, (k) => this.#M._eiw_model_meta_str(this.#model, k));
    return p ? this.#M.UTF8ToString(p) : null;
  }

  /** Calls fn with a temporary NUL-terminated copy of str in wasm memory. */
  #withStr(str, fn) {
    const M = this.#M;
    const n = M.lengthBytesUTF8(str) + 1;
    const p = M._malloc(n);
    if (!p) throw new EdgeinfError('NOMEM', 'Out of WebAssembly memory for a string argument.');
    try {
      M.stringToUTF8(str, p, n);
      return fn(p);
    } finally {
      M._free(p);
    }
  }

  /** Throws if the engine cannot be used any more. */
  #alive() {
    if (this.#unloaded) throw new EdgeinfError('UNLOADED', 'This engine was unloaded.');
    if (this.#dead) throw this.#dead;
  }

  /** Runs a synchronous engine call; a wasm trap marks the engine dead (later calls fail the same way). */
  #guard(fn) {
    this.#alive();
    try {
      return fn();
    } catch (e) {
      const err = toEdgeinfError(e, 'engine');
      if (err.code === 'ENGINE_CRASHED') this.#dead = err;
      throw err;
    }
  }

  info() {
    const M = this.#M, m = this.#model;
    const meta = (k) => this.#metaStr(k);
    return {
      build: this.#env.build,
      threads: this.#env.threads,
      crossOriginIsolated: this.#env.isolated,
      simd: true,
      model: m ? {
        name: meta('general.name'),
        architecture: meta('general.architecture'),
        nParams: M._eiw_model_n_params(m),
        nVocab: M._eiw_model_int(m, 0),
        nCtxTrain: M._eiw_model_int(m, 1),
        nLayer: M._eiw_model_int(m, 2),
        fingerprint: M.UTF8ToString(M._eiw_model_fingerprint(m)),
        chatFormat: this.#format.name,
        hasChatTemplate: meta('tokenizer.chat_template') != null,
      } : null,
      adapter: this.#adapterInfo ? { ...this.#adapterInfo } : null,
      load: { ...this.#loadInfo },
    };
  }

  /** Creates a session; returns its id. opts: {policy, nCtx, nSink, window, seg, threads, memoryBudget}. */
  createSession(opts = {}) {
    return this.#guard(() => {
      const policy = opts.policy || 'auto';
      if (!POLICIES.includes(policy))
        throw new EdgeinfError('INVALID_ARG', `Unknown policy "${policy}": use one of ${POLICIES.join(', ')}.`);
      const i = (v) => (Number.isFinite(v) ? Math.floor(v) : 0);
      const s = this.#withStr(policy, (p) => this.#M._eiw_session_create(this.#model, p, i(opts.nCtx), i(opts.nSink),
        i(opts.window), i(opts.seg), i(opts.threads), Number(opts.memoryBudget) || 0));
      if (!s) throw this.#cErr(this.#M._eiw_last_code(), `Creating a session with policy "${policy}"`);
      const sid = this.#nextSid++;
      // The options as given (defaults left out): a restore recreates the same session from them.
      const kept = { policy };
      for (const k of ['nCtx', 'nSink', 'window', 'seg', 'memoryBudget']) if (i(opts[k]) > 0) kept[k] = i(opts[k]);
      this.#sessions.set(sid, { ptr: s, policy, opts: kept, busy: false });
      return sid;
    });
  }

  /**
   * Serialises a session once the generations queued before have ended: {checkpoint: Uint8Array (the engine's
   * checkpoint, docs/checkpoint.md), state: hex (wasm/shim_checkpoint.c), opts (creation options), stats, ms}.
   * The session is not modified.
   */
  exportSession(sid) {
    const run = () => this.#export(sid);
    const p = this.#lock.then(run, run);
    this.#lock = p.catch(() => {});
    return p;
  }

  #export(sid) {
    return this.#guard(() => {
      const s = this.#session(sid), M = this.#M;
      const t0 = now();
      const size = M._eiw_session_checkpoint_size(s.ptr);
      if (size < 0) throw this.#cErr(size, 'save', SAVE_HINTS);
      const nState = M._eiw_state_bytes();
      const buf = M._malloc(Math.max(1, size)), st = M._malloc(nState);
      try {
        if (!buf || !st) throw new EdgeinfError('NOMEM', `save: no WebAssembly memory left for a ${size}-byte checkpoint.`);
        const n = M._eiw_session_save(s.ptr, buf, size, st);
        if (n < 0) throw this.#cErr(n, 'save', SAVE_HINTS);
        const heap = M.HEAPU8; // fresh: malloc above ran on this thread
        return {
          checkpoint: heap.slice(buf, buf + n), state: toHex(heap.subarray(st, st + nState)),
          opts: { ...s.opts }, stats: this.stats(sid), ms: now() - t0,
        };
      } finally {
        if (buf) M._free(buf);
        if (st) M._free(st);
      }
    });
  }

  /**
   * Creates a session with opts and restores it from an engine checkpoint and the shim state saved with it (hex;
   * null for a bare checkpoint, e.g. from the CLI). Returns the new session's id; on any error no session is left.
   */
  importSession(opts, checkpoint, stateHex, context = 'restore') {
    const state = stateHex == null ? null : fromHex(stateHex);
    if (stateHex != null && !state) throw new EdgeinfError('FORMAT', `${context}: the saved session state is not hex.`, undefined, SAVED_HINTS.FORMAT);
    const sid = this.createSession(opts);
    const s = this.#session(sid), M = this.#M;
    let buf = 0, sp = 0;
    try {
      this.#guard(() => {
        buf = M._malloc(Math.max(1, checkpoint.length));
        sp = state ? M._malloc(state.length) : 0;
        if (!buf || (state && !sp)) throw new EdgeinfError('NOMEM', `${context}: no WebAssembly memory left for a ${checkpoint.length}-byte checkpoint.`);
        const heap = M.HEAPU8;
        heap.set(checkpoint, buf);
        if (state) heap.set(state, sp);
        const rc = M._eiw_session_restore(s.ptr, buf, checkpoint.length, sp, state ? state.length : 0);
        if (rc < 0) throw this.#cErr(rc, context, SAVED_HINTS);
      });
    } catch (e) {
      this.freeSession(sid);
      throw e;
    } finally {
      if (!this.#dead) {
        if (buf) M._free(buf);
        if (sp) M._free(sp);
      }
    }
    return sid;
  }

  #session(sid) {
    const s = this.#sessions.get(sid);
    if (!s) throw new EdgeinfError('INVALID_ARG', `No session ${sid} (it was freed or never created).`);
    return s;
  }

  /** Stats of a session as a plain object. */
  stats(sid) {
    return this.#guard(() => {
      const s = this.#session(sid), M = this.#M;
      M._eiw_session_stats(s.ptr, this.#stats);
      const d = new Float64Array(M.HEAPU8.buffer, this.#stats, 13);
      return {
        policy: s.policy, policyInUse: M.UTF8ToString(M._eiw_policy_name(d[0])),
        tokens: d[1], kvTokens: d[2], kvBytes: d[3], memoryBytes: d[4], compressions: d[5],
        prefillTokens: d[6], prefillMs: d[7], decodeTokens: d[8], decodeMs: d[9],
        nSink: d[10], window: d[11], seg: d[12],
      };
    });
  }

  /** Forgets a session's tokens. */
  resetSession(sid) {
    this.#guard(() => this.#M._eiw_session_reset(this.#session(sid).ptr));
  }

  freeSession(sid) {
    const s = this.#sessions.get(sid);
    if (!s) return;
    this.#sessions.delete(sid);
    if (!this.#dead && !this.#unloaded) this.#M._eiw_session_free(s.ptr);
  }

  /** Renders chat messages with the model's chat format; returns {text, stops}. */
  renderChat(messages) {
    try {
      return { text: this.#format.render(messages, true), stops: this.#format.stops };
    } catch (e) {
      throw new EdgeinfError('INVALID_ARG', `chat: ${e.message}`);
    }
  }

  /**
   * Streams a generation. req: {prompt} or {messages}, plus options maxTokens, temperature, topK, topP,
   * minP, repeatPenalty, repeatLastN, seed, stop. emit(chunk) gets {text, token, stats} per token;
   * abort.aborted is checked between tokens. Generations on one engine run one after another.
   * Resolves to {text, finishReason: 'stop'|'length'|'abort'|'context_full', usage, stats, timings}.
   */
  generate(sid, req, emit, abort = { aborted: false }, onProgress = () => {}) {
    const run = () => this.#generate(sid, req, emit, abort, onProgress);
    const p = this.#lock.then(run, run);
    this.#lock = p.catch(() => {});
    return p;
  }

  async #generate(sid, req, emit, abort, onProgress) {
    this.#alive();
    const s = this.#session(sid), M = this.#M;
    let text, stops = Array.isArray(req.stop) ? req.stop.slice() : typeof req.stop === 'string' ? [req.stop] : [];
    if (req.continue) {
      text = null;
    } else if (req.messages) {
      const c = this.renderChat(req.messages);
      text = c.text;
      stops = stops.concat(c.stops);
    } else {
      if (typeof req.prompt !== 'string') throw new EdgeinfError('INVALID_ARG', 'generate: prompt must be a string.');
      text = req.prompt;
    }
    const maxTokens = req.maxTokens == null ? 256 : Math.max(0, Math.floor(req.maxTokens));
    const f = (v) => (v == null ? NaN : Number(v));
    let seedLo = 0, seedHi = 0, hasSeed = 0;
    if (req.seed != null) {
      const b = BigInt.asUintN(64, BigInt(req.seed));
      seedLo = Number(b & 0xffffffffn); seedHi = Number(b >> 32n); hasSeed = 1;
    }
    const t0 = now();
    const topK = req.topK == null ? -1 : req.topK | 0, lastN = req.repeatLastN == null ? -1 : req.repeatLastN | 0;
    let left;
    if (text === null) {
      // Continue: a new sampler only when sampling options are given, else the last generation's goes on.
      const fresh = ['temperature', 'topK', 'topP', 'minP', 'repeatPenalty', 'repeatLastN', 'seed'].some((k) => req[k] != null);
      left = this.#guard(() => M._eiw_gen_continue(s.ptr, fresh ? 1 : 0, f(req.temperature), topK, f(req.topP),
        f(req.minP), f(req.repeatPenalty), lastN, hasSeed, seedLo, seedHi));
      if (left < 0) throw this.#cErr(left, 'continue');
    } else {
      left = this.#guard(() => this.#withStr(text, (p) => M._eiw_gen_begin(s.ptr, p, 1, f(req.temperature),
        topK, f(req.topP), f(req.minP), f(req.repeatPenalty), lastN, hasSeed, seedLo, seedHi)));
      if (left < 0) throw this.#cErr(left, 'generate: starting');
    }
    const promptTotal = left;
    let finishReason = null;
    try {
      while (left > 0) {
        if (abort.aborted) { finishReason = 'abort'; break; }
        left = this.#guard(() => M._eiw_gen_prefill(s.ptr, PREFILL_CHUNK));
        if (left < 0) throw this.#cErr(left, `generate: prompt of ${promptTotal} new tokens`);
        onProgress({ phase: 'prefill', loaded: promptTotal - left, total: promptTotal });
        if (left > 0) await yieldToEventLoop();
      }
      const tFirst = now();
      const stopper = new StopMatcher(stops);
      let out = '', n = 0, lead = !!req.messages; // a chat reply does not start with the space after "Assistant:"
      const trimLead = (x) => { if (lead) { x = x.replace(/^\s+/, ''); if (x) lead = false; } return x; };
      while (!finishReason) {
        if (n >= maxTokens) { finishReason = 'length'; break; }
        if (abort.aborted) { finishReason = 'abort'; break; }
        const t = this.#guard(() => M._eiw_gen_step(s.ptr));
        if (t === EOS) { finishReason = 'stop'; break; }
        if (t === CONTEXT_FULL) { finishReason = 'context_full'; break; }
        if (t < 0) throw this.#cErr(t, 'generate: decoding');
        n++;
        const r = stopper.push(M.UTF8ToString(M._eiw_gen_text(s.ptr)));
        r.text = trimLead(r.text);
        out += r.text;
        emit({ text: r.text, token: t, stats: this.stats(sid) });
        if (r.stopped) { finishReason = 'stop'; break; }
        await yieldToEventLoop();
      }
      const tail = this.#guard(() => (M._eiw_gen_end(s.ptr), M.UTF8ToString(M._eiw_gen_text(s.ptr))));
      const rest = trimLead(finishReason === 'stop' && stopper.stopped ? '' : stopper.push(tail).text + stopper.flush());
      if (rest) { out += rest; emit({ text: rest, token: -1, stats: this.stats(sid) }); }
      const tEnd = now();
      return {
        text: out, finishReason,
        usage: { promptTokens: promptTotal, completionTokens: n },
        stats: this.stats(sid),
        timings: { prefillMs: tFirst - t0, decodeMs: tEnd - tFirst, tokensPerSecond: n > 0 ? n / ((tEnd - tFirst) / 1000) : 0 },
      };
    } catch (e) {
      if (!this.#dead) try { M._eiw_gen_end(s.ptr); } catch { /* engine state reported below */ }
      throw toEdgeinfError(e, 'generate');
    }
  }

  /** Frees every session and the model. The engine cannot be used afterwards. */
  async unload() {
    if (this.#unloaded) return;
    await this.#lock;
    for (const sid of [...this.#sessions.keys()]) this.freeSession(sid);
    if (!this.#dead && this.#model) {
      this.#M._eiw_model_free(this.#model);
      this.#M._free(this.#stats);
    }
    this.#model = 0;
    this.#unloaded = true;
  }
}
