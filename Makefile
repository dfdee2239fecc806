# The project's two commands (see README.md):
#   make demo   install everything into .venv/ and run the main job
#   make test   run the test suite
PYTHON := .venv/bin/python

.PHONY: install demo test

install:
	bash tools/install.sh

demo: install
	$(PYTHON) tools/demo.py

# One intra-op thread per xdist worker: two workers already fill two cores,
# and more threads only contend (the tiny test models run ~5x slower).
test: install
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest tests -n 2 -q
