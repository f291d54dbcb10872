#!/usr/bin/env bash
# The main job: a sample workspace, a daemon, a root agent and a child,
# copy-on-write, commit, what the child sees, the cascade of a commit into
# the child (a clean three-way merge, then a conflict and its resolution),
# the event log, and replay.
# Everything it mounts or starts is torn down on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
COWFS="node $PWD/bin/cowfs.js"

root=$(mktemp -d /tmp/cowfs-demo-XXXXXX)
ws=$root/project
daemon_pid=
cleanup() {
  set +e
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  for m in "$root"/mnt/*; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
  rm -rf "$root"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; eval "$@"; }

step "A sample workspace: a git repo with node_modules and an .env git ignores"
mkdir -p "$ws/src" "$ws/node_modules/greet" "$root/mnt/alice" "$root/mnt/bob"
cat > "$ws/src/app.js" <<'JS'
const greet = require('greet');
const who = 'world';

// print the greeting
console.log(greet(who));
JS
echo "module.exports = (who) => 'hello, ' + who;" > "$ws/node_modules/greet/index.js"
echo '{"name":"greet","main":"index.js"}' > "$ws/node_modules/greet/package.json"
printf 'node_modules/\n.env\n' > "$ws/.gitignore"
echo 'API_KEY=demo' > "$ws/.env"
git -C "$ws" init -q -b main && git -C "$ws" add -A && git -C "$ws" -c user.email=demo@cowfs -c user.name=demo commit -qm initial
show "ls -A $ws"

step "Start the daemon of that workspace"
node bin/cowfs.js daemon --workspace "$ws" >"$root/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$ws/.cowfs/daemon.sock" ] && $COWFS status --workspace "$ws" >/dev/null 2>&1 && break; sleep 0.1; done
cd "$ws"
show "$COWFS status"

step "Mount agent alice over the workspace: instant, nothing copied, everything inherited"
show "$COWFS mount alice $root/mnt/alice"
show "(cd $root/mnt/alice && node src/app.js && cat .env && git status --short)"

step "alice writes: copy-on-write, the workspace and other agents never see it"
show "(cd $root/mnt/alice && sed -i 's/world/cowfs/' src/app.js && echo 'new file' > NOTES.md && node src/app.js)"
show "cat $ws/src/app.js | head -2"

step "alice commits; bob is created as her child and sees her commit"
show "(cd $root/mnt/alice && $COWFS commit -m 'greet cowfs')"
show "(cd $root/mnt/alice && echo 'not committed yet' > draft.txt)"
show "$COWFS mount bob $root/mnt/bob --parent alice"
show "(cd $root/mnt/bob && node src/app.js && cat NOTES.md && ls)"
show "$COWFS ls"

step "Cascade: alice commits again; bob, who changed another line of that file, gets both at once"
show "(cd $root/mnt/bob && sed -i 's/console.log/console.info/' src/app.js)"
show "(cd $root/mnt/alice && sed -i 's/cowfs/cowfs agents/' src/app.js && $COWFS commit -m 'greet cowfs agents')"
show "cat $root/mnt/bob/src/app.js"

step "A collision: both change the same line; bob gets git's conflict markers, then resolves"
show "(cd $root/mnt/bob && sed -i 's/cowfs agents/bob/' src/app.js)"
show "(cd $root/mnt/alice && sed -i 's/cowfs agents/alice/' src/app.js && $COWFS commit -m 'greet alice')"
show "cat $root/mnt/bob/src/app.js"
show "$COWFS conflicts bob"
show "$COWFS resolve bob src/app.js --theirs && cat $root/mnt/bob/src/app.js"

step "The event log: every put, delete, move and commit, in order"
show "$COWFS log"

step "Replay: alice's tree rebuilt from the log alone, now and as it was at her first commit"
show "$COWFS replay alice --out $root/replay-now && diff -r $root/replay-now $root/mnt/alice && echo 'replay = live tree'"
seq=$($COWFS log alice --json | node -e "console.log(JSON.parse(require('fs').readFileSync(0,'utf8')).find(e => e.type === 'AGENT_COMMIT_CREATED').seq)")
show "$COWFS replay alice --to $seq --out $root/replay-then"
show "grep who $root/replay-then/src/app.js $root/mnt/alice/src/app.js"
show "test ! -e $root/replay-then/draft.txt && echo 'draft.txt (written after that commit) is not in the tree of then'"

step "Unmount and stop; the workspace on disk is as it was"
show "$COWFS unmount bob && $COWFS unmount alice"
show "git -C $ws status --short && echo '(clean)'"
