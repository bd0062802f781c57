#!/usr/bin/python3
"""Run every Python test (models/tests/test_*.py) with unittest; the last line is `N passed, N failed`.

    /usr/bin/python3 models/tests/run.py [-v] [pattern]     (pattern default: test_*.py)

Exit status 0 only if nothing failed or errored. Skipped tests are listed and counted as neither.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    verbose = "-v" in argv
    args = [a for a in argv if a != "-v"]
    pattern = args[0] if args else "test_*.py"
    sys.path.insert(0, os.path.dirname(HERE))  # models/ (edgeinf_ref)
    suite = unittest.defaultTestLoader.discover(HERE, pattern=pattern, top_level_dir=HERE)
    result = unittest.TextTestRunner(verbosity=2 if verbose else 1, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(getattr(result, "unexpectedSuccesses", []))
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    for test, why in result.skipped:
        print(f"skipped: {test.id()}: {why}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
