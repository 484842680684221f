#!/bin/sh
# A slow job with progress. Usage: backup.sh SECONDS
total="${1:-60}"
i=0
while [ "$i" -lt "$total" ]; do
  i=$((i + 1))
  echo "::progress $((i * 100 / total)) Copied $i of $total parts"
  echo "copied part $i"
  sleep 1
done
echo "Backup complete."
