# make demo: set up and run the main job on SQLite with demo data. make test: the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MANAGE := $(PY) manage.py

.PHONY: demo test test-fast benchmark mutation lint clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(MANAGE) migrate --noinput -v0
	$(MANAGE) adcp_demo
	$(MANAGE) backup_create --compress
	$(MANAGE) backup_validate latest
	$(MANAGE) backup_list

# The browser tests run in their own pytest process (Playwright's event loop is process-wide).
test: $(VENV)/.installed
	$(VENV)/bin/pytest -m "not browser"
	DJANGO_ALLOW_ASYNC_UNSAFE=true $(VENV)/bin/pytest -m browser; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

# The quick loop: neither the slow tests (child processes, large data) nor the browser.
test-fast: $(VENV)/.installed
	$(VENV)/bin/pytest -m "not slow and not browser"

benchmark: $(VENV)/.installed
	$(PY) benchmarks/run.py

# Mutation testing (docs/testing.md): not part of make test or CI. MODULES="adcp_backup/retention.py ..." picks modules.
mutation: $(VENV)/.installed
	$(PY) scripts/mutation.py $(MODULES)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check adcp_backup project tests benchmarks scripts
	$(VENV)/bin/mypy adcp_backup

clean:
	rm -rf $(VENV) data .pytest_cache mutants
