# The two commands a reader needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test setup system-deps lint bench diagrams book clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

# axe-core, which the accessibility test injects into every page (from the npm registry).
AXE := tests/browser/node_modules/axe-core/axe.min.js
$(AXE): tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund --silent
	touch $@

setup: system-deps $(BIN)/.installed $(AXE)

# The demo signs its audit log with a key of its own, kept beside the database (a real
# service keeps it off the database's host: see README, "The audit log").
AUDIT_KEY := carepath-audit.pem

run: setup
	$(BIN)/carepath db upgrade
	test -f $(AUDIT_KEY) || $(BIN)/carepath audit keygen --out $(AUDIT_KEY)
	CAREPATH_AUDIT_KEY_FILE=$(AUDIT_KEY) $(BIN)/carepath serve --demo

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy engine pathways models schedulers cli api

bench: setup
	$(BIN)/python -m bench.events --episodes 1000 --events 10 --backend both --repeat 3
	$(BIN)/python -m bench.history --episodes 20 --at 10 1000 --backend both
	$(BIN)/python -m bench.worker --timers 100000 --lag-seconds 60
	$(BIN)/python -m bench.api --episodes 1000000 --audit-rows 1000000
	$(BIN)/python -m bench.audit --rows 1000000 --backend both

diagrams: setup
	$(BIN)/carepath diagram --out diagrams

# The pathway book of every shipped version, for clinical sign-off; tests/pathways/test_book.py
# fails when one is stale.
book: setup
	$(BIN)/python -m pathways.book docs

clean:
	rm -rf $(VENV) carepath.db
