// cache.js — model files cached in IndexedDB, in chunks, verified by size and SHA-256.
//
// Layout: database 'edgeinf-cache', store 'files' (one record per URL: size, SHA-256 of the file and of
// each chunk, chunk count) and store 'chunks' (key "url\u0000index" -> ArrayBuffer). The 'files' record is written last, only after
// every chunk is stored and the whole file verified: a record present means a complete file, so an
// interrupted or failed download is never taken for a good one. Reading re-verifies size and hash and
// drops an entry that fails. Works on the main thread and in workers.

import { EdgeinfError } from './errors.js';
import { Sha256 } from './sha256.js';

const DB_NAME = 'edgeinf-cache';
const DB_VERSION = 1;
export const CHUNK_BYTES = 8 << 20;

/** True where IndexedDB exists (browsers and workers; not Node). */
export function cacheAvailable() {
  return typeof indexedDB !== 'undefined';
}

let dbPromise = null;
/** Opens (once) the cache database. */
function openDb() {
  if (dbPromise) return dbPromise;
  dbPromise = new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, DB_VERSION);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains('files')) db.createObjectStore('files', { keyPath: 'url' });
      if (!db.objectStoreNames.contains('chunks')) db.createObjectStore('chunks');
    };
    req.onsuccess = () => {
      const db = req.result;
      db.onversionchange = () => { db.close(); dbPromise = null; };
      resolve(db);
    };
    req.onerror = () => { dbPromise = null; reject(req.error); };
    req.onblocked = () => { dbPromise = null; reject(new Error('IndexedDB open blocked by another tab')); };
  });
  return dbPromise;
}

/** Runs fn(store...) in one transaction; resolves with fn's request result when the transaction commits. */
async function tx(stores, mode, fn) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const t = db.transaction(stores, mode);
    let result;
    const r = fn(...stores.map((s) => t.objectStore(s)));
    if (r && 'onsuccess' in r) r.onsuccess = () => { result = r.result; };
    t.oncomplete = () => resolve(result);
    t.onabort = t.onerror = () => reject(t.error || new Error('IndexedDB transaction failed'));
  });
}

const chunkKey = (url, i) => `${url}\u0000${i}`;

/** WebCrypto's subtle API where it exists (secure contexts), else null. */
const subtle = () => (typeof crypto !== 'undefined' && crypto.subtle) || null;

/** SHA-256 hex of bytes (WebCrypto). */
async function digestHex(u8) {
  const d = new Uint8Array(await subtle().digest('SHA-256', u8));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Wraps storage exceptions into EdgeinfErrors (quota gets its own code). */
function storageError(e, what) {
  if (e instanceof EdgeinfError) return e;
  if (e && e.name === 'QuotaExceededError')
    return new EdgeinfError('QUOTA_EXCEEDED', `Caching ${what}: storage quota exceeded`);
  return new EdgeinfError('STORAGE', `Caching ${what}: ${e && e.message ? e.message : e}`);
}

/** Lists cached files: [{url, size, sha256, storedAt}]. */
export async function listCached() {
  if (!cacheAvailable()) return [];
  const all = await tx(['files'], 'readonly', (f) => f.getAll());
  return (all || []).map(({ url, size, sha256, storedAt }) => ({ url, size, sha256, storedAt }));
}

/** Deletes a cached file and its chunks (also partial chunks of an unfinished download). Returns true
 * if a complete entry existed. */
export async function deleteCached(url) {
  if (!cacheAvailable()) return false;
  const meta = await tx(['files'], 'readonly', (f) => f.get(url));
  const range = IDBKeyRange.bound(chunkKey(url, ''), `${url}\u0001`, false, true);
  await tx(['files', 'chunks'], 'readwrite', (f, c) => { f.delete(url); c.delete(range); });
  return !!meta;
}

/**
 * Reads a complete cached file as a list of Uint8Array chunks, verifying size and hash.
 * Returns null on a miss; a damaged entry is deleted and reported as a miss (reason in onInvalid).
 */
export async function readCached(url, { onProgress, onInvalid } = {}) {
  if (!cacheAvailable()) return null;
  let meta;
  try {
    meta = await tx(['files'], 'readonly', (f) => f.get(url));
  } catch {
    return null;
  }
  if (!meta) return null;
  // Each chunk is checked against its SHA-256 recorded at download time with WebCrypto (native speed);
  // without WebCrypto (insecure context) the whole file is re-hashed in JS instead.
  const fast = !!(subtle() && Array.isArray(meta.chunkSha256) && meta.chunkSha256.length === meta.nChunks);
  const parts = [], checks = [];
  const h = fast ? null : new Sha256();
  let got = 0;
  for (let i = 0; i < meta.nChunks; i++) {
    const buf = await tx(['chunks'], 'readonly', (c) => c.get(chunkKey(url, i)));
    if (!buf) break;
    const u8 = new Uint8Array(buf);
    if (fast) checks.push(digestHex(u8).then((d) => d === meta.chunkSha256[i]));
    else h.update(u8);
    parts.push(u8);
    got += u8.length;
    if (onProgress) onProgress(got, meta.size);
  }
  let good = got === meta.size;
  if (good) good = fast ? (await Promise.all(checks)).every(Boolean) : h.hex() === meta.sha256;
  if (!good) {
    if (onInvalid) onInvalid(got !== meta.size ? `size ${got} != ${meta.size}` : 'hash mismatch');
    await deleteCached(url).catch(() => {});
    return null;
  }
  return { parts, size: meta.size, sha256: meta.sha256 };
}

/**
 * Writer for one download: add() chunks as they arrive (re-chunked to CHUNK_BYTES), then
 * commit(sha256) writes the record that makes the entry valid. abort() removes what was written.
 * The first storage failure is kept in `error` (caching then stops; the download itself goes on).
 */
export class CacheWriter {
  constructor(url) {
    this.url = url;
    this.index = 0;
    this.pending = [];
    this.pendingBytes = 0;
    this.size = 0;
    this.chunkHashes = [];
    this.error = null;
    this.chain = cacheAvailable() ? deleteCached(url).catch((e) => { this.error = storageError(e, url); }) : null;
    if (!cacheAvailable()) this.error = new EdgeinfError('STORAGE', 'IndexedDB is not available here');
  }

  /** Queues bytes (copied into the chunk buffers). */
  add(u8) {
    this.size += u8.length;
    if (this.error) return;
    this.pending.push(u8);
    this.pendingBytes += u8.length;
    while (this.pendingBytes >= CHUNK_BYTES) this.#flushChunk(CHUNK_BYTES);
  }

  #flushChunk(n) {
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const p = this.pending[0];
      const take = Math.min(p.length, n - off);
      out.set(p.subarray(0, take), off);
      off += take;
      if (take === p.length) this.pending.shift();
      else this.pending[0] = p.subarray(take);
    }
    this.pendingBytes -= n;
    const i = this.index++;
    if (subtle()) this.chunkHashes[i] = digestHex(out);
    this.chain = this.chain.then(() => {
      if (this.error) return;
      return tx(['chunks'], 'readwrite', (c) => c.put(out.buffer, chunkKey(this.url, i)))
        .catch((e) => { this.error = storageError(e, this.url); });
    });
  }

  /** Stores the tail and the record. Resolves to null on success, or the storage error (never throws). */
  async commit(sha256) {
    if (this.error) { await this.abort(); return this.error; }
    if (this.pendingBytes > 0) this.#flushChunk(this.pendingBytes);
    await this.chain;
    if (!this.error) {
      const chunkSha256 = subtle() ? await Promise.all(this.chunkHashes) : undefined;
      const meta = { url: this.url, size: this.size, sha256, chunkSha256, nChunks: this.index, chunkBytes: CHUNK_BYTES, storedAt: Date.now() };
      await tx(['files'], 'readwrite', (f) => f.put(meta)).catch((e) => { this.error = storageError(e, this.url); });
    }
    if (this.error) await this.abort();
    return this.error;
  }

  /** Drops everything written for this URL. */
  async abort() {
    this.pending = [];
    if (!cacheAvailable()) return;
    try { await this.chain; } catch { /* already recorded */ }
    await deleteCached(this.url).catch(() => {});
  }
}
