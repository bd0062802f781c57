#!/usr/bin/env bash
# CLI tests: every subcommand on the tiny fixtures, and bad input giving a clear error (never a crash: the CLI under
# test is the ASan/UBSan build). Ends with "N passed, N failed".
set -u
CLI=${1:-build/edgeinf-asan}
FX=tests/fixtures/tiny
PY=/usr/bin/python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib.sh"

M=$FX/tiny-f32.gguf
# info
if $CLI info -m $M >"$T/info" 2>&1 && grep -q "arch llama" "$T/info" && grep -q "tokenizer.ggml.tokens" "$T/info"; then ok info; else ko info "$(head -c 300 "$T/info")"; fi

# generate: greedy is deterministic and equals the reference's greedy tokens decoded
PROMPT=$($PY -c "import json;print(json.load(open('$FX/manifest.json'))['prompt_text'])")
a=$($CLI generate -m $M -p "$PROMPT" -n 16 --temp 0 2>"$T/err"); rc=$?
b=$($CLI generate -m $M -p "$PROMPT" -n 16 --temp 0 --threads 2 2>/dev/null)
ref=$($PY - "$FX" <<'PY'
import json, sys, sentencepiece as spm
fx = sys.argv[1]; man = json.load(open(fx + "/manifest.json"))
sp = spm.SentencePieceProcessor(model_file=fx + "/tokenizer.model")
ids = man["prompt_ids"][1:] + man["models"]["tiny-f32.gguf"]["greedy"][:16]
full = sp.decode(ids); prompt = sp.decode(man["prompt_ids"][1:])
print(full[len(prompt):])
PY
)
if [ $rc -eq 0 ] && [ -n "$a" ] && [ "$a" = "$b" ]; then ok "generate deterministic (1 vs 2 threads)"; else ko "generate deterministic" "rc=$rc '$a' vs '$b' $(head -c 300 "$T/err")"; fi
if [ "$a" = "$ref" ]; then ok "generate --temp 0 == reference greedy text"; else ko "generate == reference" "got '$a' want '$ref'"; fi
s1=$($CLI generate -m $M -p "$PROMPT" -n 12 --temp 0.9 --seed 7 2>/dev/null)
s2=$($CLI generate -m $M -p "$PROMPT" -n 12 --temp 0.9 --seed 7 2>/dev/null)
if [ -n "$s1" ] && [ "$s1" = "$s2" ]; then ok "sampling deterministic for a seed"; else ko "seeded sampling" "'$s1' vs '$s2'"; fi
$CLI generate -m $M -p "$PROMPT" -n 5 --temp 0 --stats >/dev/null 2>"$T/stats"
if tail -1 "$T/stats" | $PY -c "import json,sys; d=json.loads(sys.stdin.read()); assert all(k in d for k in ['prefill_tokens','prefill_ms','decode_tokens','decode_ms','kv_bytes','memory_bytes']); assert d['decode_tokens']==4, d" 2>"$T/err"; then ok "generate --stats JSON"; else ko "--stats" "$(cat "$T/stats" "$T/err" | head -c 400)"; fi

# --stop: the text ends right before the first occurrence of the stop string, which is not printed
full=$($CLI generate -m $M -p "$PROMPT" -n 24 --temp 0 2>/dev/null)
stop=$($PY -c "import sys; t=sys.argv[1]; print(t[5:8])" "$full")
want=$($PY -c "import sys; t, s = sys.argv[1], sys.argv[2]; print(t[:t.find(s)])" "$full" "$stop")
got=$($CLI generate -m $M -p "$PROMPT" -n 24 --temp 0 --stop "$stop" --stop "zzzz-never" 2>&1)
if [ -n "$stop" ] && [ "$got" = "$want" ]; then ok "--stop ends before the stop string"; else ko "--stop" "stop '$stop': got '$got' want '$want'"; fi

# tokenize / detokenize against the sentencepiece library
TXT='Hello world,  the  café 🙂 — 12345 tokens!'
got=$($CLI tokenize -m $M -p "$TXT" 2>&1)
got2=$($CLI tokenize --spm $FX/tokenizer.model -p "$TXT" 2>&1)
want=$($PY -c "import sentencepiece as s,sys; sp=s.SentencePieceProcessor(model_file='$FX/tokenizer.model'); print(' '.join(map(str,[sp.bos_id()]+sp.encode(sys.argv[1]))))" "$TXT")
if [ "$got" = "$want" ] && [ "$got2" = "$want" ]; then ok "tokenize (gguf and --spm) == sentencepiece"; else ko tokenize "gguf '$got' spm '$got2' want '$want'"; fi
nb=$($CLI tokenize -m $M --no-bos -p "$TXT" 2>&1)
if [ "$nb" = "${want#* }" ]; then ok "tokenize --no-bos"; else ko "--no-bos" "'$nb'"; fi
dt=$($CLI detokenize -m $M ${want#* } 2>&1)
wantdt=$($PY -c "import sentencepiece as s,sys; sp=s.SentencePieceProcessor(model_file='$FX/tokenizer.model'); print(sp.decode(sp.encode(sys.argv[1])))" "$TXT")
if [ "$dt" = "$wantdt" ]; then ok "detokenize == sentencepiece decode"; else ko detokenize "'$dt' want '$wantdt'"; fi

# perplexity equals the reference's
$PY -c "import json;print(json.load(open('$FX/manifest.json'))['prompt_text']*3)" > "$T/ppl.txt"
out=$($CLI perplexity -m $M -f "$T/ppl.txt" --ctx 48 2>/dev/null | tail -1)
refppl=$(cd models && $PY - "../$M" "$T/ppl.txt" <<'PY'
import sys, math, torch, sentencepiece as spm
from edgeinf_ref.export import load_gguf
model, cfg, _ = load_gguf(sys.argv[1], dtype=torch.float64)
sp = spm.SentencePieceProcessor(model_file="../tests/fixtures/tiny/tokenizer.model")
ids = [sp.bos_id()] + sp.encode(open(sys.argv[2], encoding="utf-8").read())
nll, n = 0.0, 0
with torch.no_grad():
    for off in range(0, len(ids) - 1, 48):
        w = ids[off:off + 48]
        if len(w) < 2: break
        lp = torch.log_softmax(model(torch.tensor([w]))[0], -1)
        for i in range(len(w) - 1):
            nll -= lp[i, w[i + 1]].item(); n += 1
print(f"{math.exp(nll / n):.6f} {n}")
PY
)
if $PY -c "
import sys; o=dict(kv.split('=') for kv in sys.argv[1].split()); r=sys.argv[2].split()
assert int(o['tokens'])==int(r[1]), (o, r); assert abs(float(o['ppl'])/float(r[0])-1) < 1e-4, (o, r)" "$out" "$refppl" 2>"$T/err"; then ok "perplexity == reference ($out vs $refppl)"; else ko perplexity "'$out' vs '$refppl' $(cat "$T/err")"; fi

# bench
if $CLI bench -m $M -p 16 -n 4 2>/dev/null | $PY -c "import json,sys; d=json.loads(sys.stdin.read()); assert d['prefill_tps']>0 and d['decode_tps']>0"; then ok bench; else ko bench "bad JSON"; fi

# bad input
head -c 3000 $M > "$T/trunc.gguf"
printf 'this is not a model file at all\n' > "$T/text.gguf"
: > "$T/empty.gguf"
expect_error "missing model file" "cannot open model" $CLI generate -m "$T/nope.gguf" -p hi
expect_error "truncated model" "truncated" $CLI generate -m "$T/trunc.gguf" -p hi
expect_error "non-GGUF file" "not a GGUF file" $CLI info -m "$T/text.gguf"
expect_error "empty file" "empty" $CLI info -m "$T/empty.gguf"
expect_error "invalid UTF-8 prompt" "UTF-8" $CLI generate -m $M -p $'abc\xff\xfe' -n 2
expect_error "unknown policy" "unknown policy" $CLI generate -m $M -p hi --policy nope
expect_error "unknown option" "unknown option" $CLI generate -m $M -p hi --bogus
expect_error "bad number" "expects a number" $CLI generate -m $M -p hi -n abc
expect_error "prompt over budget" "context full" $CLI generate -m $M -f "$T/ppl.txt" --ctx 16
expect_error "out-of-range token id" "out of range" $CLI detokenize -m $M 1 999999
expect_error "no prompt" "prompt is required" $CLI generate -m $M
expect_error "unknown command" "unknown command" $CLI frobnicate
expect_error "pod without an adapter" "needs an adapter with measured layer blocks" $CLI generate -m $M -p hi --policy pod
expect_error "bad --pod-share" "expects 'scores' or 'keys'" $CLI generate -m $M -p hi --pod-share values
expect_error "edgeinfinite without an adapter" "needs an adapter" $CLI generate -m $M -p hi --policy edgeinfinite
expect_error "model file as adapter" "not an edgeinf adapter" $CLI generate -m $M -p hi --adapter $M
expect_error "memory budget too small" "too small" $CLI generate -m $M -p hi --policy streaming --memory-budget 1000
echo "cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
