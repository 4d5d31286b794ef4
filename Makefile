# The README's commands. Everything installs into ./.venv (and Label Studio into ./.venv-ls).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_INSTALL := $(PY) -m pip install --progress-bar off -c requirements/cpu.txt -c requirements/lock.txt
STAMP := $(VENV)/.installed

.PHONY: install lock postgres test test-fast demo predict-demo clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/cpu.txt requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar off --upgrade pip
	$(PIP_INSTALL) -e ".[dev]"
	touch $@

## re-pin requirements/lock.txt to the newest releases pyproject.toml allows (then run `make test` before committing it)
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --progress-bar off -c requirements/cpu.txt -e ".[dev]"
	{ sed -n '/^#/p' requirements/lock.txt; .venv-lock/bin/pip freeze --exclude-editable | grep -v '^torch=='; } > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt
	rm -rf .venv-lock

## PostgreSQL's binaries for the feedback store's tests (Debian's package; installed when run as root,
## else those tests are skipped and say why)
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" -eq 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; \
		else echo "PostgreSQL is not installed and this is not root: its tests will be skipped"; fi; \
	fi

## the whole test suite (unit + end-to-end against real Label Studio and PostgreSQL servers)
test: install postgres
	$(PY) -m pytest -ra

## unit tests only
test-fast: install
	$(PY) -m pytest -ra -m "not e2e"

## pre-label the bundled sample photos and write overlays to ./out/
predict-demo: install
	$(VENV)/bin/prelabel predict backend/prelabel/assets/*.jpg \
		--labels "$${PRELABEL_LABELS:-cat,cup=coffee cup|mug,person,rocket}" \
		--out out/predictions.json --viz out/viz
	@echo "overlays: out/viz/  predictions: out/predictions.json"

## Label Studio on :8080 with the backend connected and a demo project pre-labeled
demo: install
	@echo "tip: '$(VENV)/bin/prelabel warmup' converts the models once (OpenVINO) before a large job or a server start"
	$(VENV)/bin/prelabel demo

clean:
	rm -rf $(VENV) .venv-ls out .pytest_cache .hypothesis
