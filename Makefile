# `make demo` and `make test` do all set-up on a fresh machine (Python 3.11 + pip).
VENV    := .venv
PY      := $(VENV)/bin/python
CURATE  := $(VENV)/bin/curate
STAMP   := $(VENV)/.installed-stamp
export RAY_AUTH_MODE ?= disabled

.PHONY: setup demo test lint bench clean report-screenshot

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	rm -rf out/quickstart
	$(CURATE) run recipes/quickstart.yaml
	$(CURATE) stats out/quickstart "SELECT op, rows_in, rows_out, rows_dropped FROM ops ORDER BY step"

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/quickstart_overhead.py

# docs/report.png (the README's picture): the browser test's screenshot of its report.
report-screenshot: $(STAMP)
	@command -v chromium >/dev/null || { echo "needs Chromium: apt-get install -y chromium"; exit 1; }
	CURATE_REPORT_SCREENSHOT=$(CURDIR)/docs/report.png $(PY) -m pytest -q -p no:cacheprovider \
	    tests/ui/test_report_browser.py

clean:
	rm -rf out .pytest_cache .ruff_cache
