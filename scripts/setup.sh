#!/usr/bin/env bash
# Idempotent set-up for a fresh clone on a fresh machine: system packages,
# node_modules pinned by package-lock.json, then the TypeScript build.
# Every step is skipped when what it produces is already there and current.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -e /usr/lib/x86_64-linux-gnu/libfuse.so.2 ] || ldconfig -p 2>/dev/null | grep -q 'libfuse.so.2 ' || need_apt+=(libfuse2)
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian" >&2
  if [ ! -f /var/lib/cowfs-apt-updated ]; then
    apt-get update -qq && touch /var/lib/cowfs-apt-updated 2>/dev/null || true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# npm ci only when the lockfile changed since the last install.
stamp=node_modules/.cowfs-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

# Build when any source is newer than the last build.
if [ ! -f dist/.built ] || [ -n "$(find src bench tsconfig.json -newer dist/.built -print -quit 2>/dev/null)" ]; then
  echo "setup: building" >&2
  npx tsc -p tsconfig.json
  touch dist/.built
fi
