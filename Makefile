# The README's two commands: `make demo` and `make test`. Both create .venv and install
# what they need on first use; nothing else is required on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= out

.PHONY: install test test-fast demo bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[torch,test]'
	@# PyGObject builds from source against the system's GObject introspection and cairo
	@# (Debian: libgirepository1.0-dev libcairo2-dev, installed by .ci/run). Without them the
	@# GStreamer sources and sinks are unavailable and their tests skip with a reason.
	@if pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null; then \
		$(PY) -m pip install -q 'pygobject<3.51'; \
	else \
		echo "note: GObject introspection/cairo headers missing; GStreamer support not installed (see README)"; \
	fi
	@touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(PY) -m segstream demo --out $(OUT)/demo

bench: install
	$(PY) -m segstream bench pipeline --json $(OUT)/bench_pipeline.json

clean:
	rm -rf $(OUT) .pytest_cache
