#!/bin/sh
# Make this machine ready: Debian packages (when root and missing), then .venv with the project.
# Used by `make run`, `make test` and `.ci/run`; safe to run again (it only adds what is missing).
set -eu
cd "$(dirname "$0")/.."
what="${1:-run}"   # run | test

# Debian packages the tests need (a real sshd, Chromium, Xvfb and Qt's libraries).
if [ "$what" = test ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for pkg in $(grep -v '^#' .ci/apt-packages); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "setup: installing Debian packages:$missing"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      echo "setup: missing Debian packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
    fi
  fi
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$what
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  if [ "$what" = test ]; then extras="[dev,desktop,build]"; else extras=""; fi
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extras"
  touch "$stamp"
fi

# The OpenID provider the OIDC tests start (npm's oidc-provider, pinned by its package-lock.json):
# installed when missing or when the lock file changed; a failure fails CI.
oidc=tests/sso/oidc
if [ "$what" = test ] && { [ ! -d "$oidc/node_modules" ] || [ "$oidc/package-lock.json" -nt "$oidc/node_modules/.package-lock.json" ]; }; then
  if command -v npm >/dev/null 2>&1 && (cd "$oidc" && npm ci --no-audit --no-fund --loglevel=error); then
    :
  else
    echo "setup: could not install $oidc (Node.js and npm are needed for the OpenID Connect tests)" >&2
    [ "${CI:-}" != true ] || exit 1
  fi
fi
