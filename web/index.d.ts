// Type declarations of the edgeinf JS API (web/index.js).

export type Policy = 'auto' | 'full' | 'streaming' | 'edgeinfinite' | 'pod' | 'edgeinfinite+pod';
export type ModelSource = string | ArrayBuffer | ArrayBufferView | Blob;

/** Error codes: engine (C) codes, then those raised in JS. */
export type ErrorCode =
  | 'IO' | 'FORMAT' | 'UNSUPPORTED' | 'NOMEM' | 'INVALID_ARG' | 'RANGE' | 'CONTEXT_FULL' | 'MISSING_KEY'
  | 'BUFFER_TOO_SMALL' | 'INVALID_UTF8' | 'MISMATCH' | 'INTERNAL'
  | 'NETWORK' | 'HTTP' | 'DOWNLOAD_INCOMPLETE' | 'INTEGRITY' | 'QUOTA_EXCEEDED' | 'STORAGE' | 'ABORTED'
  | 'WORKER_CRASHED' | 'ENGINE_CRASHED' | 'WASM_LOAD' | 'UNLOADED';

export class EdgeinfError extends Error {
  readonly name: 'EdgeinfError';
  readonly code: ErrorCode;
  readonly details?: { [key: string]: unknown };
  constructor(code: ErrorCode, message: string, details?: { [key: string]: unknown });
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
  /** EdgeInfinite adapter GGUF (memory gates), used by 'auto' and required by 'edgeinfinite'. Cached like the model. */
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

export class Session {
  readonly policy: Policy;
  /** Resolves once the engine created the session (rejects e.g. with UNSUPPORTED for a policy not built in). */
  readonly ready: Promise<Session>;
  /** Completion of prompt (the whole context; when it extends the previous context the KV cache is reused). */
  generate(prompt: string, opts?: GenerateOptions): Generation;
  /** The assistant's reply to messages, rendered with the model's chat template (tokenizer.chat_template). */
  chat(messages: ChatMessage[], opts?: GenerateOptions): Generation;
  /** Latest stats, updated with every token. */
  stats(): Stats;
  reset(): Promise<void>;
  free(): Promise<void>;
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
  /** The EdgeInfinite adapter given to Engine.load, if any. */
  adapter: { source: 'network' | 'cache' | 'buffer' | 'file'; url?: string; sizeBytes: number; nParams: number } | null;
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
  info(): EngineInfo;
  unload(): Promise<void>;
}
