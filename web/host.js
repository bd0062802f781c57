// host.js — the engine side of the message protocol: {id, type, payload} in,
// {id, type: 'result' | 'error' | 'token' | 'progress', payload} out. The worker (worker.js) wires it
// to postMessage; in Node (and with {worker: false}) index.js calls it directly, so both paths run the
// same code. Errors go out as {code, message, details}.

import { CoreEngine } from './engine-core.js';
import { EdgeinfError, toEdgeinfError } from './errors.js';
import { validateName, encodeSaved, decodeSaved, summaryOf, cleanExtras, SAVED_HINTS, SAVED_VERSION } from './session-format.js';
import { openSessionStore } from './session-store.js';

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** Creates a host; post(msg) delivers messages to the API side. Returns onMessage(msg). */
export function createHost(post) {
  let engine = null;
  const aborts = new Map(); // request id -> AbortController of a running load/generate
  let storeOpts = {}, sessionStore;

  const need = () => {
    if (!engine) throw new EdgeinfError('UNLOADED', 'No model is loaded in this engine.');
    return engine;
  };

  /** The saved-session store (IndexedDB, or Engine.load's sessionDir in Node); UNSUPPORTED where there is none. */
  const store = () => {
    if (sessionStore === undefined) sessionStore = openSessionStore(storeOpts);
    if (!sessionStore)
      throw new EdgeinfError('UNSUPPORTED', 'Saved sessions need IndexedDB (browsers) or Engine.load({sessionDir}) in Node. Session.saveToBuffer() and Engine.restoreFromBuffer() work everywhere.', undefined, '');
    return sessionStore;
  };

  /** The metadata record of a saved session (session-format.js). */
  const makeMeta = (name, x, p) => {
    const info = engine.info();
    const { transcript, data } = cleanExtras(p.transcript, p.data);
    return {
      format: 'edgeinf-session', version: SAVED_VERSION, name, savedAt: Date.now(), bytes: x.checkpoint.length,
      policy: x.opts.policy, policyInUse: x.stats.policyInUse, tokens: x.stats.tokens,
      model: { fingerprint: info.model.fingerprint, name: info.model.name },
      adapter: info.adapter ? { nParams: info.adapter.nParams, sizeBytes: info.adapter.sizeBytes } : null,
      opts: x.opts, stats: x.stats, state: x.state, transcript, data,
    };
  };

  /** Creates a session from a saved one; {sid, stats, opts, saved}. */
  const restoreFrom = (meta, checkpoint, context) => {
    const e = need();
    if (checkpoint.length !== meta.bytes)
      throw new EdgeinfError('FORMAT', `${context}: the stored checkpoint has ${checkpoint.length} bytes, ${meta.bytes} were saved (truncated).`, undefined, SAVED_HINTS.FORMAT);
    if (meta.adapter && /edgeinfinite/.test(meta.policyInUse || meta.opts.policy) && !e.info().adapter)
      throw new EdgeinfError('MISMATCH', `${context}: it was saved with an EdgeInfinite adapter, and this engine was loaded without one.`, undefined, SAVED_HINTS.MISMATCH);
    const sid = e.importSession(meta.opts, checkpoint, meta.state, context);
    const { name, savedAt, bytes, tokens, policy, policyInUse, model, transcript, data } = meta;
    return { sid, stats: e.stats(sid), opts: meta.opts, saved: { name, savedAt, bytes, tokens, policy, policyInUse, model, transcript, data } };
  };

  const handlers = {
    async load(p, id, reply) {
      if (engine) throw new EdgeinfError('INVALID_ARG', 'A model is already loaded; unload it first.');
      storeOpts = { dir: p.sessionDir };
      sessionStore = undefined;
      const ctrl = new AbortController();
      aborts.set(id, ctrl);
      try {
        engine = await CoreEngine.load({ ...p, signal: ctrl.signal, onProgress: (x) => reply('progress', x) });
      } finally {
        aborts.delete(id);
      }
      return engine.info();
    },
    info: () => need().info(),
    createSession(p) {
      const sid = need().createSession(p);
      return { sid, stats: engine.stats(sid) };
    },
    stats: (p) => need().stats(p.sid),
    resetSession(p) {
      need().resetSession(p.sid);
      return engine.stats(p.sid);
    },
    freeSession(p) {
      if (engine) engine.freeSession(p.sid);
      return true;
    },
    async generate(p, id, reply) {
      const ctrl = new AbortController();
      aborts.set(id, ctrl);
      try {
        return await need().generate(p.sid, p.req, (chunk) => reply('token', chunk), ctrl.signal,
          (x) => reply('progress', x));
      } finally {
        aborts.delete(id);
      }
    },
    async saveSession(p) {
      const name = validateName(p.name);
      const st = store();
      const t0 = now();
      const x = await need().exportSession(p.sid);
      const meta = makeMeta(name, x, p);
      const t1 = now();
      await st.save(meta, x.checkpoint);
      return { ...summaryOf(meta), timings: { serializeMs: x.ms, storeMs: now() - t1, totalMs: now() - t0 } };
    },
    async restoreSession(p) {
      const name = validateName(p.name);
      const st = store();
      const t0 = now();
      const rec = await st.load(name);
      if (!rec) throw new EdgeinfError('NOT_FOUND', `No saved session named "${name}".`, { name }, SAVED_HINTS.NOT_FOUND);
      const t1 = now();
      const r = restoreFrom(rec.meta, rec.checkpoint, `Restoring session "${name}"`);
      r.saved.timings = { readMs: t1 - t0, loadMs: now() - t1, totalMs: now() - t0 };
      return r;
    },
    async listSessions() {
      const list = await store().list();
      const fp = engine && engine.info().model.fingerprint;
      const hasAdapter = !!(engine && engine.info().adapter);
      // Restorable here: same model, and the adapter when the policy uses it (the engine still checks which one).
      const ok = (x) => !x.error && !!x.model && x.model.fingerprint === fp &&
        (hasAdapter || !(x.adapter && /edgeinfinite/.test(x.policyInUse || x.policy)));
      return list.map((x) => ({ ...x, compatible: ok(x) }))
        .sort((a, b) => (b.savedAt || 0) - (a.savedAt || 0));
    },
    async deleteSession(p) {
      return store().remove(validateName(p.name));
    },
    async exportSession(p) {
      const x = await need().exportSession(p.sid);
      return encodeSaved(makeMeta(p.name == null ? 'session' : validateName(p.name), x, p), x.checkpoint);
    },
    importSession(p) {
      const e = need();
      const { meta, checkpoint, header } = decodeSaved(p.bytes);
      const t0 = now();
      if (meta) {
        const r = restoreFrom(meta, checkpoint, 'Restoring a saved session');
        r.saved.timings = { loadMs: now() - t0 };
        return r;
      }
      // A bare engine checkpoint: the session is created from its header (the engine validates every byte).
      if (header.adapterFingerprint && /edgeinfinite/.test(header.opts.policy) && !e.info().adapter)
        throw new EdgeinfError('MISMATCH', 'Restoring a checkpoint: it was saved with an EdgeInfinite adapter, and this engine was loaded without one.', undefined, SAVED_HINTS.MISMATCH);
      const sid = e.importSession(header.opts, checkpoint, null, 'Restoring a checkpoint');
      return { sid, stats: e.stats(sid), opts: header.opts, saved: { bytes: checkpoint.length, timings: { loadMs: now() - t0 } } };
    },
    abort(p) {
      const c = aborts.get(p.target);
      if (c) c.abort();
      return !!c;
    },
    async unload() {
      for (const c of aborts.values()) c.abort();
      if (engine) await engine.unload();
      engine = null;
      return true;
    },
    // Test hook: an uncaught exception outside any request, as a real worker crash would raise.
    __crash() {
      setTimeout(() => { throw new Error('edgeinf test: simulated worker crash'); }, 0);
      return true;
    },
  };

  return async function onMessage(msg) {
    const { id, type, payload } = msg || {};
    const reply = (t, p) => post({ id, type: t, payload: p });
    const h = handlers[type];
    if (!h) {
      reply('error', new EdgeinfError('INVALID_ARG', `Unknown request type "${type}".`).toWire());
      return;
    }
    try {
      reply('result', await h(payload || {}, id, reply));
    } catch (e) {
      reply('error', toEdgeinfError(e, type).toWire());
    }
  };
}
