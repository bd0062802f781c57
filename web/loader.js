// loader.js — gets model bytes from a URL (with progress and the IndexedDB cache), a Blob, an
// ArrayBuffer, or (in Node) a file path. Returns them as a list of Uint8Array parts so they can be
// copied into wasm memory without first joining them into one more big buffer.

import { EdgeinfError } from './errors.js';
import { Sha256 } from './sha256.js';
import { cacheAvailable, readCached, CacheWriter, deleteCached } from './cache.js';

const isNode = typeof process === 'object' && !!(process.versions && process.versions.node) && typeof window === 'undefined' && typeof importScripts === 'undefined';

/** Resolves a URL string against the page/worker location (absolute URLs pass through). */
function absUrl(url) {
  try {
    const base = typeof location !== 'undefined' ? location.href : undefined;
    return new URL(url, base).href;
  } catch {
    return url;
  }
}

/**
 * Loads model bytes.
 * @param {string|ArrayBuffer|ArrayBufferView|Blob} src
 * @param {{what: string, cache: boolean, sha256?: string, onProgress?: Function, signal?: AbortSignal}} o
 * @returns {Promise<{parts: Uint8Array[], size: number, from: 'network'|'cache'|'buffer'|'file', url?: string,
 *   sha256?: string, ms: number, commit?: () => Promise<EdgeinfError|undefined>, discard?: () => Promise<void>}>}
 *   For a download being cached, commit() makes the cache entry valid (call it once the bytes proved
 *   loadable) and resolves to the storage error if caching failed; discard() drops the written chunks.
 */
export async function loadBytes(src, o) {
  const t0 = now();
  const done = (r) => ({ ...r, ms: now() - t0 });
  const progress = (loaded, total) => o.onProgress && o.onProgress({ phase: 'download', loaded, total, what: o.what });
  if (src instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && src instanceof SharedArrayBuffer))
    return done({ parts: [new Uint8Array(src)], size: src.byteLength, from: 'buffer' });
  if (ArrayBuffer.isView(src)) {
    const u8 = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    return done({ parts: [u8], size: u8.length, from: 'buffer' });
  }
  if (typeof Blob !== 'undefined' && src instanceof Blob) {
    const u8 = new Uint8Array(await src.arrayBuffer());
    progress(u8.length, u8.length);
    return done({ parts: [u8], size: u8.length, from: 'buffer' });
  }
  if (typeof src !== 'string' || !src)
    throw new EdgeinfError('INVALID_ARG', `${o.what}: expected a URL string, ArrayBuffer or Blob`);

  if (isNode && !/^https?:/i.test(src)) {
    const fsName = 'node:fs/promises';
    const fs = await import(/* @vite-ignore */ fsName);
    const path = src.startsWith('file:') ? new URL(src) : src;
    let buf;
    try {
      buf = await fs.readFile(path);
    } catch (e) {
      throw new EdgeinfError('IO', `${o.what} "${src}": ${e.message}`);
    }
    const u8 = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    progress(u8.length, u8.length);
    return done({ parts: [u8], size: u8.length, from: 'file' });
  }

  const url = absUrl(src);
  const useCache = o.cache !== false && cacheAvailable();
  if (useCache) {
    const hit = await readCached(url, { onProgress: (l, t) => o.onProgress && o.onProgress({ phase: 'cache', loaded: l, total: t, what: o.what }) });
    if (hit && (!o.sha256 || hit.sha256 === o.sha256.toLowerCase()))
      return done({ parts: hit.parts, size: hit.size, from: 'cache', url, sha256: hit.sha256 });
  }
  return done(await download(url, o, useCache, progress));
}

/** Downloads url with progress, verifying length and hash; stores it in the cache when asked. */
async function download(url, o, useCache, progress) {
  let res;
  try {
    res = await fetch(url, { signal: o.signal, credentials: 'same-origin' });
  } catch (e) {
    if (e && e.name === 'AbortError') throw new EdgeinfError('ABORTED', `${o.what}: download aborted`);
    throw new EdgeinfError('NETWORK', `${o.what} "${url}" could not be fetched (${e && e.message ? e.message : e}).`, { url });
  }
  if (!res.ok)
    throw new EdgeinfError('HTTP', `${o.what} "${url}": HTTP ${res.status} ${res.statusText || ''}`.trim() + '.', { url, status: res.status });
  const lenHeader = res.headers.get('content-length');
  const encoded = res.headers.get('content-encoding');
  const total = lenHeader && !encoded ? Number(lenHeader) : 0;
  const writer = useCache ? new CacheWriter(url) : null;
  const hash = new Sha256();
  const parts = [];
  let loaded = 0;
  progress(0, total);
  try {
    if (!res.body) throw new Error('response has no body');
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      hash.update(value);
      if (writer) writer.add(value);
      loaded += value.length;
      progress(loaded, total);
    }
  } catch (e) {
    if (writer) await writer.abort();
    if (e && e.name === 'AbortError') throw new EdgeinfError('ABORTED', `${o.what}: download aborted`);
    throw new EdgeinfError('DOWNLOAD_INCOMPLETE', `${o.what} "${url}": download failed after ${loaded} bytes (${e && e.message ? e.message : e}).`, { url, loaded, total });
  }
  if (total && loaded !== total) {
    if (writer) await writer.abort();
    throw new EdgeinfError('DOWNLOAD_INCOMPLETE', `${o.what} "${url}": got ${loaded} of ${total} bytes.`, { url, loaded, total });
  }
  const sha256 = hash.hex();
  if (o.sha256 && o.sha256.toLowerCase() !== sha256) {
    if (writer) await writer.abort();
    throw new EdgeinfError('INTEGRITY', `${o.what} "${url}": SHA-256 ${sha256} differs from the expected ${o.sha256}.`, { url, sha256 });
  }
  // The cache entry becomes valid only when the caller commits, i.e. once the engine accepted the bytes.
  const commit = writer ? async () => (await writer.commit(sha256)) || undefined : null;
  const discard = writer ? () => writer.abort() : null;
  return { parts, size: loaded, from: 'network', url, sha256, commit, discard };
}

/** Removes a cached URL (used when cached bytes turn out not to be a loadable model). */
export async function forgetCached(url) {
  if (url && cacheAvailable()) await deleteCached(url).catch(() => {});
}

function now() {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}
