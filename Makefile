# The two commands of the README: `make run` and `make test`. Everything else is optional.
.PHONY: run test lint bench

run:
	@scripts/setup.sh run
	.venv/bin/pushbutton --headless --jobs jobs.ini

test:
	@scripts/setup.sh test
	.venv/bin/ruff check .
	.venv/bin/python -m pytest

lint:
	.venv/bin/ruff check .

bench:
	@scripts/setup.sh test
	.venv/bin/python bench/run.py
