# Segue: `make demo` runs the whole loop, `make test` the whole suite, `make bench` the
# end-to-end benchmark on a fresh local broker (under 10 minutes; benchmarks/README.md).
# All install what they need first (a virtualenv, Debian's kcat, Apache Kafka by Maven).
VENV    ?= .venv
PY      := $(VENV)/bin/python
SEGUE   := $(VENV)/bin/segue
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTHON  ?= python3

.PHONY: demo test bench deps system-deps kafka lint clean

demo: deps
	$(SEGUE) demo

test: deps
	$(PY) -m pytest

bench: deps
	$(PY) -m benchmarks.end_to_end

deps: $(STAMP) system-deps kafka

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed as $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
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
