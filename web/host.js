// host.js — the engine side of the message protocol: {id, type, payload} in,
// {id, type: 'result' | 'error' | 'token' | 'progress', payload} out. The worker (worker.js) wires it
// to postMessage; in Node (and with {worker: false}) index.js calls it directly, so both paths run the
// same code. Errors go out as {code, message, details}.

import { CoreEngine } from './engine-core.js';
import { EdgeinfError, toEdgeinfError } from './errors.js';

/** Creates a host; post(msg) delivers messages to the API side. Returns onMessage(msg). */
export function createHost(post) {
  let engine = null;
  const aborts = new Map(); // request id -> AbortController of a running load/generate

  const need = () => {
    if (!engine) throw new EdgeinfError('UNLOADED', 'No model is loaded in this engine.');
    return engine;
  };

  const handlers = {
    async load(p, id, reply) {
      if (engine) throw new EdgeinfError('INVALID_ARG', 'A model is already loaded; unload it first.');
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
