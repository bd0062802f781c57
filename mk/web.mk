# mk/web.mk — browser side: demo server, wasm-in-Node tests, headless Chromium tests, npm package.
#   make demo            build the native CLI + both wasm builds, serve the repo on http://127.0.0.1:$(DEMO_PORT)
#   make test-wasm-node  the wasm build in Node: plumbing, errors, greedy text == native CLI
#   make test-wasm-parity both wasm builds in Node vs the PyTorch reference fixtures (tiny, tiny-ei, tiny-pod), and
#                        the threaded build's pool (tests/wasm/run_parity.sh; ~30 s)
#   make test-browser    headless Chromium (Debian chromium + npm playwright-core): tests/browser/run.mjs
#   make npm-pack        build/npm/edgeinf-<version>.tgz
#   make idbfs-check     why saved sessions use IndexedDB transactions, not Emscripten's IDBFS (not in `make test`)

NODE ?= node
NPM ?= npm
DEMO_PORT ?= 8080
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test-wasm-node test-browser npm-pack node-deps

# npm devDependencies (playwright-core, vite) from package-lock.json; reinstalled when the lock changes.
node-deps: node_modules/.package-lock.json
node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: deps wasm $(BUILD)/edgeinf
	@echo "edgeinf demo: http://127.0.0.1:$(DEMO_PORT)/web/demo/  (Ctrl-C stops the server)"
	$(NODE) scripts/serve.mjs --port $(DEMO_PORT) --page /web/demo/

test-wasm-node: wasm $(BUILD)/edgeinf
	$(NODE) tests/wasm/run.mjs

# The parity checkers against dist/edgeinf-simd and dist/edgeinf-simd-mt.wasm (the latter with the Node glue of
# `make wasm-node`), through tests/wasm/logits_dump.mjs; the random 25M model is for threads.mjs's timing.
.PHONY: test-wasm-parity
test-wasm-parity: wasm wasm-node $(WASM_NODE)/random-25m-q8_0.gguf
	tests/wasm/run_parity.sh $(WASM_NODE)/random-25m-q8_0.gguf

$(WASM_NODE)/random-25m-q8_0.gguf: models/tools/make_random.py
	@mkdir -p $(dir $@)
	$(PY) models/tools/make_random.py 25m $@

test-browser: wasm $(BUILD)/edgeinf node-deps
	CHROMIUM=$(CHROMIUM) $(NODE) tests/browser/run.mjs

npm-pack: wasm
	@mkdir -p $(BUILD)/npm
	$(NPM) pack --pack-destination $(BUILD)/npm --loglevel=error

# Why saved sessions do not use Emscripten's IDBFS (web/session-store.js): observations in headless Chromium.
# Not part of `make test`; a failing check means IDBFS now behaves differently.
.PHONY: idbfs-check
idbfs-check: node-deps
	CHROMIUM=$(CHROMIUM) $(NODE) tests/browser/idbfs/run.mjs
