# tricklab: `make demo` runs the chapter-11 study, `make test` runs the tests.
# Both set everything up first: a virtualenv with torch==2.13.0 (the CPU wheel
# pip finds locally), tricklab itself with its test tools and Ray, Debian's
# Fashion-MNIST when apt can install it, and for the tests Debian's chromium
# (the study report is checked in a real headless browser). Every step is
# skipped when its result is already there.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tricklab-installed
TORCH := torch==2.13.0
DEBIAN_DATA := /usr/share/datasets/fashion-mnist

.PHONY: setup data browser demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,ray]" "$(TORCH)"
	touch $(STAMP)

# Debian's package when apt is available and no copy of the data is found;
# otherwise tricklab finds the data itself or downloads it when first needed.
data: $(STAMP)
	@if $(PY) -m tricklab data locate fashion_mnist >/dev/null 2>&1; then \
		echo "Fashion-MNIST: $$($(PY) -m tricklab data locate fashion_mnist)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null 2>&1 && \
		     DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
		|| echo "apt could not install dataset-fashion-mnist; tricklab will download it when needed"; \
	else \
		echo "Fashion-MNIST not found and apt unavailable; tricklab will download it when needed"; \
	fi

# Debian's chromium for the report test, when apt is available (the test is
# skipped, saying why, on a machine without it).
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null 2>&1 && \
		     DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } \
		|| echo "apt could not install chromium; the browser test will be skipped"; \
	else \
		echo "chromium not found and apt unavailable; the browser test will be skipped"; \
	fi

demo: data
	$(VENV)/bin/tricklab study studies/chapter11.yaml --quick

# One worker per core, each taking whole test files (their module fixtures are built once).
test: data browser
	$(VENV)/bin/pytest -n auto --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: data
	$(PY) benchmarks/epoch_speed.py
	$(PY) benchmarks/optimizer_step.py
	$(PY) benchmarks/regularization_overhead.py
	$(PY) benchmarks/train_memory.py
	$(PY) benchmarks/study_speed.py
	$(PY) benchmarks/csv_load.py
	$(PY) benchmarks/csv_epoch.py
	$(PY) benchmarks/csv_predict.py
	$(PY) benchmarks/image_folder_load.py
	$(PY) benchmarks/study_store_overhead.py
	$(PY) benchmarks/doctor_overhead.py
	$(PY) benchmarks/save_load.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
