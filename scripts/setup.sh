#!/usr/bin/env bash
# Idempotent set-up for a fresh clone on a fresh machine: system packages,
# node_modules pinned by package-lock.json, then the TypeScript build.
# Every step is skipped when what it produces is already there and current.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -e /usr/lib/x86_64-linux-gnu/libfuse.so.2 ] || ldconfig -p 2>/dev/null | grep -q 'libfuse.so.2 ' || need_apt+=(libfuse2)
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
# The native libfuse 3 adapter (native/) builds against Debian's libfuse3-dev.
[ -e /usr/include/fuse3/fuse_lowlevel.h ] || need_apt+=(libfuse3-dev)
# … and hashes what it writes itself with Debian's xxhash (header only).
[ -e /usr/include/xxhash.h ] || need_apt+=(libxxhash-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# What the tests drive mounts with, besides coreutils and util-linux.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v git >/dev/null 2>&1 || need_apt+=(git)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian" >&2
  apt=(apt-get -qq -o Acquire::Retries=3)
  apt_install() { DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y "${need_apt[@]}" >/dev/null; }
  if [ ! -f /var/lib/cowfs-apt-updated ]; then
    "${apt[@]}" update && touch /var/lib/cowfs-apt-updated 2>/dev/null || true
  fi
  # Lists updated long ago may name versions the mirror no longer has: update once more and retry.
  apt_install || { "${apt[@]}" update && apt_install; }
fi

# npm ci only when the lockfile changed since the last install.
stamp=node_modules/.cowfs-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

# The native addons, from source with the node-gyp npm bundles, against Node's own headers:
# native/ (the libfuse 3 adapter) and native/fuse2/ (fuse-native's addon for the libfuse 2 adapter).
gyp="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")/node_modules/node-gyp/bin/node-gyp.js"
nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
[ -f "$nodedir/include/node/node_api.h" ] || nodedir="$(npm config get nodedir 2>/dev/null || true)"
# fuse2 compiles node_modules' fuse-native.c, whose files npm dates 1985: the npm ci stamp stands for them.
for addon in native/build/Release/cowfs_fuse.node native/fuse2/build/Release/fuse_native.node; do
  dir="${addon%%/build/*}"
  deps="$dir"; [ "$dir" = native/fuse2 ] && deps="$dir $stamp"
  # shellcheck disable=SC2086 # $deps is a list of paths
  if [ ! -f "$addon" ] || [ -n "$(find $deps -maxdepth 1 -newer "$addon" -type f -print -quit)" ]; then
    echo "setup: building $dir" >&2
    (cd "$dir" && node "$gyp" rebuild --nodedir="$nodedir" --loglevel=error >/dev/null)
  fi
done

# Build when any source is newer than the last build.
if [ ! -f dist/.built ] || [ -n "$(find src bench tsconfig.json -newer dist/.built -print -quit 2>/dev/null)" ]; then
  echo "setup: building" >&2
  npx tsc -p tsconfig.json
  touch dist/.built
fi
