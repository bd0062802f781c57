# lib.sh — shared by the CLI test scripts (source it after setting T to a scratch directory).
# ok NAME / ko NAME WHY count results; expect_error NAME NEEDLE CMD... requires exit 1 or 2, NEEDLE on stderr and no
# sanitizer report (the CLI under test is the ASan/UBSan build).
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok $1"; }
ko() { fail=$((fail + 1)); echo "FAIL $1: $2"; }

expect_error() {
  local name=$1 needle=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ $rc -ne 1 ] && [ $rc -ne 2 ]; then ko "$name" "exit $rc: $(head -c 300 "$T/err")"; return; fi
  if grep -q -E 'AddressSanitizer|runtime error|LeakSanitizer' "$T/err"; then ko "$name" "sanitizer: $(head -c 300 "$T/err")"; return; fi
  if ! grep -q -- "$needle" "$T/err"; then ko "$name" "stderr lacks '$needle': $(head -c 300 "$T/err")"; return; fi
  ok "$name"
}
