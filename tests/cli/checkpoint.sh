#!/usr/bin/env bash
# CLI checkpoint tests (generate --save / --restore, docs/checkpoint.md) on the tiny fixtures: a restored run prints
# exactly the continuation of an uninterrupted one (greedy and seeded, every policy, pod and edgeinfinite+pod in both
# share modes, prompt appended, chained restores), window-policy files have a constant size (edgeinfinite+pod too), and bad files are refused with a clear error (never a crash:
# run it with the ASan CLI) while a previous checkpoint stays intact. Ends with "N passed, N failed".
set -u
CLI=${1:-build/edgeinf-asan}
FX=tests/fixtures/tiny
M=$FX/tiny-f32.gguf
AD=tests/fixtures/tiny-ei/tiny-ei-adapter.gguf
POD=tests/fixtures/tiny-pod
PY=/usr/bin/python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib.sh"

# run OUTFILE ARGS...: generate with ARGS; stdout (the generated text) to OUTFILE without its final newline.
run() {
  local out=$1; shift
  if ! $CLI generate -m $M "$@" >"$T/raw" 2>"$T/err"; then echo "generate $* failed: $(head -c 300 "$T/err")" >&2; return 1; fi
  if grep -q -E 'AddressSanitizer|runtime error|LeakSanitizer' "$T/err"; then echo "sanitizer: $(head -c 300 "$T/err")" >&2; return 1; fi
  head -c -1 "$T/raw" >"$out"
}

P1='The robot said: "2 + 3 = 5" and'
P2='walked to the café'
declare -A POLICY=(
  [full]="--policy full --ctx 200"
  [streaming]="--policy streaming --n-sink 4 --window 16 --seg 8"
  [edgeinfinite]="--policy edgeinfinite --adapter $AD --n-sink 4 --window 16 --seg 8"
  [pod-scores]="--policy pod --adapter $POD/tiny-pod-scores.gguf --ctx 200"
  [pod-keys]="--policy pod --adapter $POD/tiny-pod-keys.gguf --ctx 200"
  [eipod-scores]="--policy edgeinfinite+pod --adapter $POD/tiny-eipod-scores.gguf"
  [eipod-keys]="--policy edgeinfinite+pod --adapter $POD/tiny-eipod-keys.gguf"
)
SEEDED="--temp 0.9 --top-k 40 --repeat-penalty 1.1 --seed 7"

# 1. save after N1 generated tokens, restore and generate N2 more == one run of N1 + N2 (greedy and seeded)
for pol in full streaming edgeinfinite pod-scores pod-keys eipod-scores eipod-keys; do
  for mode in greedy seeded; do
    S="--temp 0"; [ $mode = seeded ] && S=$SEEDED
    name="$pol $mode: save after 15, restore, 45 more == uninterrupted 60"
    if run "$T/u" -p "$P1" -n 60 $S ${POLICY[$pol]} &&
       run "$T/a" -p "$P1" -n 15 $S ${POLICY[$pol]} --save "$T/ck" &&
       run "$T/b" -n 45 $S ${POLICY[$pol]} --restore "$T/ck"; then
      cat "$T/a" "$T/b" >"$T/ab"
      if [ -s "$T/u" ] && cmp -s "$T/u" "$T/ab"; then ok "$name"; else ko "$name" "'$(cat "$T/u")' vs '$(cat "$T/ab")'"; fi
    else ko "$name" "a run failed"; fi
  done
done

# the RNG continues from the checkpoint: a --seed given with --restore does not matter (another seed without
# --restore does give other text, so the comparison can fail)
run "$T/a" -p "$P1" -n 15 $SEEDED ${POLICY[streaming]} --save "$T/ck"
run "$T/b" -n 45 $SEEDED ${POLICY[streaming]} --restore "$T/ck"
run "$T/c" -n 45 --temp 0.9 --top-k 40 --repeat-penalty 1.1 --seed 8 ${POLICY[streaming]} --restore "$T/ck"
run "$T/d" -p "$P1" -n 60 --temp 0.9 --top-k 40 --repeat-penalty 1.1 --seed 8 ${POLICY[streaming]}
run "$T/u" -p "$P1" -n 60 $SEEDED ${POLICY[streaming]}
if cmp -s "$T/b" "$T/c" && ! cmp -s "$T/u" "$T/d"; then ok "the saved RNG state continues (--seed on --restore ignored)"
else ko "rng" "'$(cat "$T/b")' vs '$(cat "$T/c")'"; fi

# 2. -n 0: prefill only, then save; restore generates the whole continuation
for pol in streaming edgeinfinite pod-keys eipod-scores; do
  name="$pol: -n 0 save, restore 40 == uninterrupted 40"
  if run "$T/u" -p "$P1" -n 40 $SEEDED ${POLICY[$pol]} && run "$T/a" -p "$P1" -n 0 $SEEDED ${POLICY[$pol]} --save "$T/ck0" &&
     run "$T/b" -n 40 $SEEDED ${POLICY[$pol]} --restore "$T/ck0"; then
    if [ ! -s "$T/a" ] && cmp -s "$T/u" "$T/b"; then ok "$name"; else ko "$name" "'$(cat "$T/u")' vs '$(cat "$T/a")|$(cat "$T/b")'"; fi
  else ko "$name" "a run failed"; fi
done

# 3. a prompt given with --restore is appended (P1 + " " + P2 tokenizes as P1's tokens then P2's: checked first)
t12=$($CLI tokenize -m $M -p "$P1 $P2" 2>&1); t1=$($CLI tokenize -m $M -p "$P1" 2>&1); t2=$($CLI tokenize -m $M --no-bos -p "$P2" 2>&1)
if [ "$t12" = "$t1 $t2" ]; then
  for pol in full edgeinfinite; do
    name="$pol: restore with -p appends the prompt"
    if run "$T/u" -p "$P1 $P2" -n 30 $SEEDED ${POLICY[$pol]} && run "$T/a" -p "$P1" -n 0 $SEEDED ${POLICY[$pol]} --save "$T/ckp" &&
       run "$T/b" -p "$P2" -n 30 $SEEDED ${POLICY[$pol]} --restore "$T/ckp"; then
      if cmp -s "$T/u" "$T/b"; then ok "$name"; else ko "$name" "'$(cat "$T/u")' vs '$(cat "$T/b")'"; fi
    else ko "$name" "a run failed"; fi
  done
else ko "prompt split" "tokens of '$P1 $P2' are not those of the two parts: '$t12' vs '$t1 $t2'"; fi

# 4. chained: save, restore + save, restore (also over the same file) == uninterrupted
name="edgeinfinite: three hops (10 + 20 + 30) == uninterrupted 60"
if run "$T/u" -p "$P1" -n 60 $SEEDED ${POLICY[edgeinfinite]} &&
   run "$T/a" -p "$P1" -n 10 $SEEDED ${POLICY[edgeinfinite]} --save "$T/chain" &&
   run "$T/b" -n 20 $SEEDED ${POLICY[edgeinfinite]} --restore "$T/chain" --save "$T/chain" &&
   run "$T/c" -n 30 $SEEDED ${POLICY[edgeinfinite]} --restore "$T/chain"; then
  cat "$T/a" "$T/b" "$T/c" >"$T/abc"
  if cmp -s "$T/u" "$T/abc"; then ok "$name"; else ko "$name" "'$(cat "$T/u")' vs '$(cat "$T/abc")'"; fi
else ko "$name" "a run failed"; fi
[ -e "$T/chain.tmp" ] && ko "no temp file" "$T/chain.tmp left behind" || ok "no temp file left after saves"

# 5. size: constant for window policies (100 vs 1000 prompt tokens), growing for full
$PY -c "
import random; random.seed(3); w=open('$FX/corpus.txt', encoding='utf-8').read().split()
open('$T/short.txt','w').write(' '.join(w[:40])); open('$T/long.txt','w').write(' '.join(w[:400]))"
for pol in streaming edgeinfinite eipod-scores; do
  run "$T/x" -f "$T/short.txt" -n 0 ${POLICY[$pol]} --save "$T/s1" --stats && n1=$(grep -o '"tokens":[0-9]*' "$T/err")
  run "$T/x" -f "$T/long.txt" -n 0 ${POLICY[$pol]} --save "$T/s2" --stats && n2=$(grep -o '"tokens":[0-9]*' "$T/err")
  z1=$(stat -c %s "$T/s1"); z2=$(stat -c %s "$T/s2")
  if [ "$z1" = "$z2" ] && [ "${n1#*:}" -ge 90 ] && [ "${n2#*:}" -ge $((10 * ${n1#*:} * 8 / 10)) ]; then
    ok "$pol: $z1 bytes after ${n1#*:} tokens, $z2 after ${n2#*:}"
  else ko "$pol constant size" "$z1 bytes after ${n1#*:} tokens, $z2 after ${n2#*:}"; fi
done
run "$T/x" -f "$T/short.txt" -n 0 --policy full --ctx 256 --save "$T/f1" && run "$T/x" -p "$P1" -n 0 --policy full --ctx 256 --save "$T/f2"
z1=$(stat -c %s "$T/f1"); z2=$(stat -c %s "$T/f2")
if [ "$z1" -gt "$z2" ]; then ok "full: the file grows with the context ($z2 -> $z1 bytes)"; else ko "full grows" "$z2 vs $z1"; fi
run "$T/x" -f "$T/short.txt" -n 0 --policy pod --adapter $POD/tiny-pod-scores.gguf --ctx 256 --save "$T/p1" &&
  run "$T/x" -p "$P1" -n 0 --policy pod --adapter $POD/tiny-pod-scores.gguf --ctx 256 --save "$T/p2"
y1=$(stat -c %s "$T/p1"); y2=$(stat -c %s "$T/p2")
if [ "$y1" -gt "$y2" ] && [ "$y1" -lt "$z1" ]; then ok "pod: the file grows with the context ($y2 -> $y1 bytes, full $z1)"
else ko "pod grows" "$y2 vs $y1 (full $z1)"; fi

# 6. bad files: refused with a clear error; the checkpoint that was there stays intact
S=${POLICY[edgeinfinite]}
run "$T/x" -p "$P1" -n 5 $S --save "$T/good" || ko "make good" "failed"
cp "$T/good" "$T/good.orig"
sz=$(stat -c %s "$T/good")
head -c $((sz / 2)) "$T/good" >"$T/trunc"
expect_error "truncated file refused" "truncated" $CLI generate -m $M -n 3 $S --restore "$T/trunc"
head -c 50 "$T/good" >"$T/trunc2"
expect_error "truncated header refused" "truncated" $CLI generate -m $M -n 3 $S --restore "$T/trunc2"
$PY -c "
import sys; b=bytearray(open('$T/good','rb').read()); b[len(b)-200] ^= 0x10; open('$T/flip','wb').write(b)"
expect_error "bit flip refused (CRC, section named)" "section '[A-Z]*': CRC mismatch" $CLI generate -m $M -n 3 $S --restore "$T/flip"
$PY -c "
import struct, zlib; b=bytearray(open('$T/good','rb').read()); b[4:8]=struct.pack('<I', 2)
b[92:96]=struct.pack('<I', zlib.crc32(bytes(b[:92]))); open('$T/v2','wb').write(b)"
expect_error "other format version refused" "format version 2 is not supported: this build reads version 1" \
  $CLI generate -m $M -n 3 $S --restore "$T/v2"
: >"$T/empty"
expect_error "empty file refused" "empty" $CLI generate -m $M -n 3 $S --restore "$T/empty"
expect_error "missing file refused" "cannot open checkpoint" $CLI generate -m $M -n 3 $S --restore "$T/nope"
fp=$($CLI info -m $M 2>/dev/null | grep -o 'fingerprint [0-9a-f]*' | cut -d' ' -f2)
expect_error "other model refused (both fingerprints named)" "model $fp, this session's model is" \
  $CLI generate -m $FX/tiny-q8_0.gguf -n 3 $S --restore "$T/good"
expect_error "other config refused (field named)" "window 16 in the file, 24 in the session" \
  $CLI generate -m $M -n 3 --policy edgeinfinite --adapter $AD --n-sink 4 --window 24 --seg 8 --restore "$T/good"
expect_error "other policy refused" "policy 'edgeinfinite' in the file, 'streaming'" \
  $CLI generate -m $M -n 3 ${POLICY[streaming]} --restore "$T/good"
# pod configs: n_recent, share and the layer blocks must match (the blocks come from an adapter written here with
# every layer anchoring its own block)
S=${POLICY[pod-scores]}
run "$T/x" -p "$P1" -n 5 $S --save "$T/podck" || ko "make pod checkpoint" "failed"
expect_error "pod: other n_recent refused (field named)" "n_recent 16 in the file, 12 in the session" \
  $CLI generate -m $M -n 3 $S --n-recent 12 --restore "$T/podck"
expect_error "pod: other share refused (field named)" "share 'scores' in the file, 'keys' in the session" \
  $CLI generate -m $M -n 3 $S --pod-share keys --restore "$T/podck"
(cd models && $PY - "../$POD/tiny-pod-scores.gguf" "$T/two-blocks.gguf" <<'PY'
import sys
from edgeinf_ref.gguf import GGUFWriter, read_gguf
g, w = read_gguf(sys.argv[1]), GGUFWriter()
for key, val in g.metadata.items():
    vt, et = g.types[key]
    w.add(key, [0, 1] if key == "edgeinf.pod.block_starts" else val, vt, et)
w.write(sys.argv[2])
PY
) || ko "two-block adapter" "not written"
expect_error "pod: other blocks refused (field named)" "blocks (start layers) 0 in the file, 0,1 in the session" \
  $CLI generate -m $M -n 3 --policy pod --adapter "$T/two-blocks.gguf" --ctx 200 --restore "$T/podck"
S=${POLICY[eipod-keys]}
run "$T/x" -p "$P1" -n 40 $S --save "$T/eipodck" || ko "make edgeinfinite+pod checkpoint" "failed"
expect_error "edgeinfinite+pod: other n_recent refused" "n_recent 8 in the file, 4 in the session" \
  $CLI generate -m $M -n 3 $S --n-recent 4 --restore "$T/eipodck"
expect_error "edgeinfinite+pod file into an edgeinfinite session refused" \
  "policy 'edgeinfinite+pod' in the file, 'edgeinfinite'" \
  $CLI generate -m $M -n 3 --policy edgeinfinite --adapter $POD/tiny-eipod-keys.gguf --restore "$T/eipodck"
S=${POLICY[edgeinfinite]}

# a save that cannot create its temp file fails and leaves the previous checkpoint as it was
mkdir "$T/good.tmp"
expect_error "save with an uncreatable temp file fails" "cannot create checkpoint temp file" \
  $CLI generate -m $M -p "$P2" -n 5 $S --save "$T/good"
rmdir "$T/good.tmp"
if cmp -s "$T/good" "$T/good.orig"; then ok "previous checkpoint intact after the failed save"; else ko "intact" "file changed"; fi
if run "$T/x" -n 3 $S --restore "$T/good"; then ok "previous checkpoint still restores"; else ko "restores" "$(head -c 300 "$T/err")"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
