// worker.js — hosts the IDBFS spike module (?build=st|mt) in a Web Worker and answers {id, cmd, a} with {id, r}.
// Commands: init (mount IDBFS at /ck, populate), write {name, n, v}, rename {from, to}, sync, list. Every IndexedDB
// transaction's abort is logged, to see what the browser reports when a sync fails.
const origTx = IDBDatabase.prototype.transaction;
IDBDatabase.prototype.transaction = function (...a) {
  const t = origTx.apply(this, a);
  t.addEventListener('abort', () => self.postMessage({ log: `transaction abort: ${t.error && t.error.name}` }));
  return t;
};
const build = new URL(self.location.href).searchParams.get('build') || 'st';
let M, FS;
/** FS.syncfs as a promise that also resolves (hung: true) when the callback never comes. */
const sync = (populate) => new Promise((res) => {
  let done = false;
  FS.syncfs(populate, (err) => { done = true; res({ ok: !err, err: err ? String((err && err.name) || err) : null }); });
  setTimeout(() => { if (!done) res({ ok: false, hung: true }); }, 5000);
});
self.onmessage = async (ev) => {
  const { id, cmd, a } = ev.data;
  let r;
  try {
    if (cmd === 'init') {
      M = await (await import(`./spike-${build}.js`)).default({});
      FS = M.FS;
      FS.mkdir('/ck');
      FS.mount(FS.filesystems.IDBFS, {}, '/ck');
      r = await sync(true);
    } else if (cmd === 'write') {
      const p = M._malloc(256);
      M.stringToUTF8(`/ck/${a.name}`, p, 256);
      r = { rc: M._spike_write(p, a.n, a.v) };
      M._free(p);
    } else if (cmd === 'rename') {
      FS.rename(`/ck/${a.from}`, `/ck/${a.to}`);
      r = { ok: true };
    } else if (cmd === 'sync') {
      r = await sync(false);
    } else if (cmd === 'list') {
      r = FS.readdir('/ck').filter((f) => f[0] !== '.').sort();
    }
  } catch (e) {
    r = { threw: String((e && e.stack) || e) };
  }
  self.postMessage({ id, r });
};
