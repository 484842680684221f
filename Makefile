# The two commands of the README: `make run` and `make test`. Everything else is optional.
.PHONY: run test lint bench dist desktop

run:
	@scripts/setup.sh run
	.venv/bin/pushbutton --headless --jobs jobs.ini

test:
	@scripts/setup.sh test
	.venv/bin/ruff check .
	.venv/bin/python -m pytest

lint:
	.venv/bin/ruff check .

# Output delivery, the page with a million lines, SSH fan-out, sign-in (bench/desktop.py: after `make dist`).
bench:
	@scripts/setup.sh test
	.venv/bin/python bench/run.py
	.venv/bin/python bench/page.py
	.venv/bin/python bench/ssh.py
	.venv/bin/python bench/auth.py
	.venv/bin/python bench/load.py

# The desktop window on jobs.ini (needs a display; `make run` is the headless server).
desktop:
	@scripts/setup.sh test
	.venv/bin/pushbutton --jobs jobs.ini

# dist/pushbutton (window on the system web view + headless) and dist/pushbutton-server (headless), one file each,
# for this machine's OS; see docs/desktop.md. ONEDIR=1 builds folders in dist/onedir/ instead;
# UNCOMPRESSED=1 builds one-file executables that start faster but are twice as big (dist/uncompressed/).
DIST_OUT = dist$(if $(ONEDIR),/onedir)$(if $(UNCOMPRESSED),/uncompressed)
dist:
	@scripts/setup.sh test
	.venv/bin/python -m PyInstaller --noconfirm --clean --log-level WARN --distpath $(DIST_OUT) \
		--workpath build/work/dist build/pushbutton.spec -- $(if $(ONEDIR),--mode onedir) \
		$(if $(UNCOMPRESSED),--uncompressed)
	@ls -l $(DIST_OUT)
