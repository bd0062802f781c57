// Type declarations of the edgeinf JS API (web/index.js).

export type Policy = 'auto' | 'full' | 'streaming' | 'edgeinfinite' | 'pod' | 'edgeinfinite+pod';
export type ModelSource = string | ArrayBuffer | ArrayBufferView | Blob;

/** Error codes: engine (C) codes, then those raised in JS. */
export type ErrorCode =
  | 'IO' | 'FORMAT' | 'UNSUPPORTED' | 'NOMEM' | 'INVALID_ARG' | 'RANGE' | 'CONTEXT_FULL' | 'MISSING_KEY'
  | 'BUFFER_TOO_SMALL' | 'INVALID_UTF8' | 'MISMATCH' | 'INTERNAL'
  | 'NETWORK' | 'HTTP' | 'DOWNLOAD_INCOMPLETE' | 'INTEGRITY' | 'QUOTA_EXCEEDED' | 'STORAGE' | 'ABORTED'
  | 'WORKER_CRASHED' | 'ENGINE_CRASHED' | 'WASM_LOAD' | 'UNLOADED' | 'NOT_FOUND';

export class EdgeinfError extends Error {
  readonly name: 'EdgeinfError';
  readonly code: ErrorCode;
  readonly details?: { [key: string]: unknown };
  /** hint: the next step appended to the message (default: the code's general hint; '' for none). */
  constructor(code: ErrorCode, message: string, details?: { [key: string]: unknown }, hint?: string);
}

export interface Progress {
  /** download: bytes from the network; cache: bytes read from IndexedDB; load: into the engine; prefill: prompt tokens. */
  phase: 'download' | 'cache' | 'load' | 'prefill';
  loaded: number;
  /** 0 when unknown. */
  total: number;
}

export interface LoadOptions {
  /** URL (relative to the page), ArrayBuffer/typed array, or Blob of a GGUF file. In Node also a file path. */
  model: ModelSource;
  /** Adapter GGUF of kind 'edgeinfinite' (memory gates), 'pod' (measured layer blocks) or 'edgeinfinite+pod' (both),
   * used by 'auto' and required by the policy of the same name. Cached like the model. */
  adapter?: ModelSource;
  /** Worker threads for the threaded build; 'auto' = hardwareConcurrency (at most 8). Default 'auto'. */
  threads?: number | 'auto';
  /** Cache downloaded URLs in IndexedDB and load them from there next time. Default true. */
  cache?: boolean;
  onProgress?: (p: Progress) => void;
  /** Folder (URL) holding edgeinf-simd*.js/.wasm; default: the package's dist/ next to web/. */
  wasmBase?: string;
  /** Expected SHA-256 (hex) of the model file; a mismatch rejects with INTEGRITY and nothing is cached. */
  sha256?: string;
  /** Run the engine in a Web Worker (default in browser pages) or in this thread (default in Node). */
  worker?: boolean;
  /** Aborts the download. */
  signal?: AbortSignal;
  /** Node only: directory for saved sessions (Session.save / Engine.restore). Browsers use IndexedDB. */
  sessionDir?: string;
}

export interface SessionOptions {
  policy?: Policy;
  /** full policy: max tokens (default: the model's training context). */
  nCtx?: number;
  nSink?: number;
  window?: number;
  seg?: number;
  memoryBudget?: number;
}

export interface LayoutStats {
  /** The layout in use (0 for full attention). */
  nSink: number;
  window: number;
  seg: number;
}

export interface GenerateOptions {
  /** Default 256. */
  maxTokens?: number;
  /** <= 0: greedy. Engine default 0.8. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  repeatLastN?: number;
  seed?: number | bigint;
  /** Generation ends before the first occurrence; a stop string is never emitted, not even in part. */
  stop?: string | string[];
  /** Stops between tokens; the session stays usable. */
  signal?: AbortSignal;
  /** Called with every chunk (the same chunks the async iterator yields). */
  onToken?: (chunk: Chunk) => void;
  onProgress?: (p: Progress) => void;
}

export interface Chunk {
  /** New text (may be '' while a possible stop string or an incomplete UTF-8 sequence is held back). */
  text: string;
  /** Token id, or -1 for text flushed at the end. */
  token: number;
}

export interface Stats extends Partial<LayoutStats> {
  policy: Policy;
  policyInUse?: string;
  tokens: number;
  kvTokens: number;
  kvBytes: number;
  memoryBytes: number;
  compressions: number;
  prefillTokens: number;
  prefillMs: number;
  decodeTokens: number;
  decodeMs: number;
}

export interface GenerateResult {
  text: string;
  finishReason: 'stop' | 'length' | 'abort' | 'context_full';
  usage: { promptTokens: number; completionTokens: number };
  stats: Stats;
  timings: { prefillMs: number; decodeMs: number; tokensPerSecond: number };
}

/** A running generation: iterate it for chunks, or await it for the result. */
export interface Generation extends AsyncIterable<Chunk>, PromiseLike<GenerateResult> {
  abort(): void;
  catch<T = never>(onRejected?: (reason: unknown) => T | PromiseLike<T>): Promise<GenerateResult | T>;
  finally(f?: () => void): Promise<GenerateResult>;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** What Session.save keeps beside the engine state. */
export interface SaveOptions {
  /** The transcript to keep (default: the session's own: the last chat() messages and reply, or generate() text). */
  messages?: ChatMessage[];
  text?: string;
  /** Small JSON app data (e.g. {title}), returned with the restored session. */
  data?: unknown;
}

/** One saved session, as Engine.listSessions() lists it. */
export interface SavedSessionInfo {
  /** 1-128 characters, no '/' '\\' or '..', no control characters, no leading/trailing space. */
  name: string;
  /** Bytes of the engine checkpoint: constant for streaming/edgeinfinite, growing with the context for full. */
  bytes: number;
  /** Date.now() of the save. */
  savedAt: number;
  /** The policy the session was created with, and the one in use (auto resolves). */
  policy: Policy;
  policyInUse?: string;
  /** Tokens the session had seen. */
  tokens: number;
  model: { fingerprint: string; name: string | null };
  adapter: boolean;
  /** Chat messages in the transcript (undefined for a text transcript). */
  messages?: number;
  title?: string;
  /** Saved with this engine's model (only those can be restored). */
  compatible: boolean;
  /** Set (instead of the fields above) for a stored session that cannot be read. */
  error?: { code: ErrorCode; message: string };
}

export interface SaveResult extends Omit<SavedSessionInfo, 'compatible' | 'error'> {
  timings: { serializeMs: number; storeMs: number; totalMs: number };
}

/** Facts about the save a session was restored from. */
export interface RestoredInfo {
  name?: string;
  savedAt?: number;
  bytes: number;
  tokens?: number;
  policy?: Policy;
  policyInUse?: string;
  model?: { fingerprint: string; name: string | null };
  data?: unknown;
  /** readMs: from storage; loadMs: validating and loading into the engine. */
  timings: { readMs?: number; loadMs: number; totalMs?: number };
}

export class Session {
  readonly policy: Policy;
  /** Set for a session made by Engine.restore / restoreFromBuffer. */
  readonly restored: RestoredInfo | null;
  /** The conversation as chat messages (the last chat() call's messages and its reply), else null. */
  readonly messages: ChatMessage[] | null;
  /** The conversation as text (the last generate() prompt and its output), else null. */
  readonly text: string | null;
  /** Resolves once the engine created the session (rejects e.g. with UNSUPPORTED for a policy not built in). */
  readonly ready: Promise<Session>;
  /** Completion of prompt (the whole context; when it extends the previous context the KV cache is reused). */
  generate(prompt: string, opts?: GenerateOptions): Generation;
  /** The assistant's reply to messages, rendered with the model's chat template (tokenizer.chat_template). */
  chat(messages: ChatMessage[], opts?: GenerateOptions): Generation;
  /** More text exactly where the last generation stopped (also right after a restore). Without sampling options the
   * last generation's sampler goes on, so greedy or seeded output equals one longer generation. */
  continue(opts?: GenerateOptions): Generation;
  /** Latest stats, updated with every token. */
  stats(): Stats;
  reset(): Promise<void>;
  free(): Promise<void>;
  /** Saves the session (compressed memory, KV cache, sampler, transcript) under name: IndexedDB in browsers,
   * LoadOptions.sessionDir in Node. Replaces an earlier save atomically; on failure (QUOTA_EXCEEDED, STORAGE, IO) the
   * earlier save is intact. Waits for a running generation to end. */
  save(name: string, opts?: SaveOptions): Promise<SaveResult>;
  /** The same as portable bytes, for Engine.restoreFromBuffer. */
  saveToBuffer(opts?: SaveOptions & { name?: string }): Promise<Uint8Array>;
}

export interface EngineInfo {
  build: 'simd' | 'simd-mt';
  threads: number;
  crossOriginIsolated: boolean;
  simd: boolean;
  worker: boolean;
  model: {
    name: string | null; architecture: string | null; nParams: number; nVocab: number; nCtxTrain: number;
    nLayer: number; fingerprint: string; chatFormat: string; hasChatTemplate: boolean;
  } | null;
  /** The adapter (edgeinfinite, pod or edgeinfinite+pod) given to Engine.load, if any. */
  adapter: {
    source: 'network' | 'cache' | 'buffer' | 'file'; url?: string; sizeBytes: number; nParams: number;
    /** Which policies it serves: 'edgeinfinite' (memory gate), 'pod' (layer blocks) or both. */
    kind: 'edgeinfinite' | 'pod' | 'edgeinfinite+pod';
  } | null;
  load: {
    source: 'network' | 'cache' | 'buffer' | 'file';
    url?: string; sizeBytes: number; sha256?: string;
    /** ms to get the bytes (download or cache read), to initialise the engine, and in all. */
    fetchMs: number; initMs: number; totalMs: number;
    /** Set when the download could not be cached (e.g. QUOTA_EXCEEDED); the engine works anyway. */
    cacheError?: { code: ErrorCode; message: string };
  };
}

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[];
  signal?: AbortSignal;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: { index: number; delta: { role?: 'assistant'; content?: string }; finish_reason: 'stop' | 'length' | null }[];
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: number; message: { role: 'assistant'; content: string }; finish_reason: 'stop' | 'length' }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

export interface CachedFile {
  url: string;
  size: number;
  sha256: string;
  storedAt: number;
}

export class Engine {
  static load(opts: LoadOptions): Promise<Engine>;
  static readonly cache: {
    list(): Promise<CachedFile[]>;
    /** Resolves true if a complete entry existed. */
    delete(url: string): Promise<boolean>;
  };
  readonly chat: {
    completions: {
      create(req: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(req: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
    };
  };
  createSession(opts?: SessionOptions): Session;
  /** A saved session as a new Session (same policy, layout and memory; transcript in .messages / .text).
   * Errors: NOT_FOUND; MISMATCH (another model, adapter or layout); FORMAT (damaged); UNSUPPORTED (other version). */
  restore(name: string): Promise<Session>;
  /** From Session.saveToBuffer() bytes, or a bare engine checkpoint (e.g. `edgeinf generate --save`). */
  restoreFromBuffer(bytes: ArrayBuffer | ArrayBufferView): Promise<Session>;
  /** Saved sessions, newest first. */
  listSessions(): Promise<SavedSessionInfo[]>;
  /** Resolves true if the session existed. */
  deleteSession(name: string): Promise<boolean>;
  info(): EngineInfo;
  unload(): Promise<void>;
}
