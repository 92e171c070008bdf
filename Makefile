# Quick start: `make demo` (install and run on the bundled sample), `make test` (the whole suite).
# Works from a fresh clone on Debian/Ubuntu with Python 3.11; run as root to let it add
# the Debian packages the GUI tests need.

PYTHON ?= python3
TORCH_INDEX ?=
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Debian packages napari's Qt viewer needs under Xvfb (the first three are the usual gaps)
GUI_DEBS := xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-render-util0 \
            libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libxkbcommon-x11-0 \
            libgl1 libegl1 libdbus-1-3 libfontconfig1

.PHONY: demo test install install-test sysdeps lint clean

$(VENV)/.installed: setup.cfg setup.py pyproject.toml src/lvpnet/model/_x86mm.c
	@$(PYTHON) -m venv $(VENV) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); \
	  else echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv)"; exit 1; fi; }
	$(PIP) install -q --upgrade pip
	# torch 2.13.0: PyPI's Linux x86_64 wheel is the CUDA build (several GB; it runs on a CPU too), unless pip
	# finds a CPU wheel first (a local wheel folder); TORCH_INDEX=https://download.pytorch.org/whl/cpu takes
	# the CPU build from PyTorch's index. A CUDA torch already in a user's environment is left alone.
	$(PIP) install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e '.[napari]'
	@touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/lvpnet demo

$(VENV)/.testing: $(VENV)/.installed
	$(PIP) install -q -e '.[testing]' ruff
	@touch $@

install-test: $(VENV)/.testing sysdeps

sysdeps:
	@missing=""; for p in $(GUI_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "warning: missing Debian packages for the GUI tests:$$missing (run as root or: sudo apt-get install$$missing)"; fi; \
	fi

test: install-test
	$(PY) -m pytest

lint: $(VENV)/.testing
	$(VENV)/bin/ruff check src napari_lvpnet tests resources

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
