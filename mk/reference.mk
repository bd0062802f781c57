# PyTorch reference (models/edgeinf_ref): regenerate the tiny parity fixtures, run the Python tests.
PY ?= /usr/bin/python3

.PHONY: tiny-fixtures test-python

# Deterministic: re-running leaves tests/fixtures/tiny byte-identical (checked by test-python).
tiny-fixtures:
	$(PY) models/tools/make_tiny.py tests/fixtures/tiny

# Ends with "N passed, N failed"; non-zero exit on any failure.
test-python:
	$(PY) models/tests/run.py
