// demo.js — the chat demo: loads the default model (cached in IndexedDB), streams replies, shows live
// stats. Query parameters: ?model=URL  ?adapter=URL  ?threads=N|auto  ?cache=0  ?policy=NAME.
// State for the browser tests is kept in window.demo.

import { Engine } from '../index.js';

const DEFAULT_MODEL = '../../models/edgeinf-default-q8_0.gguf';
const FALLBACK_MODEL = '../../tests/fixtures/tiny/tiny-q8_0.gguf';
// The EdgeInfinite adapter shipped with the default model (loaded when the file exists and no ?model= is given).
const DEFAULT_ADAPTER = '../../models/edgeinf-default-adapter.gguf';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const demo = (window.demo = { ready: false, engine: null, session: null, replies: [], errors: [], progress: [], saved: null });

const fmtBytes = (n) => {
  if (!Number.isFinite(n)) return '–';
  const u = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
};

// ------------------------------------------------------------------ errors

function showError(e, context = '') {
  const code = (e && e.code) || 'ERROR';
  const msg = (e && e.message) || String(e);
  demo.errors.push({ code, message: msg });
  $('error-code').textContent = code;
  $('error-message').textContent = context ? `${context}: ${msg}` : msg;
  $('error').hidden = false;
  $('error').dataset.code = code;
}
$('error-close').onclick = () => { $('error').hidden = true; };

// ------------------------------------------------------------------ loading

const PHASES = { download: 'Downloading model', cache: 'Reading model from browser cache', load: 'Initialising engine' };
function onProgress(p) {
  demo.progress.push(p);
  if (!PHASES[p.phase]) return;
  $('load-phase').textContent = PHASES[p.phase] + '…';
  const frac = p.total ? p.loaded / p.total : 0;
  $('load-bar').style.width = `${Math.round(frac * 100)}%`;
  $('load-bytes').textContent = p.total ? `${fmtBytes(p.loaded)} / ${fmtBytes(p.total)}` : fmtBytes(p.loaded);
}

const exists = (url) => fetch(url, { method: 'HEAD' }).then((r) => r.ok, () => false);

async function pickModel() {
  if (params.get('model')) return { url: params.get('model'), adapter: params.get('adapter'), note: null };
  if (await exists(DEFAULT_MODEL)) {
    const adapter = params.get('adapter') || ((await exists(DEFAULT_ADAPTER)) ? DEFAULT_ADAPTER : null);
    return { url: DEFAULT_MODEL, adapter, note: null };
  }
  return {
    url: FALLBACK_MODEL,
    note: 'The default model is not built yet, so this demo runs the tiny test model (random weights: its replies are gibberish). Everything else — streaming, stats, caching — is real.',
  };
}

function badge(text, on = false) {
  const b = document.createElement('span');
  b.className = on ? 'badge on' : 'badge';
  b.textContent = text;
  return b;
}

function showInfo(info) {
  const m = info.model || {};
  const b = $('badges');
  b.replaceChildren(
    badge(info.build === 'simd-mt' ? `threads × ${info.threads}` : 'single thread', info.build === 'simd-mt'),
    badge(info.crossOriginIsolated ? 'cross-origin isolated' : 'not isolated', info.crossOriginIsolated),
    badge(info.load.source === 'cache' ? 'model from cache' : `model from ${info.load.source}`, info.load.source === 'cache'),
    badge(`load ${Math.round(info.load.totalMs)} ms`),
  );
  const rows = [
    ['Name', m.name || '–'], ['Parameters', m.nParams ? `${(m.nParams / 1e6).toFixed(2)} M` : '–'],
    ['Layers', m.nLayer], ['Vocabulary', m.nVocab], ['Trained context', m.nCtxTrain], ['Chat format', m.chatFormat],
    ['File', fmtBytes(info.load.sizeBytes)], ['Build', info.build],
    ['Adapter', info.adapter ? `${(info.adapter.nParams / 1e3).toFixed(0)} K params` : 'none'],
  ];
  const dl = $('model-info');
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = String(v ?? '–');
    dl.append(dt, dd);
  }
  if (info.load.cacheError) showError(info.load.cacheError, 'The model works, but it could not be cached');
}

async function start() {
  const { url, adapter, note } = await pickModel();
  if (note) { $('model-note').textContent = note; $('model-note').hidden = false; }
  const threads = params.get('threads') || 'auto';
  try {
    demo.engine = await Engine.load({
      model: url, adapter: adapter || undefined, threads: threads === 'auto' ? 'auto' : Number(threads),
      cache: params.get('cache') !== '0', onProgress,
    });
  } catch (e) {
    $('load-phase').textContent = 'Could not load the model';
    $('load-bar').style.width = '0';
    showError(e, `Loading ${url}`);
    demo.loadError = { code: e.code, message: e.message };
    return;
  }
  demo.info = demo.engine.info();
  $('loader').hidden = true;
  showInfo(demo.info);
  if (params.get('policy')) $('policy').value = params.get('policy');
  if (!(await newSession($('policy').value))) return;
  for (const id of ['prompt', 'send', 'new-chat', 'save-name', 'save']) $(id).disabled = false;
  await refreshSaved();
  $('prompt').focus();
  demo.ready = true;
}

// ------------------------------------------------------------------ session and chat

let session = null, messages = [], controller = null, currentPolicy = 'auto';

async function newSession(policy) {
  const s = demo.engine.createSession({ policy });
  try {
    await s.ready;
  } catch (e) {
    showError(e, `Policy "${policy}"`);
    $('policy-hint').textContent = `"${policy}" is not available: ${e.code}. Still using "${currentPolicy}".`;
    $('policy-hint').className = 'hint bad';
    $('policy').value = currentPolicy;
    return false;
  }
  if (session) session.free().catch(() => {});
  session = demo.session = s;
  currentPolicy = policy;
  $('policy-hint').textContent = `Using "${policy}".`;
  $('policy-hint').className = 'hint';
  clearChat();
  updateStats(s.stats(), null);
  return true;
}

function clearChat() {
  messages = [];
  $('messages').replaceChildren($('empty') || document.createElement('div'));
  const empty = $('empty');
  if (empty) empty.hidden = false;
}

function addBubble(role, text) {
  const empty = $('empty');
  if (empty) empty.hidden = true;
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  div.textContent = text;
  $('messages').append(div);
  div.scrollIntoView({ block: 'end' });
  return div;
}

function updateStats(st, tps) {
  if (tps != null) $('st-tps').textContent = tps.toFixed(1);
  $('st-policy').textContent = st.policyInUse || st.policy;
  $('st-tokens').textContent = st.tokens;
  $('st-kvtokens').textContent = st.kvTokens;
  $('st-kv').textContent = fmtBytes(st.kvBytes);
  $('st-mem').textContent = fmtBytes(st.memoryBytes);
  if (st.prefillTokens) $('st-prefill').textContent = `${st.prefillTokens} tok, ${Math.round(st.prefillMs)} ms`;
}

async function send(text) {
  messages.push({ role: 'user', content: text });
  addBubble('user', text);
  const bubble = addBubble('assistant', '');
  bubble.classList.add('streaming');
  const reply = { text: '', chunks: 0, finishReason: null, tStart: performance.now() };
  demo.replies.push(reply);
  controller = new AbortController();
  setBusy(true);
  let tFirst = null, nTok = 0;
  try {
    const gen = session.chat(messages, {
      maxTokens: Number($('maxtok').value) || 128,
      temperature: Number($('temp').value),
      topP: Number($('topp').value),
      signal: controller.signal,
    });
    for await (const chunk of gen) {
      nTok++;
      if (tFirst == null) tFirst = performance.now();
      if (chunk.text) {
        reply.text += chunk.text;
        reply.chunks++;
        bubble.textContent = reply.text;
        bubble.scrollIntoView({ block: 'end' });
      }
      const dt = (performance.now() - tFirst) / 1000;
      updateStats(session.stats(), dt > 0 ? (nTok - 1) / dt : null);
    }
    const res = await gen;
    reply.finishReason = res.finishReason;
    reply.tokensPerSecond = res.timings.tokensPerSecond;
    updateStats(res.stats, res.timings.tokensPerSecond);
    messages.push({ role: 'assistant', content: res.text });
    const meta = document.createElement('span');
    meta.className = 'meta';
    const why = { stop: '', length: ' · max tokens reached', abort: ' · stopped', context_full: ' · context full' }[res.finishReason] || '';
    meta.textContent = `${res.usage.completionTokens} tokens · ${res.timings.tokensPerSecond.toFixed(1)} tok/s${why}`;
    if (!reply.text) bubble.textContent = '(empty reply)';
    bubble.append(meta);
  } catch (e) {
    reply.error = { code: e.code, message: e.message };
    bubble.textContent = reply.text || '(no reply)';
    showError(e, 'Generation failed');
    messages.pop();
  } finally {
    bubble.classList.remove('streaming');
    reply.done = true;
    controller = null;
    setBusy(false);
  }
}

function setBusy(busy) {
  $('send').disabled = busy;
  $('stop').disabled = !busy;
  $('policy').disabled = busy;
  $('new-chat').disabled = busy;
  $('save').disabled = busy;
  for (const b of document.querySelectorAll('#saved-list button.resume')) b.disabled = busy || b.dataset.other === '1';
}

// ------------------------------------------------------------------ saved conversations

let currentSaved = null; // the saved conversation this chat was resumed from or last saved as

function saveHint(text, bad = false) {
  $('save-hint').textContent = text;
  $('save-hint').className = bad ? 'hint bad' : 'hint';
}

/** A valid session name from text (no path separators, no '..', no control characters). */
const safeName = (t) => t.replace(/[\u0000-\u001f\u007f/\\]+/g, ' ').replace(/\.{2,}/g, '.').replace(/\s+/g, ' ').trim().slice(0, 48).trim();

function defaultSaveName() {
  const first = messages.find((m) => m.role === 'user');
  return safeName(first ? first.content : '') || `Conversation ${new Date().toISOString().slice(0, 16).replace('T', ' ')}`;
}

/** Re-reads the saved conversations and renders the list (newest first). */
async function refreshSaved() {
  let list;
  try {
    list = await demo.engine.listSessions();
  } catch (e) {
    showError(e, 'Listing saved conversations');
    list = [];
  }
  demo.saved = list;
  const ul = $('saved-list');
  ul.replaceChildren();
  if (!list.length) {
    const li = document.createElement('li');
    li.className = 'saved-empty';
    li.textContent = 'Nothing saved yet.';
    ul.append(li);
    return;
  }
  for (const x of list) {
    const li = document.createElement('li');
    li.dataset.name = x.name;
    if (x.name === currentSaved) li.classList.add('current');
    const other = !x.compatible;
    if (other) li.classList.add('other');
    const name = document.createElement('div');
    name.className = 'saved-name';
    name.textContent = x.name;
    name.title = x.name;
    const meta = document.createElement('div');
    meta.className = 'saved-meta';
    meta.textContent = x.error ? `damaged: ${x.error.code}`
      : `${x.messages ?? 0} messages · ${x.tokens} tokens · ${fmtBytes(x.bytes)} · ${x.policyInUse || x.policy} · ${new Date(x.savedAt).toLocaleString()}`
        + (other && !x.error ? ` · saved with another model (${x.model ? x.model.name : '?'})` : '');
    const actions = document.createElement('div');
    actions.className = 'saved-actions';
    const resumeBtn = document.createElement('button');
    resumeBtn.type = 'button';
    resumeBtn.className = 'resume';
    resumeBtn.textContent = 'Resume';
    resumeBtn.dataset.other = other ? '1' : '0';
    resumeBtn.disabled = other || !!controller;
    resumeBtn.onclick = () => resume(x.name);
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'delete link';
    del.textContent = 'Delete';
    del.onclick = () => removeSaved(x.name);
    actions.append(resumeBtn, del);
    li.append(name, meta, actions);
    ul.append(li);
  }
}

async function saveCurrent(name) {
  $('save').disabled = true;
  try {
    const r = await session.save(name, { messages, data: { title: name } });
    demo.lastSave = r;
    currentSaved = name;
    $('save-name').value = '';
    saveHint(`Saved "${name}": ${r.tokens} tokens of context in ${fmtBytes(r.bytes)}, ${Math.round(r.timings.totalMs)} ms.`);
  } catch (e) {
    demo.lastSaveError = { code: e.code, message: e.message };
    saveHint(`"${name}" was not saved (${e.code}).`, true);
    showError(e, `Saving "${name}"`);
  } finally {
    $('save').disabled = !!controller;
    await refreshSaved();
  }
}

/** Replaces the chat with a saved conversation: its transcript, and a session restored from its memory. */
async function resume(name) {
  if (controller) return;
  setBusy(true);
  try {
    const s = await demo.engine.restore(name);
    if (session) session.free().catch(() => {});
    session = demo.session = s;
    currentPolicy = s.policy;
    $('policy').value = s.policy;
    $('policy-hint').textContent = `Using "${s.policy}" (from the saved conversation).`;
    $('policy-hint').className = 'hint';
    clearChat();
    messages = (s.messages || []).filter((m) => m.role === 'user' || m.role === 'assistant');
    for (const m of messages) addBubble(m.role, m.content);
    updateStats(s.stats(), null);
    currentSaved = name;
    demo.lastRestore = { name, ...s.restored, tokens: s.stats().tokens };
    saveHint(`Resumed "${name}": ${s.stats().tokens} tokens of context from ${fmtBytes(s.restored.bytes)} in ${Math.round(s.restored.timings.totalMs)} ms.`);
  } catch (e) {
    demo.lastResumeError = { code: e.code, message: e.message };
    saveHint(`"${name}" could not be resumed (${e.code}).`, true);
    showError(e, `Resuming "${name}"`);
  } finally {
    setBusy(false);
    await refreshSaved();
  }
}

async function removeSaved(name) {
  try {
    await demo.engine.deleteSession(name);
    if (currentSaved === name) currentSaved = null;
    saveHint(`Deleted "${name}".`);
  } catch (e) {
    showError(e, `Deleting "${name}"`);
  }
  await refreshSaved();
}

$('save-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (!demo.ready || controller) return;
  saveCurrent($('save-name').value.trim() || defaultSaveName());
});

$('composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = $('prompt').value.trim();
  if (!text || !demo.ready || controller) return;
  $('prompt').value = '';
  send(text);
});
$('prompt').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); $('composer').requestSubmit(); }
});
$('stop').onclick = () => { if (controller) controller.abort(); };
$('new-chat').onclick = async () => { await session.reset(); clearChat(); currentSaved = null; updateStats(session.stats(), null); refreshSaved(); };
$('policy').onchange = (ev) => { newSession(ev.target.value); };
$('temp').oninput = (ev) => { $('temp-out').textContent = ev.target.value; };
$('topp').oninput = (ev) => { $('topp-out').textContent = ev.target.value; };
$('clear-cache').onclick = async () => {
  const files = await Engine.cache.list();
  for (const f of files) await Engine.cache.delete(f.url);
  $('clear-cache').textContent = `Removed ${files.length} cached file(s)`;
};

start();
