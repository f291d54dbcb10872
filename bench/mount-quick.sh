#!/usr/bin/env bash
# Quick warm comparison: native disk vs a cowfs agent mount (libfuse2), on this
# repo's node_modules and src as a git workspace, in the same run.
# Run: npm run bench:mount. The full comparison with the peers is npm run bench.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
R=$(mktemp -d /tmp/cowfs-test-qb-XXXX);  # the test prefix: a leftover mount gets swept
 WS=$R/ws; M=$R/mnt/a; mkdir -p $WS $M
cp -a $ROOT/node_modules $WS/ && cp -a $ROOT/src $WS/ && (cd $WS && git init -q && git add -A && git -c user.email=b@b -c user.name=b commit -qm x)
node $ROOT/bin/cowfs.js daemon --workspace $WS > $R/d.log 2>&1 & DP=$!
# set +e: the daemon ends by SIGTERM, so wait's status is not 0 and must not stop the cleanup.
trap 'set +e; kill $DP 2>/dev/null; wait $DP 2>/dev/null; mountpoint -q $M && umount -l $M; rm -rf $R' EXIT
for i in $(seq 50); do [ -S $WS/.cowfs/daemon.sock ] && break; sleep 0.1; done; sleep 0.5
node $ROOT/bin/cowfs.js --workspace $WS mount a $M >/dev/null
t() { local s=$(date +%s%N); eval "$1" >/dev/null 2>&1; echo $(( ($(date +%s%N)-s)/1000000 )); }
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
row() { local name=$1 cmd=$2; eval "(cd $WS && $cmd)" >/dev/null 2>&1; eval "(cd $M && $cmd)" >/dev/null 2>&1
  local n=$(for i in 1 2 3 4 5; do t "cd $WS && $cmd"; done | med); local c=$(for i in 1 2 3 4 5; do t "cd $M && $cmd"; done | med)
  awk -v name="$name" -v n="$n" -v c="$c" 'BEGIN { printf "| %s | %s ms | %s ms | %.2f |\n", name, n, c, c / (n > 0 ? n : 1) }'; }
echo "| workload (warm, median of 5) | native | cowfs (libfuse2) | ratio |"; echo "|---|--:|--:|--:|"
row "find -type f (1,963 files)" "find . -type f | wc -l"
row "read every file (tar)" "tar cf /dev/null ."
row "git status" "git status --porcelain"
row "node require of 5 packages" "node -e \"for (const p of ['lmdb','ws','pino','commander','diff']) require(p)\""
row "dd write 1 GiB + fsync" "dd if=/dev/zero of=big bs=1M count=1024 conv=fsync status=none; rm -f big"
row "dd write then read back 1 GiB" "dd if=/dev/zero of=big2 bs=1M count=1024 status=none; cat big2 > /dev/null; rm -f big2"
