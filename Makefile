# The README's two commands: `make demo` and `make test`. Both set up .venv first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Python 3.10 is what TFX 1.16 supports; pyenv resolves python3.10 via .python-version.
PYTHON310 := $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; assert sys.version_info[:2]==(3,10)' 2>/dev/null && { echo $$p; break; }; done)
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=

.PHONY: venv demo test clean bench

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.in constraints.txt setup.py
	@if [ -z "$(PYTHON310)" ]; then \
	  echo "ERROR: Python 3.10 not found (TFX 1.16 needs 3.10). Install it (e.g. 'pyenv install 3.10.13')" \
	       "and make 'python3.10' resolve, then re-run make." >&2; exit 1; fi
	@test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -r requirements.in
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --use-pep517 -e .
	@touch $@

demo: venv
	$(VENV)/bin/mbt demo --out $(DEMO_DIR)

test: venv
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: venv
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR)
