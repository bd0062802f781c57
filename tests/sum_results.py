#!/usr/bin/python3
"""Sums every "N passed, N failed" line on stdin into one line "LABEL: N passed, N failed"; exits 1 if any failed.
Used where one make stage runs several runners (tests/run_all.sh reads only a stage's last summary line)."""
import re
import sys

p = f = 0
for line in sys.stdin:
    m = re.search(r"(\d+) passed, (\d+) failed", line)
    if m:
        p += int(m.group(1))
        f += int(m.group(2))
print(f"{sys.argv[1] if len(sys.argv) > 1 else 'total'}: {p} passed, {f} failed")
sys.exit(1 if f else 0)
