#!/bin/sh
# Simulated report. Usage: report.sh --from DATE --rows N --threshold X REGION...
set -eu
from="$2"; rows="$4"; threshold="$6"; shift 6
if [ -z "${PB_API_KEY:-}" ]; then
  echo "warning: no API key given, using cached data" >&2
fi
if [ -n "${PB_NOTES:-}" ]; then
  echo "Notes:"; printf '%s\n' "$PB_NOTES" | sed 's/^/  /'
fi
echo "Report from $from, $rows rows per region, alert above $threshold"
total=$#
n=0
for region in "$@"; do
  n=$((n + 1))
  echo "::progress $((n * 100 / total)) Region $region"
  i=1
  while [ "$i" -le "$rows" ]; do
    echo "$region row $i: $(( (i * 37) % 100 ))"
    i=$((i + 1))
  done
  echo "warning: $region has late data" >&2
done
