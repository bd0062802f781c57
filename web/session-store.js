// session-store.js — where saved sessions live: IndexedDB in browsers (page or worker), a directory in Node.
//
// Both stores keep, per name, a metadata record (session-format.js) and the engine checkpoint, and replace them
// atomically: a save either lands completely or not at all, and until it lands the previous save under that name
// stays loadable.
//
// IndexedDB: database 'edgeinf-sessions', stores 'sessions' (name -> the small summary listSessions() reads) and
// 'payloads' (name -> {name, meta, checkpoint: ArrayBuffer}). A save puts both in ONE readwrite transaction with
// durability 'strict' (committed = flushed to disk): IndexedDB transactions are all-or-nothing, so a quota error,
// a crash or a closed tab before the commit leaves the previous records as they were.
//
// Why not Emscripten's IDBFS (FS.syncfs) — measured with Emscripten 3.1.6 (the Debian one these builds use) in
// headless Chromium, both builds, in a worker: it works for plain saves, but (1) when the quota is exceeded Chromium
// aborts the sync's transaction (an `abort` event with QuotaExceededError) and IDBFS 3.1.6 only listens for `error`
// and `complete`, so FS.syncfs never calls back: the save hangs forever and the in-memory FS keeps a file that is not
// stored; (2) syncfs(false) mirrors the worker's in-memory FS onto the database, deleting every entry it does not
// hold: a second tab (or worker) that mounted earlier erases sessions saved meanwhile by the first; (3) IDBFS keeps
// every saved checkpoint in the worker's memory, and a rename stores the whole file again (a temp-file + rename save
// writes it twice and needs three copies' room at once). Plain transactions have none of these problems.
//
// Node (Engine.load({sessionDir})): one file per session, `<encodeURIComponent(name)>.eis` in the portable format,
// written as name.tmp, fsync, rename over the old file, fsync of the directory.

import { EdgeinfError, toEdgeinfError } from './errors.js';
import { encodeSaved, decodeSaved, summaryOf, checkMeta, SAVED_HINTS } from './session-format.js';

const DB_NAME = 'edgeinf-sessions';
const DB_VERSION = 1;

const isNode = typeof process === 'object' && !!(process.versions && process.versions.node) &&
  typeof window === 'undefined' && typeof importScripts === 'undefined';

/** The store for this environment: a directory when `dir` is given (Node), IndexedDB where it exists, else null. */
export function openSessionStore({ dir } = {}) {
  if (dir) {
    if (!isNode) throw new EdgeinfError('INVALID_ARG', 'sessionDir is for Node; in browsers sessions are kept in IndexedDB.');
    return new DirStore(dir);
  }
  if (typeof indexedDB !== 'undefined') return new IdbStore();
  return null;
}

/** Error of a failed save: quota has its own code, and the message says the previous save is intact. */
function saveError(e, name, bytes) {
  if (e instanceof EdgeinfError) return e;
  const quota = e && (e.name === 'QuotaExceededError' || e.code === 'ENOSPC' || e.code === 'EDQUOT');
  if (quota)
    return new EdgeinfError('QUOTA_EXCEEDED', `Saving session "${name}" (${bytes} bytes): storage quota exceeded; nothing was written.`, { name, bytes }, SAVED_HINTS.QUOTA_EXCEEDED);
  const code = isNode ? 'IO' : 'STORAGE';
  return new EdgeinfError(code, `Saving session "${name}": ${e && e.message ? e.message : e}; the previous save under this name is intact.`, { name }, '');
}

const readError = (e, what) => (e instanceof EdgeinfError ? e : new EdgeinfError(isNode ? 'IO' : 'STORAGE', `${what}: ${e && e.message ? e.message : e}`, undefined, ''));

// ------------------------------------------------------------------ IndexedDB

class IdbStore {
  #db = null;

  /** Opens the database once (per store); a version change elsewhere closes it so the other tab can upgrade. */
  #open() {
    if (this.#db) return this.#db;
    this.#db = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, DB_VERSION);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains('sessions')) db.createObjectStore('sessions', { keyPath: 'name' });
        if (!db.objectStoreNames.contains('payloads')) db.createObjectStore('payloads', { keyPath: 'name' });
      };
      req.onsuccess = () => {
        const db = req.result;
        db.onversionchange = () => { db.close(); this.#db = null; };
        resolve(db);
      };
      req.onerror = () => { this.#db = null; reject(req.error); };
      req.onblocked = () => { this.#db = null; reject(new Error('IndexedDB open blocked by another tab')); };
    });
    return this.#db;
  }

  /** Runs fn(stores...) in one transaction; resolves with the last request's result once the transaction commits,
   * rejects with the transaction's error (e.g. QuotaExceededError) when it aborts. */
  async #tx(names, mode, fn) {
    const db = await this.#open();
    return new Promise((resolve, reject) => {
      let t;
      try {
        t = db.transaction(names, mode, mode === 'readwrite' ? { durability: 'strict' } : undefined);
      } catch (e) { reject(e); return; }
      let result;
      t.oncomplete = () => resolve(result);
      // A failed request aborts the whole transaction (its error event is left uncancelled on purpose): the abort
      // reports it, and nothing of the transaction is kept.
      t.onabort = () => reject(t.error || new Error('IndexedDB transaction aborted'));
      try {
        const r = fn(...names.map((n) => t.objectStore(n)));
        if (r && 'onsuccess' in r) r.onsuccess = () => { result = r.result; };
      } catch (e) {
        try { t.abort(); } catch { /* already finished */ }
        reject(e);
      }
    });
  }

  async save(meta, checkpoint) {
    // A buffer of exactly these bytes (a view into wasm memory or a SharedArrayBuffer cannot be stored).
    const owns = checkpoint.buffer instanceof ArrayBuffer && checkpoint.byteOffset === 0 && checkpoint.byteLength === checkpoint.buffer.byteLength;
    const ab = owns ? checkpoint.buffer : checkpoint.slice().buffer;
    try {
      await this.#tx(['sessions', 'payloads'], 'readwrite', (s, p) => {
        p.put({ name: meta.name, meta, checkpoint: ab });
        return s.put(summaryOf(meta));
      });
    } catch (e) {
      throw saveError(e, meta.name, checkpoint.length);
    }
  }

  /** {meta, checkpoint: Uint8Array} or null. Records that are incomplete are reported as FORMAT. */
  async load(name) {
    let rec;
    try {
      rec = await this.#tx(['payloads'], 'readonly', (p) => p.get(name));
    } catch (e) {
      throw readError(e, `Reading session "${name}"`);
    }
    if (!rec) return null;
    const buf = rec.checkpoint;
    const checkpoint = buf instanceof ArrayBuffer ? new Uint8Array(buf) : ArrayBuffer.isView(buf) ? new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) : null;
    if (!checkpoint) throw new EdgeinfError('FORMAT', `Session "${name}": the stored checkpoint is missing.`, undefined, SAVED_HINTS.FORMAT);
    return { meta: checkMeta(rec.meta), checkpoint };
  }

  async list() {
    try {
      return (await this.#tx(['sessions'], 'readonly', (s) => s.getAll())) || [];
    } catch (e) {
      throw readError(e, 'Listing saved sessions');
    }
  }

  async remove(name) {
    try {
      // Requests run in order: the count sees the records the deletes then remove, in the same transaction.
      const had = await this.#tx(['sessions', 'payloads'], 'readwrite', (s, p) => {
        const n = s.count(name);
        s.delete(name);
        p.delete(name);
        return n;
      });
      return had > 0;
    } catch (e) {
      throw readError(e, `Deleting session "${name}"`);
    }
  }
}

// ------------------------------------------------------------------ directory (Node)

let fsp = null;
let pathMod = null;
async function nodeMods() {
  if (!fsp) {
    const fsName = 'node:fs/promises', pathName = 'node:path';
    fsp = await import(/* @vite-ignore */ fsName);
    pathMod = await import(/* @vite-ignore */ pathName);
  }
  return { fs: fsp, path: pathMod };
}

class DirStore {
  constructor(dir) { this.dir = dir; }

  async #file(name) {
    const { path } = await nodeMods();
    return path.join(this.dir, `${encodeURIComponent(name)}.eis`);
  }

  async save(meta, checkpoint) {
    const { fs } = await nodeMods();
    const file = await this.#file(meta.name);
    const tmp = `${file}.tmp`;
    const bytes = encodeSaved(meta, checkpoint);
    let fh = null;
    try {
      await fs.mkdir(this.dir, { recursive: true });
      fh = await fs.open(tmp, 'w');
      await fh.writeFile(bytes);
      await fh.sync();
      await fh.close();
      fh = null;
      await fs.rename(tmp, file);
    } catch (e) {
      if (fh) await fh.close().catch(() => {});
      await fs.rm(tmp, { force: true, recursive: false }).catch(() => {});
      throw saveError(e, meta.name, checkpoint.length);
    }
    // The rename is durable once the directory is flushed (some filesystems cannot: that is accepted).
    try {
      const d = await fs.open(this.dir, 'r');
      await d.sync().catch(() => {});
      await d.close();
    } catch { /* see above */ }
  }

  async load(name) {
    const { fs } = await nodeMods();
    let buf;
    try {
      buf = await fs.readFile(await this.#file(name));
    } catch (e) {
      if (e && e.code === 'ENOENT') return null;
      throw readError(e, `Reading session "${name}"`);
    }
    const { meta, checkpoint } = decodeSaved(buf);
    if (!meta) throw new EdgeinfError('FORMAT', `Session "${name}": the file holds a bare checkpoint, not a saved session.`, undefined, SAVED_HINTS.FORMAT);
    return { meta, checkpoint };
  }

  async list() {
    const { fs, path } = await nodeMods();
    let names;
    try {
      names = await fs.readdir(this.dir);
    } catch (e) {
      if (e && e.code === 'ENOENT') return [];
      throw readError(e, 'Listing saved sessions');
    }
    const out = [];
    for (const f of names.filter((n) => n.endsWith('.eis')).sort()) {
      const name = decodeURIComponent(f.slice(0, -4));
      try {
        // The name is the file's (what restore and delete look up), even if the metadata says otherwise.
        out.push({ ...summaryOf(decodeSaved(await fs.readFile(path.join(this.dir, f))).meta), name });
      } catch (e) {
        // Listed anyway, so that it can be deleted.
        out.push({ name, error: toEdgeinfError(e, name).toWire() });
      }
    }
    return out;
  }

  async remove(name) {
    const { fs } = await nodeMods();
    try {
      await fs.unlink(await this.#file(name));
      return true;
    } catch (e) {
      if (e && e.code === 'ENOENT') return false;
      throw readError(e, `Deleting session "${name}"`);
    }
  }
}
