#!/usr/bin/env bash
# Runs each native unit-test program (run from the repo root, fixtures are found relative to it)
# and sums their "N passed, N failed" lines.
set -u
pass=0; fail=0
for t in "$@"; do
  echo "== $t"
  out=$("$t" 2>&1); rc=$?
  echo "$out" | grep -v '^ok ' 
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
  if [ -z "$line" ]; then
    echo "  (no summary line, exit $rc): counted as 1 failure"; fail=$((fail + 1)); continue
  fi
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
  pass=$((pass + p)); fail=$((fail + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "  exit $rc with no failed test: counted as 1 failure"; fail=$((fail + 1)); fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
