#!/usr/bin/env bash
# Runs the same etcdctl session with etcd's own etcdctl (ETCDCTL_API=2, from Debian's
# etcd-client) and with ours, each against a fresh single-member etcd of this project, and
# diffs stdout, stderr and exit statuses. A development aid: tests never need the reference.
#   scripts/compare-etcdctl.sh [path/to/our/etcdctl] [path/to/etcd]
set -u
OURS=${1:-target/debug/etcdctl}
ETCD=${2:-target/debug/etcd}
REF=${REF_ETCDCTL:-/usr/bin/etcdctl}
PORT=${PORT:-5479}
WORK=$(mktemp -d)
trap 'pkill -f "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

session() {
  local ctl=$1 out=$2
  rm -rf "$WORK/data"
  "$ETCD" --name n1 --data-dir "$WORK/data" \
    --listen-client-urls http://127.0.0.1:$PORT --advertise-client-urls http://127.0.0.1:$PORT \
    --listen-peer-urls http://127.0.0.1:$((PORT+1)) --initial-advertise-peer-urls http://127.0.0.1:$((PORT+1)) \
    >"$WORK/etcd.log" 2>&1 &
  local pid=$!
  for _ in $(seq 50); do curl -sf http://127.0.0.1:$PORT/v2/members | grep -q clientURLs.*http && break; sleep 0.1; done
  local E="$ctl --endpoints http://127.0.0.1:$PORT"
  {
    while IFS= read -r line; do
      [ -z "$line" ] && continue
      echo "\$ etcdctl $line"
      eval "ETCDCTL_API=2 $E $line" >"$WORK/o" 2>"$WORK/e" </dev/null
      echo "[exit $?]"; echo "--- stdout"; cat "$WORK/o"; echo "--- stderr"; cat "$WORK/e"
    done <<'CMDS'
set /foo bar
-o extended set /foo baz
-o json set /foo qux
get /foo
-o extended get /foo
-o json get /foo
get /nope
-o json get /nope
-o extended get /nope
mk /foo x
mk /new v
-o json mk /new2 v
mkdir /dir
-o extended mkdir /dir2
-o json mkdir /dir3
mkdir /dir
get /dir
ls
ls -p
ls --recursive
ls --sort /
-o extended ls /
-o json ls /dir
ls /nope
ls /foo
rm /foo
-o extended rm /new
-o json rm /new2
rmdir /dir
rm /dir2
rm --dir /dir2
-o extended rm --dir /dir3
rm /nothing
rmdir /nothing
update /nope v
update /si v
updatedir /nope
setdir /sd
setdir /sd
-o extended setdir /sd2
updatedir /sd2
-o extended updatedir --ttl 100 /sd2
set
get
mk
mkdir
rm
rmdir
update
updatedir
setdir
watch
exec-watch
exec-watch /k
mk --in-order /q job1
-o extended set --ttl 100 /t v
set /si stdinval
get /si
set --swap-with-value wrong /si x
set --swap-with-index 1 /si x
set --swap-with-value stdinval /si y
rm --with-value nope /si
rm --with-index 1 /si
mkdir /d/e/f
rm /d
rm --recursive /d
get /si extra args
-o bogus get /si
--no-sync get /si
--total-timeout 1 get /si
--timeout x get /si
-C http://127.0.0.1:1 get /si
--no-sync -C http://127.0.0.1:1 get /si
--endpoints http://127.0.0.1:1,http://127.0.0.1:2 get /si
set /a/b 1
set /a/c 2
-o json ls --recursive --sort /a
get /a/
member list
member list extra
member add
member add onlyname
member remove
member remove abc
member remove n1
member update
member update abc http://127.0.0.1:1
cluster-health
watch --after-index 1 /foo
-o extended watch --after-index 1 /foo
watch --after-index 1 --recursive /a
-o json watch --after-index 1 /si
watch --after-index 1 /si
frobnicate
user list
CMDS
  } >"$out"
  kill $pid; wait $pid 2>/dev/null
}

session "$REF" "$WORK/ref.txt"
session "$OURS" "$WORK/ours.txt"
diff -u "$WORK/ref.txt" "$WORK/ours.txt" && echo "identical"
