#!/usr/bin/env bash
# Small-file unpack and pack through a cowfs agent mount (libfuse 3) vs the native disk:
# tar -x of 2,000 small files into a fresh directory, and a warm tar -c | cat of this
# repo's node_modules and src (in a mount of a workspace holding them). Median of 5 each. Run: bash bench/tar-quick.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
R=$(mktemp -d /tmp/cowfs-test-tq-XXXX)  # the test prefix: a leftover mount gets swept
WS=$R/ws; M=$R/mnt/a; mkdir -p $WS $M $R/files $R/native
mkdir $WS/node_modules && cp -a "$(readlink -f $ROOT/node_modules)"/. $WS/node_modules/ && cp -a $ROOT/src $WS/ && (cd $WS && git init -q && git add -A && git -c user.email=b@b -c user.name=b commit -qm x)
for d in $(seq 40); do mkdir -p $R/files/d$d; for f in $(seq 50); do echo "file $d $f" > $R/files/d$d/f$f.txt; done; done
tar -cf $R/small.tar -C $R/files .
node $ROOT/bin/cowfs.js daemon --workspace $WS --fuse libfuse3 > $R/d.log 2>&1 & DP=$!
trap 'set +e; kill $DP 2>/dev/null; wait $DP 2>/dev/null; mountpoint -q $M && umount -l $M; rm -rf $R' EXIT
for i in $(seq 100); do [ -S $WS/.cowfs/daemon.sock ] && break; sleep 0.1; done; sleep 0.5
node $ROOT/bin/cowfs.js --workspace $WS mount a $M >/dev/null
t() { local s=$(date +%s%N); eval "$1" >/dev/null 2>&1; echo $(( ($(date +%s%N)-s)/1000000 )); }
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
all() { sort -n | paste -sd' '; }
untar() { local base=$1; for i in 1 2 3 4 5; do t "mkdir $base/x$i && tar -xf $R/small.tar -C $base/x$i"; done; }
pack() { local dir=$1; (cd $dir && tar -c node_modules src | cat >/dev/null); for i in 1 2 3 4 5; do t "cd $dir && tar -c node_modules src | cat"; done; }
n=$(untar $R/native | all); c=$(untar $M | all)
echo "tar -x of 2,000 files (ms, 5 runs sorted): native $n | cowfs $c"
n=$(pack $WS | all); c=$(pack $M | all)
echo "warm tar -c node_modules src | cat of $(cd $WS && find node_modules src -type f | wc -l) files (ms): native $n | cowfs $c"
