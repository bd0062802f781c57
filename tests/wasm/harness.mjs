// harness.mjs — a minimal test runner shared by tests/wasm and tests/browser: sequential async tests,
// one line per test, and the closing line "N passed, N failed[, N skipped]".

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export function createSuite(title) {
  const tests = [];
  return {
    /** Registers a test; fn may return the string 'skip: why' to count as skipped. */
    test(name, fn, { timeoutMs = 120000 } = {}) {
      // TEST_FILTER=regex runs only the matching tests (for debugging).
      if (process.env.TEST_FILTER && !new RegExp(process.env.TEST_FILTER).test(name)) return;
      tests.push({ name, fn, timeoutMs });
    },
    async run() {
      let passed = 0, failed = 0, skipped = 0;
      console.log(`# ${title}`);
      for (const t of tests) {
        const t0 = Date.now();
        let timer;
        try {
          const r = await Promise.race([
            t.fn(),
            new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`timed out after ${t.timeoutMs} ms`)), t.timeoutMs); }),
          ]);
          if (typeof r === 'string' && r.startsWith('skip')) { skipped++; console.log(`skip ${t.name} (${r})`); }
          else { passed++; console.log(`ok   ${t.name} (${Date.now() - t0} ms)`); }
        } catch (e) {
          failed++;
          console.log(`FAIL ${t.name}: ${e && e.stack ? e.stack : e}`);
        } finally {
          clearTimeout(timer);
        }
      }
      console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
      return { passed, failed, skipped };
    },
  };
}

export function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

export function assertEq(a, b, msg) {
  if (a !== b) throw new Error(`${msg}: expected ${JSON.stringify(b)}, got ${JSON.stringify(a)}`);
}

/** Rejects unless p rejects with an error of the given code; returns the error. */
export async function assertRejects(p, code, msg) {
  try {
    await p;
  } catch (e) {
    if (e && e.code === code) return e;
    throw new Error(`${msg}: expected error code ${code}, got ${e && e.code} (${e && e.message})`);
  }
  throw new Error(`${msg}: expected error code ${code}, but it succeeded`);
}

/** Greedy text of the native CLI (the reference for the wasm builds); its stdout ends with one '\n'. */
export function cliGreedy(model, prompt, n, extra = []) {
  const out = execFileSync('build/edgeinf', ['generate', '-m', model, '-p', prompt, '-n', String(n), '--temp', '0', ...extra],
    { encoding: 'utf8', maxBuffer: 1 << 24 });
  return out.endsWith('\n') ? out.slice(0, -1) : out;
}

/** Models to test: every tiny fixture, plus the default model once it exists. */
export function testModels() {
  const dir = 'tests/fixtures/tiny';
  const ms = fs.readdirSync(dir).filter((f) => f.endsWith('.gguf')).sort().map((f) => `${dir}/${f}`);
  if (fs.existsSync('models/edgeinf-default-q8_0.gguf')) ms.push('models/edgeinf-default-q8_0.gguf');
  return ms;
}

/** The fixed prompt of the tiny fixtures (models/tools/make_tiny.py). */
export function fixturePrompt() {
  return JSON.parse(fs.readFileSync('tests/fixtures/tiny/manifest.json', 'utf8')).prompt_text;
}
