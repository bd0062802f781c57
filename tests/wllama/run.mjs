// run.mjs — cross-check with llama.cpp: each GGUF goes through npm @wllama/wllama (llama.cpp compiled to wasm, in
// headless Debian Chromium driven by playwright-core) and through our engine (natively, via logits_dump and the CLI).
//   node tests/wllama/run.mjs --dump build/wllama/logits_dump --cli build/edgeinf [--report FILE] [--threads N]
//        [--top-k K] [--flash-attn off|on|auto] [--n-continue N] [--timeout S] [--keep-rows]
//        [--manifest tests/fixtures/tiny/manifest.json] MODEL.gguf...
// --threads 1 (default) uses wllama's single-thread wasm; N > 1 its multi-thread build (the server sends COOP/COEP,
// so the page is cross-origin isolated). Flash attention is off by default: with it llama.cpp casts f32 K/V to f16
// before ggml_flash_attn_ext (llama-graph.cpp), which moves log-probs by ~2e-3 even for F32 models (measured: max
// 1.8e-2 on tiny-f32); without it F32 agrees to ~1e-5.
// Tiny fixtures (named in the manifest) are teacher-forced on the manifest's reference sequence; any other GGUF
// on our tokenization of prompt_text followed by our greedy continuation.
// Per model it checks: wllama loads the file; wllama's tokenization equals ours (and SentencePiece's ids from the
// manifest for the tiny fixtures); teacher-forced top-1 agreement (both fed the same reference sequence) is at least
// the threshold for the file type; every top-1 disagreement is a near-tie in our logits; the mean log-prob difference
// over wllama's top-K is small. It reports greedy common prefixes (not asserted: one near-tie flip changes all that
// follows) and the margins of disagreeing rows. Ends with "N passed, N failed"; exit status 1 on any failure.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { startServer } from './server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');

// ------------------------------------------------------------------ settings
// Teacher-forced top-1 agreement required, per GGUF file type (tiny random models have near-ties, hence < 100%).
const MIN_AGREE = { F32: 0.95, F16: 0.95, Q8_0: 0.90, Q4_0: 0.90 };
// A disagreement is legitimate only when our logits for the two picks are this close (in logit units). F32: the same
// float math up to summation order; F16: llama.cpp rounds activations to f16 for f16 weights (we keep f32);
// Q8_0/Q4_0: both quantize activations to Q8_0, but a rounding tie can go the other way in llama.cpp's wasm code.
const TIE_TOL = { F32: 0.01, F16: 0.05, Q8_0: 0.25, Q4_0: 0.25 };
// Mean |log-prob difference| over wllama's top-K tokens of every row: catches a wrong norm, RoPE or attention that
// would not flip a top-1. Measured on the tiny fixtures (flash attention off): F32 1e-6, Q8_0 2e-7, Q4_0 2e-4,
// F16 1.5e-3 (llama.cpp rounds activations to f16 for f16 weights; we keep them f32).
const MAX_MEAN_DLOGP = 0.05;
const FILE_TYPES = { 0: 'F32', 1: 'F16', 2: 'Q4_0', 7: 'Q8_0' };
// Extra tokenizer texts (beyond the manifest's prompt_text): scripts, numbers, code, punctuation.
const EXTRA_TEXTS = [
  'Hello world',
  'Once upon a time, there was a little girl named Lily.',
  'naïve café — 東京 Привет 🙂🚀',
  'x = 3.14159; if (x > 2) { return x * 2; }',
  '1234567890 and 007',
];

function parseArgs(argv) {
  const o = { dump: null, cli: null, report: path.join(ROOT, 'build/wllama-report.json'), threads: 1, topK: 16,
    manifest: path.join(ROOT, 'tests/fixtures/tiny/manifest.json'), nContinue: 32, flashAttn: false, timeoutS: 600,
    models: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--dump') o.dump = argv[++i];
    else if (a === '--cli') o.cli = argv[++i];
    else if (a === '--report') o.report = argv[++i];
    else if (a === '--threads') o.threads = Number(argv[++i]);
    else if (a === '--top-k') o.topK = Number(argv[++i]);
    else if (a === '--manifest') o.manifest = argv[++i];
    else if (a === '--n-continue') o.nContinue = Number(argv[++i]);
    else if (a === '--keep-rows') o.keepRows = true;
    else if (a === '--timeout') o.timeoutS = Number(argv[++i]);
    else if (a === '--flash-attn') o.flashAttn = { on: true, off: false, auto: undefined }[argv[++i]];
    else if (a.startsWith('--')) throw new Error('unknown option ' + a);
    else o.models.push(a);
  }
  if (!o.dump || !o.cli || !o.models.length) throw new Error('usage: run.mjs --dump LOGITS_DUMP --cli EDGEINF [options] MODEL...');
  return o;
}

// Finds an installed npm package folder: the repo's node_modules first, then NODE_PATH entries.
function packageDir(name) {
  const dirs = [path.join(ROOT, 'node_modules'), ...(process.env.NODE_PATH || '').split(':').filter(Boolean)];
  for (const d of dirs) if (fs.existsSync(path.join(d, name, 'package.json'))) return path.join(d, name);
  throw new Error(`npm package ${name} not found (run: npm ci)`);
}

// ------------------------------------------------------------------ our engine (native)
const run = (bin, args) => execFileSync(bin, args, { encoding: 'utf8', maxBuffer: 1 << 26 });

function ourFileType(cli, model) {
  const m = /general\.file_type = (\d+)/.exec(run(cli, ['info', '-m', model]));
  return m ? (FILE_TYPES[m[1]] || 'type' + m[1]) : 'unknown';
}
const ourTokenize = (cli, model, text) => run(cli, ['tokenize', '-m', model, '--no-bos', '-p', text]).trim()
  .split(/\s+/).filter(Boolean).map(Number);
const ourGreedy = (dump, model, n, prompt) => run(dump, ['greedy', model, String(n), ...prompt.map(String)]).trim()
  .split(/\s+/).filter(Boolean).map(Number);

// Our logits after every id of seq (rows = seq.length), the prompt as one prefill and the rest decoded one by one.
function ourLogits(dump, model, seq, split) {
  const tmp = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wllama-')), 'logits.f32');
  try {
    run(dump, ['logits', model, tmp, String(split), ...seq.map(String)]);
    const b = fs.readFileSync(tmp);
    const all = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    const nv = all.length / seq.length;
    if (!Number.isInteger(nv)) throw new Error(`logits file size ${b.byteLength} not a multiple of ${seq.length} rows`);
    return Array.from({ length: seq.length }, (_, r) => all.subarray(r * nv, (r + 1) * nv));
  } finally {
    fs.rmSync(path.dirname(tmp), { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ comparison helpers
function argmax(x) { let b = 0; for (let i = 1; i < x.length; i++) if (x[i] > x[b]) b = i; return b; }
function top2gap(x) {
  const a = argmax(x); let s = -Infinity;
  for (let i = 0; i < x.length; i++) if (i !== a && x[i] > s) s = x[i];
  return x[a] - s;
}
function logSumExp(x) { const m = x[argmax(x)]; let s = 0; for (const v of x) s += Math.exp(v - m); return m + Math.log(s); }
function commonPrefix(a, b) { let i = 0; while (i < a.length && i < b.length && a[i] === b[i]) i++; return i; }
const eq = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
const r4 = (x) => Math.round(x * 1e4) / 1e4;

// Compares wllama's teacher-forced top-K rows with our logits rows.
function compareForced(wRows, ours, seq, tieTol) {
  let agree = 0, maxDlogp = 0, sumDlogp = 0, nDlogp = 0;
  const disagreements = [], rowMax = [];
  wRows.forEach((row, r) => {
    const o = ours[r], ot = argmax(o), wt = row[0][0];
    const lse = logSumExp(o);
    let rm = 0;
    for (const [id, p] of row) {
      if (!(p > 0)) continue; // underflowed tail probability: nothing to compare
      const d = Math.abs(Math.log(p) - (o[id] - lse));
      rm = Math.max(rm, d); sumDlogp += d; nDlogp++;
    }
    rowMax.push(Number(rm.toExponential(2)));
    maxDlogp = Math.max(maxDlogp, rm);
    if (ot === wt) { agree++; return; }
    const wOurs = row.find(([id]) => id === ot);
    disagreements.push({ row: r, after_id: seq[r], ours_top1: ot, wllama_top1: wt,
      our_gap: r4(o[ot] - o[wt]),                                // our logit margin of our pick over wllama's pick
      wllama_gap: wOurs && wOurs[1] > 0 ? r4(Math.log(row[0][1] / wOurs[1])) : null, // and wllama's, the other way
      our_top2_margin: r4(top2gap(o)), near_tie: o[ot] - o[wt] <= tieTol });
  });
  return { rows: wRows.length, agree, agreement: agree / wRows.length, max_abs_dlogprob: maxDlogp,
    mean_abs_dlogprob: nDlogp ? sumDlogp / nDlogp : 0, disagreements,
    max_abs_dlogprob_per_row: rowMax };
}

// ------------------------------------------------------------------ one model
async function checkModel(page, baseUrl, idx, model, opt, manifest) {
  const name = path.basename(model);
  const fx = manifest?.models?.[name];
  const ftype = ourFileType(opt.cli, model);
  const texts = [manifest?.prompt_text ?? 'The robot said: "2 + 3 = 5" and walked to the café 🙂', ...EXTRA_TEXTS];
  const ourTok = texts.map((t) => ourTokenize(opt.cli, model, t));
  const bos = Number(/tokenizer\.ggml\.bos_token_id = (\d+)/.exec(run(opt.cli, ['info', '-m', model]))?.[1] ?? 1);
  // Fixtures: the reference sequence from the PyTorch generator. Other models: our tokenization + our greedy.
  const prompt = fx ? manifest.prompt_ids : [bos, ...ourTok[0]];
  const nContinue = fx ? manifest.n_continue : opt.nContinue;
  const ourGreedyIds = ourGreedy(opt.dump, model, nContinue, prompt);
  const seq = fx ? fx.sequence : [...prompt, ...ourGreedyIds.slice(0, -1)];
  const ours = ourLogits(opt.dump, model, seq, prompt.length);

  const spec = { url: `${baseUrl}/model/${idx}`, texts, sequence: seq, prompt, nContinue, topK: opt.topK,
    nThreads: opt.threads, flashAttn: opt.flashAttn, nCtx: Math.max(256, seq.length + nContinue + 8) };
  let timer;
  const w = await Promise.race([page.evaluate((s) => window.wllamaCheck(s), spec), new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`wllama run timed out after ${opt.timeoutS} s`)), opt.timeoutS * 1000);
  })]).finally(() => clearTimeout(timer));
  const res = { model, file_type: ftype, fixture: !!fx, n_vocab: ours[0]?.length, sequence_len: seq.length,
    prompt_len: prompt.length, wllama: { load_ms: w.loadMs, forced_ms: w.forcedMs, greedy_ms: w.greedyMs,
      multithread: w.multithread, threads: w.threads, info: w.info }, checks: [] };
  const check = (label, ok, detail) => { res.checks.push({ label, ok, detail }); return ok; };

  res.wllama.log = w.logs.slice(0, 400);
  if (!check('wllama loads the GGUF', !w.error, w.error
      ? { error: w.error, llama_log: w.logs.filter((l) => /error|fail|invalid|missing|unknown|key/i.test(l)).slice(-30) }
      : { load_ms: Math.round(w.loadMs) })) {
    res.wllama.log_tail = w.logs.slice(-60);
    return res;
  }

  // Tokenizer: prompt_text is asserted against ours and (fixtures) SentencePiece's ids; extra texts against ours.
  res.tokenize = texts.map((t, i) => ({ text: t, ours: ourTok[i], wllama: w.tokenize[i], equal: eq(ourTok[i], w.tokenize[i]) }));
  check('tokenization of prompt_text: wllama == ours', res.tokenize[0].equal,
    { ours: ourTok[0], wllama: w.tokenize[0] });
  if (fx) {
    const spm = manifest.prompt_has_bos ? manifest.prompt_ids.slice(1) : manifest.prompt_ids;
    check('tokenization of prompt_text: wllama == SentencePiece (manifest)', eq(spm, w.tokenize[0]), { spm, wllama: w.tokenize[0] });
  }
  const extraBad = res.tokenize.slice(1).filter((t) => !t.equal);
  check(`tokenization of ${EXTRA_TEXTS.length} more texts: wllama == ours`, extraBad.length === 0, extraBad);

  // Teacher-forced top-1.
  const tieTol = TIE_TOL[ftype] ?? 0.1;
  res.forced = compareForced(w.forced, ours, seq, tieTol);
  if (opt.keepRows) res.forced.wllama_rows = w.forced; // [[id, p], ...] per row, for diagnosis
  const minAgree = MIN_AGREE[ftype] ?? 0.9;
  check(`teacher-forced top-1 agreement >= ${minAgree * 100}% (${ftype})`, res.forced.agreement >= minAgree,
    { agreement: r4(res.forced.agreement), agree: res.forced.agree, rows: res.forced.rows });
  const farOff = res.forced.disagreements.filter((d) => !d.near_tie);
  check(`every top-1 disagreement is a near-tie (our gap <= ${tieTol})`, farOff.length === 0, farOff);
  check(`mean |dlogprob| over wllama's top-${opt.topK} <= ${MAX_MEAN_DLOGP}`, res.forced.mean_abs_dlogprob <= MAX_MEAN_DLOGP,
    { mean: res.forced.mean_abs_dlogprob, max: res.forced.max_abs_dlogprob });

  // Greedy continuation (reported, not asserted: one near-tie flip changes everything after it).
  res.greedy = { wllama: w.greedy, ours: ourGreedyIds, common_prefix_wllama_ours: commonPrefix(w.greedy, ourGreedyIds),
    n: nContinue };
  if (fx) {
    // Quantized fixtures: the reference that quantizes activations to Q8_0 as both engines do.
    res.greedy.reference = fx.greedy_actq8 ?? fx.greedy;
    res.greedy.common_prefix_wllama_reference = commonPrefix(w.greedy, res.greedy.reference);
    res.greedy.common_prefix_ours_reference = commonPrefix(ourGreedyIds, res.greedy.reference);
  }
  return res;
}

// ------------------------------------------------------------------ main
async function main() {
  const opt = parseArgs(process.argv.slice(2));
  const manifest = fs.existsSync(opt.manifest) ? JSON.parse(fs.readFileSync(opt.manifest, 'utf8')) : null;
  const wllamaDir = packageDir('@wllama/wllama');
  const wllamaVersion = JSON.parse(fs.readFileSync(path.join(wllamaDir, 'package.json'), 'utf8')).version;
  if (!fs.existsSync(path.join(wllamaDir, 'esm/single-thread/wllama.wasm')))
    throw new Error(`@wllama/wllama ${wllamaVersion} has no esm/single-thread/wllama.wasm: this test needs the 2.x low-level API`);
  const require = createRequire(path.join(packageDir('playwright-core'), 'package.json'));
  const { chromium } = require('playwright-core');

  const models = opt.models.map((m) => path.resolve(m));
  const server = await startServer({ pageDir: HERE, wllamaDir: path.join(wllamaDir, 'esm'), models });
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wllama-chromium-'));
  const report = { wllama_version: wllamaVersion, threads: opt.threads, top_k: opt.topK, min_agreement: MIN_AGREE,
    tie_tolerance: TIE_TOL, max_mean_dlogprob: MAX_MEAN_DLOGP, flash_attn: opt.flashAttn ?? 'auto', models: [] };
  let ctx = null, passed = 0, failed = 0;
  try {
    ctx = await chromium.launchPersistentContext(userDir, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    report.chromium = ctx.browser()?.version() ?? null;
    for (let i = 0; i < models.length; i++) {
      const page = await ctx.newPage();
      const pageErrors = [];
      page.on('pageerror', (e) => pageErrors.push(String(e)));
      await page.goto(`${server.url}/page/index.html`);
      await page.waitForFunction(() => window.wllamaReady === true, null, { timeout: 60000 });
      if (i === 0) report.cross_origin_isolated = await page.evaluate(() => self.crossOriginIsolated);
      let res;
      try {
        res = await checkModel(page, server.url, i, models[i], opt, manifest);
      } catch (e) {
        res = { model: models[i], checks: [{ label: 'run', ok: false, detail: String(e.stack || e) }] };
      }
      if (pageErrors.length) res.page_errors = pageErrors;
      await page.close();
      report.models.push(res);
      printModel(res);
      for (const c of res.checks) c.ok ? passed++ : failed++;
    }
  } finally {
    if (ctx) await ctx.close();
    await server.close();
    fs.rmSync(userDir, { recursive: true, force: true });
  }
  report.passed = passed; report.failed = failed;
  fs.mkdirSync(path.dirname(opt.report), { recursive: true });
  fs.writeFileSync(opt.report, JSON.stringify(report, null, 1) + '\n');
  console.log(`report: ${path.relative(process.cwd(), opt.report)} (wllama ${wllamaVersion}, chromium ${report.chromium}, ` +
    `threads ${opt.threads}, cross-origin isolated ${report.cross_origin_isolated})`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

// One block per model: the checks, then the figures.
function printModel(res) {
  console.log(`== ${path.relative(ROOT, res.model)} [${res.file_type ?? '?'}]`);
  for (const c of res.checks) {
    console.log(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.label}`);
    if (!c.ok) console.log('       ' + JSON.stringify(c.detail).slice(0, 3000));
  }
  const f = res.forced;
  if (f) {
    console.log(`  teacher-forced top-1 agreement ${(100 * f.agreement).toFixed(1)}% (${f.agree}/${f.rows}); ` +
      `|dlogprob| over wllama's top-K: max ${f.max_abs_dlogprob.toExponential(2)}, mean ${f.mean_abs_dlogprob.toExponential(2)}`);
    for (const d of f.disagreements)
      console.log(`    row ${d.row}: ours ${d.ours_top1} / wllama ${d.wllama_top1}; our gap ${d.our_gap}, wllama gap ` +
        `${d.wllama_gap}, our top1-top2 ${d.our_top2_margin}`);
  }
  const g = res.greedy;
  if (g) console.log(`  greedy common prefix: wllama/ours ${g.common_prefix_wllama_ours}/${g.n}` +
    (g.reference ? `, wllama/reference ${g.common_prefix_wllama_reference}/${g.n}, ours/reference ${g.common_prefix_ours_reference}/${g.n}` : ''));
  if (res.tokenize) console.log(`  tokenization equal: ${res.tokenize.filter((t) => t.equal).length}/${res.tokenize.length} texts`);
}

main().catch((e) => { console.error(e.stack || String(e)); console.log('0 passed, 1 failed'); process.exitCode = 1; });
