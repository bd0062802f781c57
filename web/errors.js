// errors.js — the one error type of the JS API, and how errors cross the worker boundary.
//
// Every failure the library reports is an EdgeinfError with a stable string `code`. Engine (C) errors
// keep the EI_ERR_* name without its prefix ('FORMAT', 'NOMEM', ...); failures that happen in JS have
// their own codes (NETWORK, HTTP, ...). Messages say what happened and what to do about it.

/** C error numbers (src/edgeinf.h enum ei_error) -> code strings. */
export const C_CODES = {
  [-1]: 'IO', [-2]: 'FORMAT', [-3]: 'UNSUPPORTED', [-4]: 'NOMEM', [-5]: 'INVALID_ARG', [-6]: 'RANGE',
  [-7]: 'CONTEXT_FULL', [-8]: 'MISSING_KEY', [-9]: 'BUFFER_TOO_SMALL', [-10]: 'INVALID_UTF8',
  [-11]: 'MISMATCH', [-12]: 'INTERNAL',
};

/** A hint per code, appended to messages so a user knows the next step. */
const HINTS = {
  FORMAT: 'The file is not a valid GGUF model (or it is damaged): check that the URL points at a complete .gguf file.',
  UNSUPPORTED: 'This model or option is not supported by this edgeinf build.',
  NOMEM: 'WebAssembly memory is exhausted (4 GB at most): use a smaller model, a smaller context or another policy, then try again.',
  MISSING_KEY: 'The GGUF file lacks required metadata: it was probably not exported for a Llama-family model.',
  CONTEXT_FULL: 'The text does not fit in the context of this policy: shorten it, start a new session, or use a streaming/edgeinfinite policy.',
  NETWORK: 'Check the URL and your connection; a cross-origin URL must allow CORS.',
  HTTP: 'The server did not return the file: check the URL.',
  DOWNLOAD_INCOMPLETE: 'The download ended early; nothing was cached. Try again.',
  INTEGRITY: 'The bytes do not match the expected hash; nothing was cached. Check the URL or the expected hash.',
  QUOTA_EXCEEDED: 'Browser storage is full: free space (Engine.cache.delete) or load with cache: false.',
  WORKER_CRASHED: 'The engine worker stopped; call Engine.load() again.',
  ENGINE_CRASHED: 'The engine hit a fatal error and cannot continue; call Engine.load() again.',
  WASM_LOAD: 'The edgeinf .wasm/.js files could not be loaded: check the wasmBase option and that the server sends .wasm as application/wasm.',
  UNLOADED: 'This engine was unloaded; call Engine.load() again.',
};

export class EdgeinfError extends Error {
  /**
   * @param {string} code stable machine-readable code
   * @param {string} message human-readable message (the hint for the code is appended unless it is there)
   * @param {object} [details] extra fields (status, url, cCode...)
   * @param {string} [hint] the next step for the user, appended to the message; default: the code's general hint
   *   ('' for none)
   */
  constructor(code, message, details = undefined, hint = HINTS[code]) {
    super(hint && !message.includes(hint) ? `${message} ${hint}` : message);
    this.name = 'EdgeinfError';
    this.code = code;
    if (details) this.details = details;
  }

  /** Plain object for postMessage (structured clone keeps no class). */
  toWire() {
    return { code: this.code, message: this.message, details: this.details };
  }

  /** Rebuilds an error sent with toWire() (or any {code, message}); the message already holds its hint. */
  static fromWire(w) {
    return new EdgeinfError(w.code || 'INTERNAL', w.message || 'unknown error', w.details, '');
  }
}

/** Error from a C return code plus the engine's last-error text; `context` says what we were doing; hints
 * (code -> text) replace the general ones where given. */
export function cError(cCode, cMessage, context, hints = undefined) {
  const code = C_CODES[cCode] || 'INTERNAL';
  const what = cMessage ? `${context}: ${cMessage}` : `${context}: ${code}`;
  return new EdgeinfError(code, what, { cCode }, hints && hints[code] !== undefined ? hints[code] : HINTS[code]);
}

/** Turns anything thrown into an EdgeinfError (wasm traps become ENGINE_CRASHED). */
export function toEdgeinfError(e, context = 'edgeinf') {
  if (e instanceof EdgeinfError) return e;
  if (typeof WebAssembly !== 'undefined' && e instanceof WebAssembly.RuntimeError)
    return new EdgeinfError('ENGINE_CRASHED', `${context}: ${e.message}`);
  if (e && e.name === 'QuotaExceededError')
    return new EdgeinfError('QUOTA_EXCEEDED', `${context}: ${e.message}`);
  if (e && e.name === 'AbortError') return new EdgeinfError('ABORTED', `${context}: aborted`);
  const msg = e && e.message ? e.message : String(e);
  return new EdgeinfError('INTERNAL', `${context}: ${msg}`);
}
