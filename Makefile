# The project's two commands (see README.md):
#   make demo   install everything into .venv/ and run the main job
#   make test   check the code style (make lint), then run the test suite
PYTHON := .venv/bin/python
# What the style checks cover (OpenMMLab's flake8, isort and yapf; setup.cfg).
LINTED := mmkw tools tests mmkw_config_hook.py setup.py

.PHONY: install demo lint test

install:
	bash tools/install.sh

demo: install
	$(PYTHON) tools/demo.py

lint: install
	$(PYTHON) -m flake8 $(LINTED)
	$(PYTHON) -m isort --check-only --diff $(LINTED)
	$(PYTHON) -m yapf --diff --recursive $(LINTED)

# One intra-op thread per xdist worker: two workers already fill two cores,
# and more threads only contend (the tiny test models run ~5x slower).
test: lint
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest tests -n 2 -q
