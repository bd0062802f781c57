// demo.js — the chat demo: loads a model set (model + adapter, cached in IndexedDB), streams replies, shows live
// stats. The "Model" select switches between the sets below and reloads the engine.
// Query parameters: ?set=default|pod  ?model=URL  ?adapter=URL (both take precedence over ?set=)  ?threads=N|auto
// ?cache=0  ?policy=NAME. State for the browser tests is kept in window.demo.

import { Engine } from '../index.js';

// The model sets of the "Model" select: the default model with its EdgeInfinite adapter (auto/full/streaming/
// edgeinfinite), and the PoD post-trained variant with an edgeinfinite+pod adapter (every policy).
const SETS = {
  default: {
    label: 'default (EdgeInfinite adapter)',
    model: '../../models/edgeinf-default-q8_0.gguf',
    adapter: '../../models/edgeinf-default-adapter.gguf',
  },
  pod: {
    label: 'PoD post-trained (all policies)',
    model: '../../models/edgeinf-podtrained-q8_0.gguf',
    adapter: '../../models/edgeinf-podtrained-eipod.gguf',
  },
};
const FALLBACK_MODEL = '../../tests/fixtures/tiny/tiny-q8_0.gguf';
const POLICIES = ['auto', 'full', 'streaming', 'edgeinfinite', 'pod', 'edgeinfinite+pod'];
// Which set serves a policy that needs more than the model (the first listed set that has it).
const NEEDS = {
  edgeinfinite: { what: 'an EdgeInfinite adapter (memory gate)', sets: ['default', 'pod'] },
  pod: { what: 'PoD layer blocks', sets: ['pod'] },
  'edgeinfinite+pod': { what: 'a memory gate and PoD layer blocks', sets: ['pod'] },
};

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
const baseName = (url) => String(url).split(/[?#]/)[0].split('/').pop();

/** What to load first: ?model= (with ?adapter=) wins, then ?set=, then the default set; the tiny test model when no
 * set is built. Resolves to {set, url, adapter, note}; set is 'custom' for a model given by URL or the fallback. */
async function pickModel() {
  if (params.get('model')) return { set: 'custom', url: params.get('model'), adapter: params.get('adapter'), note: null };
  let name = params.get('set') || 'default', note = null;
  if (!Object.hasOwn(SETS, name)) {
    note = `Unknown model set "${name}" (use ${Object.keys(SETS).join(' or ')}); loading the default set.`;
    name = 'default';
  }
  for (const n of [name, 'default']) {
    if (setAvailable[n] !== true) continue;
    if (n !== name) note = `The "${SETS[name].label}" model is not built, so this demo loads the default set.`;
    const adapter = params.get('adapter') || ((await exists(SETS[n].adapter)) ? SETS[n].adapter : null);
    return { set: n, url: SETS[n].model, adapter, note };
  }
  return {
    set: 'custom', url: FALLBACK_MODEL, adapter: null, tiny: true,
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
    ['Name', m.name || '–'], ['File', `${baseName(loaded.url)} (${fmtBytes(info.load.sizeBytes)})`],
    ['Parameters', m.nParams ? `${(m.nParams / 1e6).toFixed(2)} M` : '–'],
    ['Layers', m.nLayer], ['Vocabulary', m.nVocab], ['Trained context', m.nCtxTrain], ['Chat format', m.chatFormat],
    ['Build', info.build],
    ['Adapter', info.adapter ? `${baseName(loaded.adapter)} (${info.adapter.kind}, ${(info.adapter.nParams / 1e3).toFixed(0)} K params)` : 'none'],
    ['Policies', POLICIES.filter((p) => demo.supported[p] && demo.supported[p].ok).join(', ') || '–'],
  ];
  const dl = $('model-info');
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = String(v ?? '–'); dd.title = dd.textContent;
    dl.append(dt, dd);
  }
  if (info.load.cacheError) showError(info.load.cacheError, 'The model works, but it could not be cached');
}

let setAvailable = {}; // set name -> its model file is served
let loaded = { set: null, url: null, adapter: null }; // what the engine in use was loaded from

/** Fills the "Model" select: the sets (a set whose model is not built is disabled) and, for ?model= or the tiny
 * fallback, a "custom" entry. */
function renderSetSelect(choice) {
  const sel = $('model-set');
  sel.replaceChildren();
  for (const [name, set] of Object.entries(SETS)) {
    const o = new Option(set.label + (setAvailable[name] ? '' : ' — not built'), name);
    o.disabled = !setAvailable[name];
    sel.append(o);
  }
  if (choice.set === 'custom') {
    const o = new Option(choice.tiny ? 'tiny test model' : `custom: ${baseName(choice.url)}${choice.adapter ? ` + ${baseName(choice.adapter)}` : ''}`, 'custom');
    o.title = choice.url;
    sel.append(o);
  }
  sel.value = choice.set;
}

/** Shows the load bar for a (re)load: label, 0%. */
function showLoader(label) {
  $('loader').hidden = false;
  $('load-phase').textContent = label;
  $('load-bytes').textContent = '';
  $('load-bar').style.width = '0';
}

/** Creates an engine for {url, adapter} with the page's thread and cache settings; progress goes to the load bar. */
function loadEngine({ url, adapter }) {
  const threads = params.get('threads') || 'auto';
  return Engine.load({
    model: url, adapter: adapter || undefined, threads: threads === 'auto' ? 'auto' : Number(threads),
    cache: params.get('cache') !== '0', onProgress,
  });
}

/** Which policies the loaded engine can serve, and the KV/memory bytes each allocates: every policy is tried by
 * creating a session (nothing is generated) and freeing it. Sets demo.supported[policy] = {ok, policyInUse,
 * kvBytes, memoryBytes} or {ok: false, code, message}; relabels the policy select. */
async function probePolicies(engine) {
  demo.supported = {};
  for (const p of POLICIES) {
    const s = engine.createSession({ policy: p });
    try {
      await s.ready;
      const st = s.stats();
      demo.supported[p] = { ok: true, policyInUse: st.policyInUse, kvBytes: st.kvBytes, memoryBytes: st.memoryBytes };
      await s.free();
    } catch (e) {
      demo.supported[p] = { ok: false, code: e.code, message: e.message };
    }
  }
  for (const o of $('policy').options) {
    const r = demo.supported[o.value];
    const missing = r && !r.ok && (r.code === 'INVALID_ARG' || r.code === 'UNSUPPORTED');
    o.textContent = o.value + (!r || r.ok ? (o.value === 'auto' && r ? ` → ${r.policyInUse}` : '') : missing ? ' — needs another model' : ` — ${r.code}`);
  }
}

/** Enables or disables everything that needs a ready engine (loading, switching). */
function setLoading(on) {
  for (const id of ['prompt', 'send', 'new-chat', 'save-name', 'save', 'policy', 'model-set', 'policy-switch']) $(id).disabled = on;
  for (const b of document.querySelectorAll('#saved-list button.resume')) b.disabled = on || b.dataset.other === '1';
}

async function start() {
  demo.supported = {};
  await Promise.all(Object.entries(SETS).map(async ([n, s]) => { setAvailable[n] = await exists(s.model); }));
  const choice = await pickModel();
  renderSetSelect(choice);
  setLoading(true);
  if (choice.note) { $('model-note').textContent = choice.note; $('model-note').hidden = false; }
  try {
    demo.engine = await loadEngine(choice);
  } catch (e) {
    $('load-phase').textContent = 'Could not load the model';
    $('load-bar').style.width = '0';
    showError(e, `Loading ${choice.url}`);
    demo.loadError = { code: e.code, message: e.message };
    return;
  }
  loaded = { set: choice.set, url: choice.url, adapter: choice.adapter || null };
  demo.set = choice.set;
  demo.info = demo.engine.info();
  await probePolicies(demo.engine);
  $('loader').hidden = true;
  showInfo(demo.info);
  const want = params.get('policy');
  if (want && POLICIES.includes(want)) $('policy').value = want;
  else if (want) showError({ code: 'INVALID_ARG', message: `Unknown policy "${want}" in ?policy= (use one of ${POLICIES.join(', ')}).` });
  await newSession($('policy').value);
  setLoading(false);
  await refreshSaved();
  $('prompt').focus();
  demo.ready = true;
}

/** Reloads the engine with a model set: a new engine is loaded first (the load bar shows its progress); only when
 * it is ready is the old one unloaded, so a failed load leaves the demo as it was. The chat starts afresh with the
 * selected policy (or auto, with the reason, where the new set cannot serve it). The address bar gets ?set=NAME. */
async function switchSet(name) {
  if (!Object.hasOwn(SETS, name) || controller || demo.loading) return;
  const set = SETS[name];
  demo.loading = true;
  demo.ready = false;
  setLoading(true);
  showLoader(`Loading ${set.label}…`);
  $('model-hint').textContent = `Loading ${baseName(set.model)} + ${baseName(set.adapter)}…`;
  $('model-hint').className = 'hint';
  let engine;
  try {
    engine = await loadEngine({ url: set.model, adapter: set.adapter });
  } catch (e) {
    $('loader').hidden = true;
    showError(e, `Loading ${set.model}`);
    $('model-hint').textContent = `"${set.label}" could not be loaded (${e.code}); still using the previous model.`;
    $('model-hint').className = 'hint bad';
    $('model-set').value = loaded.set;
    demo.switchError = { set: name, code: e.code, message: e.message };
    demo.loading = false;
    demo.ready = true;
    setLoading(false);
    return;
  }
  const old = demo.engine;
  if (session) session.free().catch(() => {});
  session = demo.session = null;
  demo.engine = engine;
  old.unload().catch(() => {});
  loaded = { set: name, url: set.model, adapter: set.adapter };
  demo.set = name;
  demo.info = engine.info();
  await probePolicies(engine);
  $('loader').hidden = true;
  $('model-note').hidden = true;
  showInfo(demo.info);
  $('model-hint').textContent = `Loaded ${baseName(set.model)} + ${baseName(set.adapter)}.`;
  const q = new URLSearchParams(location.search);
  q.delete('model'); q.delete('adapter');
  if (name === 'default') q.delete('set'); else q.set('set', name);
  const qs = q.toString();
  history.replaceState(null, '', `${location.pathname}${qs ? `?${qs}` : ''}${location.hash}`);
  currentSaved = null;
  await newSession($('policy').value);
  demo.loading = false;
  setLoading(false);
  await refreshSaved();
  demo.ready = true;
}

// ------------------------------------------------------------------ session and chat

let session = null, messages = [], controller = null, currentPolicy = 'auto';

function policyHint(text, { bad = false, switchTo = null } = {}) {
  $('policy-hint-text').textContent = text;
  $('policy-hint').className = bad ? 'hint bad' : 'hint';
  const b = $('policy-switch');
  b.hidden = !switchTo;
  if (switchTo) {
    b.textContent = 'Switch model';
    b.title = `Reload with "${SETS[switchTo].label}"`;
    b.onclick = () => { $('model-set').value = switchTo; switchSet(switchTo); };
  }
}

/** Why a policy cannot be used with the loaded files, and which model choice has what it needs. */
function explainPolicy(policy, e) {
  const need = NEEDS[policy];
  const other = need && need.sets.find((n) => n !== loaded.set && setAvailable[n]);
  if (!need || (e.code !== 'INVALID_ARG' && e.code !== 'UNSUPPORTED')) return { text: `"${policy}" is not available: ${e.code}.`, switchTo: null, banner: true };
  if (!other) return { text: `"${policy}" needs ${need.what}, which the loaded adapter lacks.`, switchTo: null, banner: false };
  return {
    text: `"${policy}" needs ${need.what}, which the loaded adapter lacks: choose Model "${SETS[other].label}".`,
    switchTo: other, banner: false,
  };
}

/** Starts a new chat with `policy`. Where the engine cannot serve it, the hint says why (and which model choice
 * can); the previous session stays, or, right after a (re)load when there is none, "auto" is used. */
async function newSession(policy) {
  const s = demo.engine.createSession({ policy });
  try {
    await s.ready;
  } catch (e) {
    const why = explainPolicy(policy, e);
    demo.policyError = { policy, code: e.code, message: e.message, hint: why.text };
    if (why.banner) showError(e, `Policy "${policy}"`);
    if (!session && policy !== 'auto') {
      await newSession('auto');
      policyHint(`${why.text} Using "auto" (${session ? session.stats().policyInUse : '?'}) instead.`, { bad: true, switchTo: why.switchTo });
    } else {
      $('policy').value = currentPolicy;
      policyHint(`${why.text} Still using "${currentPolicy}".`, { bad: true, switchTo: why.switchTo });
    }
    return false;
  }
  if (session) session.free().catch(() => {});
  session = demo.session = s;
  currentPolicy = policy;
  $('policy').value = policy;
  demo.policyError = null;
  const st = s.stats();
  policyHint(`Using "${policy}"${st.policyInUse && st.policyInUse !== policy ? ` → ${st.policyInUse}` : ''}.`);
  clearChat();
  $('st-tps').textContent = '–';
  $('st-prefill').textContent = '–';
  updateStats(st, null);
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
  const full = demo.supported.full && demo.supported.full.ok ? demo.supported.full.kvBytes : 0;
  $('st-kv').textContent = fmtBytes(st.kvBytes);
  $('st-kvfull').textContent = full ? `${Math.round((100 * st.kvBytes) / full)}%` : '–';
  $('st-kv').dataset.bytes = String(st.kvBytes);
  $('st-mem').textContent = fmtBytes(st.memoryBytes);
  $('st-mem').dataset.bytes = String(st.memoryBytes);
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
  $('model-set').disabled = busy;
  $('policy-switch').disabled = busy;
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
    policyHint(`Using "${s.policy}" (from the saved conversation).`);
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
$('model-set').onchange = (ev) => { switchSet(ev.target.value); };
$('temp').oninput = (ev) => { $('temp-out').textContent = ev.target.value; };
$('topp').oninput = (ev) => { $('topp-out').textContent = ev.target.value; };
$('clear-cache').onclick = async () => {
  const files = await Engine.cache.list();
  for (const f of files) await Engine.cache.delete(f.url);
  $('clear-cache').textContent = `Removed ${files.length} cached file(s)`;
};

start();
