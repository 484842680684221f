#!/bin/sh
# Simulated import. Usage: import.sh FILE, a private copy of the upload (removed when the run
# ends); $PB_DATA_FILENAME is the name the user gave it. A summary is kept with the run.
set -eu
lines=$(wc -l < "$1")
echo "Importing ${PB_DATA_FILENAME:-upload}: $lines lines"
head -n 3 -- "$1" | sed 's/^/  /'
if [ -n "${PB_ARTIFACTS:-}" ]; then
  printf 'file: %s\nlines: %s\n' "${PB_DATA_FILENAME:-upload}" "$lines" > "$PB_ARTIFACTS/summary.txt"
fi
echo "done"
