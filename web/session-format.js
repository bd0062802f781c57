// session-format.js — what a saved session is made of, independent of where it is stored: name rules, the
// metadata record, and the portable byte format of Session.saveToBuffer() (also the file format of the Node
// directory store).
//
// A saved session = the engine's checkpoint (docs/checkpoint.md: KV cache, compressed memory, counters, sampler
// state; constant size for streaming/edgeinfinite) + a small JSON metadata record: how to recreate the session
// (model fingerprint, creation options), the shim's state (wasm/shim_checkpoint.c, hex), the transcript (chat
// messages or text) and list facts (tokens, bytes, time).
//
// Portable bytes, version 1 (little-endian):
//   0 "EISS" | 4 u32 version | 8 u32 JSON length J | 12 u32 CRC32 of the JSON | 16 JSON (UTF-8) | 16+J checkpoint
// restoreFromBuffer also takes a bare engine checkpoint ("EICK", e.g. written by the CLI's --save).

import { EdgeinfError } from './errors.js';

export const NAME_MAX = 128;
export const SAVED_VERSION = 1;
const MAGIC_SAVED = 0x53534945; // "EISS" read as u32 LE
const MAGIC_CKPT = 0x4b434945;  // "EICK"
const CKPT_HEADER = 96;
// enum ei_policy order (src/edgeinf.h), as in engine-core's POLICIES.
const POLICY_NAMES = ['auto', 'full', 'streaming', 'edgeinfinite', 'pod', 'edgeinfinite+pod'];

/** Hints of errors about saved sessions (the model-loading hints of errors.js do not fit them). */
export const SAVED_HINTS = {
  FORMAT: 'The saved session is damaged (truncated or modified) and cannot be resumed: delete it and start again from the conversation text.',
  MISMATCH: 'Load the engine with the model and adapter the session was saved with, then restore it.',
  UNSUPPORTED: 'The saved session was written by another version of edgeinf; re-run the conversation to save it again.',
  NOT_FOUND: 'engine.listSessions() lists the saved sessions.',
  QUOTA_EXCEEDED: 'Browser storage is full: delete saved sessions (engine.deleteSession) or cached models, then save again. The previous save under this name is intact.',
};

/** Hints of errors while saving (the engine's message names the cause). */
export const SAVE_HINTS = {
  UNSUPPORTED: 'Sessions with this attention policy cannot be saved by this build; other policies can.',
  INVALID_ARG: '',
};

/** Returns name if it can name a saved session; throws INVALID_ARG saying why otherwise. */
export function validateName(name) {
  const bad = (why) => new EdgeinfError('INVALID_ARG', `Session name ${JSON.stringify(String(name)).slice(0, 80)}: ${why}.`, { name: String(name) });
  if (typeof name !== 'string') throw bad('must be a string');
  if (!name.length) throw bad('must not be empty');
  if (name.length > NAME_MAX) throw bad(`is ${name.length} characters long, at most ${NAME_MAX} are allowed`);
  if (/[/\\]/.test(name)) throw bad('must not contain a path separator (/ or \\)');
  if (name.includes('..')) throw bad("must not contain '..'");
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw bad('must not contain control characters');
  if (name.trim() !== name) throw bad('must not start or end with white space');
  return name;
}

// ------------------------------------------------------------------ bytes helpers

let crcTable = null;
/** CRC32 (IEEE, as zlib) of bytes. */
export function crc32(u8) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < u8.length; i++) c = crcTable[(c ^ u8[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export const toHex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, '0')).join('');

/** Hex string -> bytes; null for anything that is not an even-length hex string. */
export function fromHex(s) {
  if (typeof s !== 'string' || s.length % 2 || /[^0-9a-f]/i.test(s)) return null;
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
  return out;
}

const asU8 = (b) => (b instanceof Uint8Array ? b : ArrayBuffer.isView(b) ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : new Uint8Array(b));

// ------------------------------------------------------------------ metadata

/** The fields listSessions() reports, from a full metadata record. */
export function summaryOf(meta) {
  const { name, bytes, savedAt, policy, policyInUse, tokens, model, adapter, transcript, data } = meta;
  const messages = transcript && Array.isArray(transcript.messages) ? transcript.messages.length : undefined;
  return { name, bytes, savedAt, policy, policyInUse, tokens, model, adapter: !!adapter, messages, title: data && typeof data.title === 'string' ? data.title : undefined };
}

/** Checks a transcript ({messages} or {text}) and data are plain JSON; returns a copy. */
export function cleanExtras(transcript, data) {
  let t = null;
  if (transcript && Array.isArray(transcript.messages)) {
    t = { messages: transcript.messages.map((m) => {
      if (!m || typeof m.role !== 'string' || typeof m.content !== 'string')
        throw new EdgeinfError('INVALID_ARG', 'save: messages must be [{role, content}] with string role and content.');
      return { role: m.role, content: m.content };
    }) };
  } else if (transcript && typeof transcript.text === 'string') {
    t = { text: transcript.text };
  }
  let d;
  if (data !== undefined) {
    try { d = JSON.parse(JSON.stringify(data)); } catch (e) {
      throw new EdgeinfError('INVALID_ARG', `save: data must be JSON-serialisable (${e.message}).`);
    }
  }
  return { transcript: t, data: d };
}

// ------------------------------------------------------------------ portable bytes

/** Encodes a saved session (metadata + checkpoint) as portable bytes. */
export function encodeSaved(meta, checkpoint) {
  const json = new TextEncoder().encode(JSON.stringify(meta));
  const ck = asU8(checkpoint);
  const out = new Uint8Array(16 + json.length + ck.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC_SAVED, true);
  dv.setUint32(4, SAVED_VERSION, true);
  dv.setUint32(8, json.length, true);
  dv.setUint32(12, crc32(json), true);
  out.set(json, 16);
  out.set(ck, 16 + json.length);
  return out;
}

const formatError = (msg) => new EdgeinfError('FORMAT', msg, undefined, SAVED_HINTS.FORMAT);

/**
 * Decodes portable bytes: {meta, checkpoint} for a saved session, {meta: null, checkpoint, header} for a bare engine
 * checkpoint (the engine validates its bytes). Throws FORMAT / UNSUPPORTED with the reason.
 */
export function decodeSaved(bytes) {
  const u8 = asU8(bytes);
  if (!u8.length) throw formatError('The saved session is empty (0 bytes).');
  if (u8.length < 16) throw formatError(`The saved session is truncated (${u8.length} bytes).`);
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const magic = dv.getUint32(0, true);
  if (magic === MAGIC_CKPT) return { meta: null, checkpoint: u8, header: parseCheckpointHeader(u8) };
  if (magic !== MAGIC_SAVED) throw formatError('Not an edgeinf saved session or checkpoint (bad magic).');
  const version = dv.getUint32(4, true);
  if (version !== SAVED_VERSION)
    throw new EdgeinfError('UNSUPPORTED', `Saved-session format version ${version} is not supported: this build reads version ${SAVED_VERSION}.`, undefined, SAVED_HINTS.UNSUPPORTED);
  const jlen = dv.getUint32(8, true);
  if (16 + jlen > u8.length) throw formatError(`The saved session is truncated (metadata needs ${jlen} bytes, ${u8.length - 16} are left).`);
  const json = u8.subarray(16, 16 + jlen);
  if (crc32(json) !== dv.getUint32(12, true)) throw formatError('Saved-session metadata: CRC mismatch.');
  let meta;
  try { meta = JSON.parse(new TextDecoder().decode(json)); } catch (e) { throw formatError(`Saved-session metadata: ${e.message}.`); }
  checkMeta(meta);
  const checkpoint = u8.subarray(16 + jlen);
  if (checkpoint.length !== meta.bytes)
    throw formatError(`The saved session is truncated or padded: its checkpoint has ${checkpoint.length} bytes, ${meta.bytes} were saved.`);
  return { meta, checkpoint };
}

/** Throws FORMAT unless meta has the fields a restore needs. */
export function checkMeta(meta) {
  const ok = meta && typeof meta === 'object' && meta.format === 'edgeinf-session' && typeof meta.name === 'string' &&
    Number.isInteger(meta.bytes) && meta.bytes >= 0 && meta.opts && typeof meta.opts === 'object' &&
    typeof meta.opts.policy === 'string' && typeof meta.state === 'string';
  if (!ok) throw formatError('Saved-session metadata is incomplete.');
  return meta;
}

/**
 * The session options a bare engine checkpoint needs (policy and layout from its header, docs/checkpoint.md), and
 * whether it was saved with an adapter. Only what is needed to create the session: the engine checks the rest.
 */
export function parseCheckpointHeader(u8) {
  if (u8.length < CKPT_HEADER) throw formatError(`The checkpoint is truncated (${u8.length} bytes; its header alone has ${CKPT_HEADER}).`);
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const i32 = (o) => dv.getInt32(o, true);
  const policy = POLICY_NAMES[i32(48)];
  if (!policy || policy === 'auto') throw formatError(`The checkpoint names an unknown attention policy (${i32(48)}).`);
  const fp = (o) => String.fromCharCode(...u8.subarray(o, o + 16));
  const adapterFp = u8.subarray(32, 48).some((b) => b !== 0) ? fp(32) : null;
  const opts = policy === 'full' ? { policy, nCtx: i32(64) } : { policy, nSink: i32(52), window: i32(56), seg: i32(60) };
  return { version: dv.getUint32(4, true), modelFingerprint: fp(16), adapterFingerprint: adapterFp, opts };
}
