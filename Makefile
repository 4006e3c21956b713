# slm-finetune-lab: `make course` runs every notebook, `make test` checks everything.
PY ?= python3
# torch is installed on its own, first, so pip never resolves it (an unpinned torch pulls a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
# Optional: e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu for a CPU-only torch on Linux.
TORCH_INDEX ?=

VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_RUNS := $(CURDIR)/build/test-runs

.PHONY: venv course test lab base-model data notebooks constraints clean

venv: $(STAMP)

# Re-runs only when the declared dependencies or the tested pins change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install '$(TORCH_SPEC)' $(if $(TORCH_INDEX),--index-url '$(TORCH_INDEX)')
	$(VPY) -m pip install -e '.[test]' -c constraints.txt
	touch $@

course: venv
	$(VPY) -m labhelpers.course

# Both suites always run; the target fails if either failed.
test: venv
	@mkdir -p $(TEST_RUNS); status=0; \
	LAB_RUNS_DIR=$(TEST_RUNS) $(VPY) -m pytest tests || status=1; \
	LAB_RUNS_DIR=$(TEST_RUNS) $(VPY) -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env notebooks || status=1; \
	exit $$status

lab: venv
	cd notebooks && ../$(VENV)/bin/jupyter lab

base-model: venv
	$(VPY) -m labhelpers.basemodel --out data/tiny-llama-base --force

# Notebooks are written from their sources in tools/notebooks/ (plain Python, reviewable diffs).
notebooks: venv
	for f in tools/notebooks/nb_*.py; do $(VPY) $$f || exit 1; done

data: venv
	$(VPY) -m labhelpers.datasets_gen --out data/tone
	$(VPY) -m labhelpers.datasets_tasks --task qa --out data/qa --train 300 --test 60

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
