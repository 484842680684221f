#!/bin/sh
# Simulated deploy: prints coloured steps and progress. Usage: deploy.sh --env ENV --tag TAG --dry-run=BOOL
set -eu
env=""; tag=""; dry="false"
while [ $# -gt 0 ]; do
  case "$1" in
    --env) env="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --dry-run=*) dry="${1#--dry-run=}"; shift ;;
    *) echo "unknown argument: $1" >&2; exit 64 ;;
  esac
done
printf '\033[1mDeploying %s to %s\033[0m (colour %s, dry run %s)\n' "$tag" "$env" "${DEPLOY_COLOR:-none}" "$dry"
step=0
for what in "Fetching release" "Checking configuration" "Draining traffic" "Switching release" "Warming caches"; do
  step=$((step + 1))
  echo "::progress $((step * 20)) $what"
  printf '\033[32m✔\033[0m %s\n' "$what"
  sleep 0.3
done
echo "Done: $tag is live on $env."
