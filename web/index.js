// index.js — the public API of edgeinf (ES module).
//
//   import { Engine } from 'edgeinf';
//   const engine = await Engine.load({ model: 'model.gguf', onProgress: console.log });
//   const session = engine.createSession({ policy: 'auto' });
//   for await (const chunk of session.generate('Once upon a time', { maxTokens: 64 })) show(chunk.text);
//
// In a browser page the engine runs in a Web Worker (worker.js); in Node (or with {worker: false}) it
// runs in the calling thread. Both go through the same message protocol (host.js), so they behave
// the same. Every failure is an EdgeinfError with a `code`.

import { EdgeinfError, toEdgeinfError } from './errors.js';
import { listCached, deleteCached } from './cache.js';
import { validateName, cleanExtras } from './session-format.js';

export { EdgeinfError } from './errors.js';

const hasDom = typeof window !== 'undefined' && typeof document !== 'undefined';

/** Makes a relative URL absolute against the page, so the worker resolves it the same way. */
function pageUrl(u) {
  if (typeof u !== 'string' || typeof location === 'undefined') return u;
  try { return new URL(u, location.href).href; } catch { return u; }
}

// ------------------------------------------------------------------ backends

/** Shared client side of the protocol: request ids, routing of token/progress/result/error. */
class Client {
  #next = 1;
  #pending = new Map();
  dead = null;

  /** Handles one message from the host. */
  receive(msg) {
    const p = this.#pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'token') p.onToken && p.onToken(msg.payload);
    else if (msg.type === 'progress') p.onProgress && p.onProgress(msg.payload);
    else {
      this.#pending.delete(msg.id);
      if (msg.type === 'result') p.resolve(msg.payload);
      else p.reject(EdgeinfError.fromWire(msg.payload || {}));
    }
  }

  /** Sends a request; returns {id, promise}. */
  request(type, payload, { onToken, onProgress } = {}) {
    const id = this.#next++;
    const promise = new Promise((resolve, reject) => {
      if (this.dead) { reject(this.dead); return; }
      this.#pending.set(id, { resolve, reject, onToken, onProgress });
      try {
        this.send({ id, type, payload });
      } catch (e) {
        this.#pending.delete(id);
        reject(toEdgeinfError(e, type));
      }
    });
    return { id, promise };
  }

  call(type, payload, cbs) {
    return this.request(type, payload, cbs).promise;
  }

  /** Fails every request in flight and all later ones with err. */
  fail(err) {
    this.dead = err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}

/** The engine in a Web Worker. A crash of the worker fails everything with WORKER_CRASHED. */
class WorkerClient extends Client {
  constructor() {
    super();
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'edgeinf' });
    this.worker.onmessage = (ev) => this.receive(ev.data);
    this.worker.onerror = (ev) => {
      if (ev && ev.preventDefault) ev.preventDefault();
      const what = ev && ev.message ? ev.message : 'the worker script failed to load or threw';
      this.fail(new EdgeinfError('WORKER_CRASHED', `The edgeinf worker crashed (${what}).`));
      this.worker.terminate();
    };
    this.worker.onmessageerror = () => {
      this.fail(new EdgeinfError('WORKER_CRASHED', 'A message from the edgeinf worker could not be read.'));
      this.worker.terminate();
    };
  }

  send(msg) { this.worker.postMessage(msg); }
  close() { this.worker.terminate(); }
}

/** The engine in this thread (Node, or {worker: false}). Replies are delivered asynchronously. */
class LocalClient extends Client {
  #host = null;
  #hostReady;
  constructor() {
    super();
    this.#hostReady = import('./host.js').then(({ createHost }) => {
      this.#host = createHost((m) => this.receive(m));
    });
  }

  send(msg) { this.#hostReady.then(() => this.#host(msg)); }
  close() {}
}

// ------------------------------------------------------------------ streaming

/**
 * One generation: an async iterable of chunks {text, token} and a promise of the final result
 * (it is thenable), fed by the same stream; onToken sees every chunk too.
 */
class Generation {
  #queue = [];
  #wake = null;
  #finished = false;
  #error = null;
  #done;
  #abort;

  constructor(start, onToken, abort) {
    this.#abort = abort;
    this.#done = start((chunk) => {
      if (onToken) {
        try { onToken(chunk); } catch (e) { console.error('edgeinf onToken callback threw:', e); }
      }
      this.#queue.push(chunk);
      this.#signal();
    }).then((r) => { this.#finished = true; this.#signal(); return r; },
      (e) => { this.#finished = true; this.#error = e; this.#signal(); throw e; });
    this.#done.catch(() => {}); // the error reaches whoever awaits or iterates
  }

  #signal() {
    if (this.#wake) { const w = this.#wake; this.#wake = null; w(); }
  }

  /** Stops the generation between tokens (the session stays usable). */
  abort() { this.#abort(); }

  then(onOk, onErr) { return this.#done.then(onOk, onErr); }
  catch(onErr) { return this.#done.catch(onErr); }
  finally(f) { return this.#done.finally(f); }

  async *[Symbol.asyncIterator]() {
    let completed = false;
    try {
      for (;;) {
        if (this.#queue.length) { yield this.#queue.shift(); continue; }
        if (this.#finished) {
          if (this.#error) throw this.#error;
          completed = true;
          return;
        }
        await new Promise((r) => { this.#wake = r; });
      }
    } finally {
      if (!completed && !this.#finished) this.#abort(); // the loop was left early: stop generating
    }
  }
}

// ------------------------------------------------------------------ session

const ZERO_STATS = { tokens: 0, kvTokens: 0, kvBytes: 0, memoryBytes: 0, compressions: 0, prefillTokens: 0, prefillMs: 0, decodeTokens: 0, decodeMs: 0 };

export class Session {
  #client; #engine; #sid; #stats; #opts; #messages = null; #text = null;

  /** Made by Engine.createSession / restore / restoreFromBuffer; `created` resolves to {sid, stats} from the
   * engine, `saved` (restores) carries the saved transcript. */
  constructor(engine, client, opts, created = null, saved = null) {
    this.#engine = engine;
    this.#client = client;
    this.#opts = { ...opts, policy: opts.policy || 'auto' };
    this.policy = this.#opts.policy;
    this.#sid = (created || client.call('createSession', this.#opts)).then((r) => { this.#stats = r.stats; return r.sid; });
    this.#sid.catch(() => {}); // reported by the first call that needs the session
    /** For a restored session: {name, savedAt, bytes, tokens, policy, model, data, timings}; otherwise null. */
    this.restored = null;
    if (saved) {
      const { transcript, ...rest } = saved;
      this.restored = rest;
      if (transcript && Array.isArray(transcript.messages)) this.#messages = transcript.messages.map((m) => ({ ...m }));
      else if (transcript && typeof transcript.text === 'string') this.#text = transcript.text;
    }
  }

  /** Resolves to this session once the engine created it (rejects with the engine's error). */
  get ready() { return this.#sid.then(() => this); }

  /** The conversation so far when it was held as chat messages (the last chat() call's messages and its reply;
   * restored with the session), else null. A copy. */
  get messages() { return this.#messages ? this.#messages.map((m) => ({ ...m })) : null; }

  /** The text so far when generate() was used (prompt + generated text; restored with the session), else null. */
  get text() { return this.#text; }

  /** Latest stats (updated with every token); synchronous. */
  stats() {
    return { policy: this.policy, ...ZERO_STATS, ...(this.#stats || {}) };
  }

  /** Streams a completion of `prompt` (the whole context; a prompt extending the previous context
   * reuses its KV cache). */
  generate(prompt, opts = {}) {
    return this.#stream({ prompt }, opts);
  }

  /** Streams the assistant's reply to `messages` ([{role, content}]) using the model's chat template. */
  chat(messages, opts = {}) {
    return this.#stream({ messages }, opts);
  }

  /** Streams more of the text exactly where the last generation stopped (also right after a restore). Without
   * sampling options the last generation's sampler goes on (so greedy or seeded output is the same as one longer
   * generation); sampling options start a new sampler. */
  continue(opts = {}) {
    return this.#stream({ continue: true }, opts);
  }

  /** Records what the generation added to the transcript (messages or text). */
  #record(input, res) {
    if (input.messages) {
      this.#messages = input.messages.map((m) => ({ role: m.role, content: m.content })).concat({ role: 'assistant', content: res.text });
      this.#text = null;
    } else if (typeof input.prompt === 'string') {
      this.#text = input.prompt + res.text;
      this.#messages = null;
    } else if (input.continue) {
      const last = this.#messages && this.#messages[this.#messages.length - 1];
      if (last && last.role === 'assistant') last.content += res.text;
      else if (this.#text != null) this.#text += res.text;
    }
  }

  #stream(input, opts) {
    const { signal, onToken, onProgress, ...rest } = opts;
    let reqId = null, aborted = false;
    const abort = () => {
      aborted = true;
      if (reqId != null) this.#client.call('abort', { target: reqId }).catch(() => {});
    };
    const start = async (push) => {
      const sid = await this.#sid;
      if (signal) {
        if (signal.aborted) aborted = true;
        else signal.addEventListener('abort', abort, { once: true });
      }
      if (aborted) return { text: '', finishReason: 'abort', usage: { promptTokens: 0, completionTokens: 0 }, stats: this.stats() };
      const r = this.#client.request('generate', { sid, req: { ...input, ...rest } }, {
        onToken: (c) => { this.#stats = c.stats; push({ text: c.text, token: c.token }); },
        onProgress,
      });
      reqId = r.id;
      if (aborted) abort();
      try {
        const res = await r.promise;
        this.#stats = res.stats;
        this.#record(input, res);
        return res;
      } finally {
        if (signal) signal.removeEventListener('abort', abort);
      }
    };
    return new Generation(start, onToken, abort);
  }

  /** Forgets the conversation (keeps the session). */
  async reset() {
    this.#stats = await this.#client.call('resetSession', { sid: await this.#sid });
    this.#messages = null;
    this.#text = null;
  }

  /** The transcript to store: explicit messages/text, else the one the session holds. */
  #extras(opts) {
    const transcript = opts.messages ? { messages: opts.messages } : typeof opts.text === 'string' ? { text: opts.text }
      : this.#messages ? { messages: this.#messages } : this.#text != null ? { text: this.#text } : null;
    return cleanExtras(transcript, opts.data);
  }

  /**
   * Saves the session under `name` (IndexedDB in browsers, Engine.load's sessionDir in Node), replacing a previous
   * save of that name atomically. Waits for a running generation to end. opts: {messages | text, data}: the
   * transcript to keep with it (default: the session's own) and small JSON app data. Resolves to the list entry
   * plus timings.
   */
  async save(name, opts = {}) {
    validateName(name);
    const { transcript, data } = this.#extras(opts);
    return this.#client.call('saveSession', { sid: await this.#sid, name, transcript, data });
  }

  /** The saved session as bytes (the portable format of web/session-format.js) for Engine.restoreFromBuffer. */
  async saveToBuffer(opts = {}) {
    if (opts.name != null) validateName(opts.name);
    const { transcript, data } = this.#extras(opts);
    return this.#client.call('exportSession', { sid: await this.#sid, name: opts.name, transcript, data });
  }

  /** Frees the session's memory in the engine. */
  async free() {
    const sid = await this.#sid.catch(() => null);
    if (sid != null) await this.#client.call('freeSession', { sid });
  }
}

// ------------------------------------------------------------------ engine

const FINISH = { stop: 'stop', length: 'length', context_full: 'length', abort: 'stop' };

export class Engine {
  #client; #info; #chatSession = null; #unloaded = false;

  /**
   * Loads the engine and a model. opts: {model, adapter, threads = 'auto', cache = true, onProgress,
   * wasmBase, sha256, worker, signal}. Resolves to an Engine.
   */
  static async load(opts = {}) {
    const { onProgress, signal, worker, ...rest } = opts;
    if (typeof rest.model === 'string') rest.model = pageUrl(rest.model);
    if (typeof rest.adapter === 'string') rest.adapter = pageUrl(rest.adapter);
    if (typeof rest.wasmBase === 'string') rest.wasmBase = pageUrl(rest.wasmBase);
    for (const k of Object.keys(rest)) if (typeof rest[k] === 'function') delete rest[k];
    const useWorker = worker !== undefined ? !!worker : hasDom && typeof Worker !== 'undefined';
    const client = useWorker ? new WorkerClient() : new LocalClient();
    const r = client.request('load', rest, { onProgress });
    const onAbort = () => client.call('abort', { target: r.id }).catch(() => {});
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
    try {
      const info = await r.promise;
      return new Engine(client, { ...info, worker: useWorker });
    } catch (e) {
      client.close();
      throw e;
    } finally {
      if (signal) signal.removeEventListener('abort', onAbort);
    }
  }

  /** The IndexedDB model cache (same origin as the page). */
  static cache = {
    list: () => listCached(),
    delete: (url) => deleteCached(pageUrl(url)),
  };

  constructor(client, info) {
    this.#client = client;
    this.#info = info;
    /** OpenAI-shaped chat completions on an internal session. */
    this.chat = { completions: { create: (req) => this.#completion(req) } };
  }

  /** Build, threads, model facts and load timings. */
  info() { return structuredClone(this.#info); }

  /** A new session; opts.policy: 'auto'|'full'|'streaming'|'edgeinfinite'|'pod'|'edgeinfinite+pod'. */
  createSession(opts = {}) {
    if (this.#unloaded) throw new EdgeinfError('UNLOADED', 'This engine was unloaded.');
    return new Session(this, this.#client, opts);
  }

  /** Restores a saved session by name: a new Session with the saved policy, layout, memory and transcript. */
  async restore(name) {
    this.#usable();
    validateName(name);
    const r = await this.#client.call('restoreSession', { name });
    return new Session(this, this.#client, r.opts, Promise.resolve(r), r.saved).ready;
  }

  /** Restores from Session.saveToBuffer() bytes, or from a bare engine checkpoint (e.g. the CLI's --save file). */
  async restoreFromBuffer(bytes) {
    this.#usable();
    if (!(bytes instanceof ArrayBuffer || ArrayBuffer.isView(bytes)))
      throw new EdgeinfError('INVALID_ARG', 'restoreFromBuffer: expected an ArrayBuffer or a typed array.');
    const r = await this.#client.call('importSession', { bytes });
    return new Session(this, this.#client, r.opts, Promise.resolve(r), r.saved).ready;
  }

  /** Saved sessions, newest first: [{name, bytes, savedAt, policy, policyInUse, tokens, model, adapter, messages,
   * title, compatible}] (compatible: saved with this engine's model). */
  async listSessions() {
    this.#usable();
    return this.#client.call('listSessions', {});
  }

  /** Deletes a saved session; resolves true if it existed. */
  async deleteSession(name) {
    this.#usable();
    validateName(name);
    return this.#client.call('deleteSession', { name });
  }

  #usable() {
    if (this.#unloaded) throw new EdgeinfError('UNLOADED', 'This engine was unloaded.');
  }

  async #completion(req = {}) {
    const { messages, stream = false, max_tokens, temperature, top_p, seed, stop, signal } = req;
    if (!this.#chatSession) this.#chatSession = this.createSession({ policy: 'auto' });
    const gen = this.#chatSession.chat(messages, { maxTokens: max_tokens, temperature, topP: top_p, seed, stop, signal });
    const id = `chatcmpl-${Math.random().toString(36).slice(2, 12)}`;
    const created = Math.floor(Date.now() / 1000);
    const model = (this.#info.model && this.#info.model.name) || 'edgeinf';
    if (!stream) {
      const r = await gen;
      return {
        id, object: 'chat.completion', created, model,
        choices: [{ index: 0, message: { role: 'assistant', content: r.text }, finish_reason: FINISH[r.finishReason] || 'stop' }],
        usage: { prompt_tokens: r.usage.promptTokens, completion_tokens: r.usage.completionTokens, total_tokens: r.usage.promptTokens + r.usage.completionTokens },
      };
    }
    const chunk = (delta, finish) => ({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }] });
    return {
      async *[Symbol.asyncIterator]() {
        yield chunk({ role: 'assistant', content: '' }, null);
        for await (const c of gen) if (c.text) yield chunk({ content: c.text }, null);
        const r = await gen;
        yield chunk({}, FINISH[r.finishReason] || 'stop');
      },
    };
  }

  /** Frees the model and stops the worker. */
  async unload() {
    if (this.#unloaded) return;
    this.#unloaded = true;
    try {
      if (!this.#client.dead) await this.#client.call('unload', {});
    } finally {
      this.#client.close();
      this.#client.fail(new EdgeinfError('UNLOADED', 'This engine was unloaded.'));
    }
  }

  /** Test hook: makes the worker throw an uncaught exception. */
  _simulateCrash() { return this.#client.call('__crash', {}); }
}
