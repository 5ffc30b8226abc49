# The README's two commands: `make demo` and `make test`. Both set up the venv first.
# Two pinned stacks, one code base (README "Which stack you get"):
#   current: TFX 1.21 / TF 2.21 / Python 3.12-3.13, needs glibc >= 2.39 (ml-metadata and TFDV
#            1.21 ship manylinux_2_39 wheels only); requirements-current.in, constraints-current.txt
#   legacy:  TFX 1.16 / TF 2.16 / Python 3.10, any glibc; requirements.in, constraints.txt
# The host's glibc and Pythons pick one; `make test STACK=legacy|current` forces it. The stack
# the host would pick lives in .venv, a forced other one in .venv-$(STACK).
SHELL := /bin/bash
find_python = $(shell for p in $(foreach v,$(1),python$(v) $$HOME/.pyenv/versions/$(v)*/bin/python$(v) /usr/bin/python$(v) /usr/local/bin/python$(v)); do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; assert "%d.%d" % sys.version_info[:2] in "$(1)".split()' 2>/dev/null && { echo $$p; break; }; done)
GLIBC := $(shell getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $$2}')
GLIBC_OK := $(shell printf '2.39\n$(or $(GLIBC),0)\n' | sort -V -C && echo yes)
PYTHON_CURRENT := $(call find_python,3.13 3.12)
PYTHON_LEGACY := $(call find_python,3.10)
HOST_STACK := $(if $(and $(GLIBC_OK),$(PYTHON_CURRENT)),current,legacy)
STACK ?= $(HOST_STACK)
ifeq ($(STACK),current)
  PYTHON := $(if $(GLIBC_OK),$(PYTHON_CURRENT))
  REQUIREMENTS := requirements-current.in
  CONSTRAINTS := constraints-current.txt
  NEEDS := glibc >= 2.39 (this host: $(or $(GLIBC),unknown)) and python3.13 or python3.12 (on an older \
	host '.ci/current_stack.sh test' runs it in a Debian 13 chroot)
else ifeq ($(STACK),legacy)
  PYTHON := $(PYTHON_LEGACY)
  REQUIREMENTS := requirements.in
  CONSTRAINTS := constraints.txt
  NEEDS := python3.10 (pyenv resolves it via .python-version, e.g. 'pyenv install 3.10.13')
else
  $(error STACK must be 'current' or 'legacy', not '$(STACK)')
endif
VENV ?= $(if $(filter $(STACK),$(HOST_STACK)),.venv,.venv-$(STACK))
PY := $(VENV)/bin/python
PYVER := import sys; print(sys.version_info[:2])
DEMO_DIR ?= demo_out
DEMO_ARGS ?=
PYTEST_ARGS ?=

$(info make: stack '$(STACK)' ($(if $(filter current,$(STACK)),TFX 1.21 / TF 2.21,TFX 1.16 / TF 2.16) \
	on $(or $(PYTHON),no Python found)$(if $(filter $(origin STACK),command line environment), - forced, - glibc $(GLIBC))) in $(VENV))

.PHONY: venv demo test clean bench

venv: $(VENV)/.installed

$(VENV)/.installed: $(REQUIREMENTS) $(CONSTRAINTS) setup.py
	@if [ -z "$(PYTHON)" ]; then \
	  echo "ERROR: the '$(STACK)' stack needs $(NEEDS); not found. Install it or pick the other stack" \
	       "with 'make ... STACK=$(if $(filter current,$(STACK)),legacy,current)'." >&2; exit 1; fi
	@if [ -x $(PY) ] && [ "$$($(PY) -c "$(PYVER)")" != "$$($(PYTHON) -c "$(PYVER)")" ]; then \
	  echo "ERROR: $(VENV) was made with another Python than the '$(STACK)' stack's $(PYTHON);" \
	       "remove it ('make clean STACK=$(STACK)') and re-run." >&2; exit 1; fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -r $(REQUIREMENTS)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --use-pep517 -e .
	@touch $@

demo: venv
	$(VENV)/bin/mbt demo --out $(DEMO_DIR) $(DEMO_ARGS)

test: venv
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: venv
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR)
