#!/usr/bin/env bash
# `make test`: runs every test stage, each a make target whose runner ends with "N passed, N failed", and sums them.
# A stage that fails without a summary line counts as one failure. Logs: build/test-logs/<stage>.log
set -u
cd "$(dirname "$0")/.."
stages=("$@")
mkdir -p build/test-logs
pass=0; fail=0; report=()
for st in "${stages[@]}"; do
  log=build/test-logs/$st.log
  t0=$(date +%s)
  echo "=== $st"
  make --no-print-directory "$st" 2>&1 | tee "$log" | grep -E '(FAIL|not ok|Error|error:|passed, [0-9]+ failed)' | tail -40
  rc=${PIPESTATUS[0]}
  line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed -E 's/^(.*[^0-9])?([0-9]+) passed.*/\2/')
    f=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) failed.*/\1/')
  else
    p=0; f=0
  fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "  $st exited $rc without a failed test: counted as 1 failure (see $log)"; fi
  pass=$((pass + p)); fail=$((fail + f))
  report+=("$(printf '%-22s %4s passed %3s failed  %4ss' "$st" "$p" "$f" "$(( $(date +%s) - t0 ))")")
done
echo "=== summary"
printf '%s\n' "${report[@]}"
echo "total: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
