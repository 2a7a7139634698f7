# Segue: `make demo` runs the whole loop, `make test` the whole suite, `make bench` the
# end-to-end benchmark on a fresh local broker (under 10 minutes; benchmarks/README.md).
# All install what they need first (a virtualenv, Debian's kcat, Apache Kafka by Maven).
VENV    ?= .venv
PY      := $(VENV)/bin/python
SEGUE   := $(VENV)/bin/segue
# The interpreter the virtualenv is made from: the system's own Python 3.11+ when it has
# one that can make a virtualenv, else python3 on the PATH; PYTHON=... picks another.
# Distributions build theirs with profile-guided and link-time optimisation, which a
# plain source build (pyenv's default) leaves out: Debian's 3.11 ran the worker's
# decision path with 18% less CPU per event than a pyenv 3.11 without them, on the same
# machine, the same code (benchmarks/README.md, "Tenth pass").
ifeq ($(origin PYTHON), undefined)
PYTHON  := $(shell for p in /usr/bin/python3 python3; do \
	$$p -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
endif
# Made again when pyproject.toml or the interpreter changes.
STAMP   := $(VENV)/.installed-$(shell { cat pyproject.toml; command -v $(PYTHON); } | cksum | cut -d' ' -f1)

.PHONY: demo test bench deps system-deps kafka lint clean

demo: deps
	$(SEGUE) demo

test: deps
	$(PY) -m pytest

bench: deps
	$(PY) -m benchmarks.end_to_end

deps: $(STAMP) system-deps kafka

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" && $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer, with venv, is needed (PYTHON=$(PYTHON))"; exit 1; }
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# kcat is the independent Kafka client the interoperability tests use; prometheus and
# promtool scrape the worker and check the alert rules in the tests.
system-deps:
	@command -v java >/dev/null || { echo "Java 17+ is needed to run Apache Kafka"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is needed to fetch Apache Kafka"; exit 1; }
	@command -v kcat >/dev/null || { \
		echo "installing kcat (Debian package)"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq kcat >/dev/null; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq kcat >/dev/null; fi; }
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
		echo "installing prometheus and promtool (Debian package)"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq prometheus >/dev/null; fi; }

# Fetches the pinned Apache Kafka jars once into the cache; later runs need no network.
kafka: $(STAMP)
	$(SEGUE) kafka fetch

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
