#!/usr/bin/env bash
# End-to-end tests of the `shmpool` tool (ctest label "tool").
# Usage: tool_test.sh CASE SHMPOOL_CLI HELPER
# Each case works in its own temporary directory and exits non-zero on the
# first expectation that fails, saying which.
set -u
case_name=$1 cli=$2 helper=$3
dir=$(mktemp -d "${TMPDIR:-/tmp}/shmpool-tool-test.XXXXXX")
held_pid=""
cleanup() {
  [ -n "$held_pid" ] && kill -9 "$held_pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
cd "$dir" || exit 1

fail() { echo "FAIL [$case_name]: $*" >&2; exit 1; }
# run EXPECTED_STATUS CMD... : runs the tool, keeps stdout in $out and stderr in $err.
run() {
  local want=$1; shift
  "$cli" "$@" >out.txt 2>err.txt
  local got=$?
  out=$(cat out.txt) err=$(cat err.txt)
  if [ "$got" -ne "$want" ]; then
    fail "shmpool $* exited $got, expected $want; stdout: $out; stderr: $err"
  fi
}
contains() { grep -qF -- "$2" <<<"$1" || fail "expected '$2' in: $1"; }
lacks() { ! grep -qF -- "$2" <<<"$1" || fail "did not expect '$2' in: $1"; }
one_line() { [ "$(printf '%s\n' "$1" | wc -l)" -eq 1 ] || fail "expected one line on stderr, got: $1"; }
poke() { printf "$2" | dd of=p.shm bs=1 seek="$1" conv=notrunc status=none; }  # poke OFFSET '\xNN...'

case "$case_name" in
help)
  run 0 --help; contains "$out" "recover FILE"
  for c in info stats slots check recover create; do
    run 0 "$c" --help; contains "$out" "usage: shmpool $c"
  done
  run 0 --version; contains "$out" "shmpool "
  ;;
create_info)
  run 0 create p.shm --variant str --capacity 70 --max-len 20
  contains "$out" "created p.shm: str pool, capacity 70"
  run 0 info p.shm
  contains "$out" "variant:        str"; contains "$out" "capacity:       70"
  contains "$out" "elem_size:      24"; contains "$out" "max_len:        20"
  contains "$out" "format:         version 2"; contains "$out" "mapping size:   4096 bytes"
  run 1 create p.shm --variant str --capacity 70 --max-len 20; contains "$err" "already exists"; one_line "$err"
  run 0 create r.shm --variant raw --capacity 5 --elem-size 100
  run 0 info r.shm; contains "$out" "variant:        raw"; contains "$out" "elem_size:      100"
  for v in i64 i32 f64; do run 0 create "$v.shm" --variant "$v" --capacity 3; run 0 info "$v.shm"; contains "$out" "variant:        $v"; done
  run 1 create big.shm --variant i64 --capacity 0; contains "$err" "invalid parameters"; one_line "$err"
  ;;
stats)
  run 0 create p.shm --variant i64 --capacity 10
  "$helper" die p.shm >/dev/null || fail "helper die failed"
  run 0 stats p.shm
  contains "$out" "capacity    10"; contains "$out" "used        1"; contains "$out" "allocs      1"
  run 0 stats p.shm --json
  contains "$out" '"capacity": 10'; contains "$out" '"used": 1'; contains "$out" '"recoveries": 0'
  if command -v python3 >/dev/null; then
    python3 -c 'import json,sys; json.loads(sys.argv[1])' "$out" || fail "--json is not JSON: $out"
  fi
  run 0 stats p.shm --watch 0.05 --count 3
  [ "$(grep -c '^ *10 ' <<<"$out")" -eq 3 ] || fail "--watch --count 3 printed: $out"
  run 0 stats p.shm --json --watch 0.05 --count 2
  [ "$(grep -c '"used": 1' <<<"$out")" -eq 2 ] || fail "--json --watch printed: $out"
  run 64 stats p.shm --watch nope; one_line "$err"
  ;;
check_healthy)
  run 0 create p.shm --variant raw --capacity 130 --elem-size 16
  run 0 check p.shm; contains "$out" "healthy"
  "$helper" die p.shm >/dev/null 2>&1  # raw pool: the helper's i64 attach must refuse
  [ $? -ne 0 ] || fail "helper attached an i64 handle to a raw pool"
  run 0 check p.shm
  ;;
bad_magic)
  run 0 create p.shm --variant i64 --capacity 10
  poke 0 'XXXXXXXX'
  for c in info stats slots check recover; do
    run 2 "$c" p.shm; contains "$err" "not a shmpool pool"; one_line "$err"
  done
  printf 'tiny' >tiny; run 2 check tiny; one_line "$err"
  run 2 check /nonexistent/pool; one_line "$err"
  # Our magic but a damaged header (capacity changed, checksum stale): inconsistent.
  run 0 create q.shm --variant i64 --capacity 10
  printf '\x0b' | dd of=q.shm bs=1 seek=16 conv=notrunc status=none
  run 1 check q.shm; contains "$out" "header checksum mismatch"
  ;;
orphan_bit)
  run 0 create p.shm --variant i64 --capacity 100
  poke 320 '\x20'   # bitmap word 0, bit 5: set over a free slot
  run 1 check p.shm; contains "$out" "slot 5: bitmap bit set but the slot is free"
  cp p.shm snapshot.shm
  run 1 check p.shm; cmp -s p.shm snapshot.shm || fail "check wrote to the pool"
  run 0 recover p.shm; contains "$out" "repaired slot 5"
  run 0 check p.shm; contains "$out" "healthy"
  poke 327 '\xf0'   # top byte of bitmap word 0: bits of the free slots 60..63
  run 1 check p.shm; contains "$out" "slot 63: bitmap bit set but the slot is free"
  run 0 recover p.shm; run 0 check p.shm
  run 0 create t.shm --variant i64 --capacity 10
  printf '\x80' | dd of=t.shm bs=1 seek=327 conv=notrunc status=none   # bit 63 >= capacity 10
  run 1 check t.shm; contains "$out" "bits set beyond capacity"
  ;;
dead_owner)
  run 0 create p.shm --variant i64 --capacity 100
  read -r slot pid < <("$helper" die p.shm) || fail "helper die failed"
  run 0 slots p.shm
  grep -qE "^$slot +allocated +$pid +dead " <<<"$out" || fail "slots does not show slot $slot dead: $out"
  contains "$out" "1 held by dead processes"
  run 0 check p.shm   # a dead owner's slot is consistent, only stale
  run 0 recover p.shm; contains "$out" "freed slot $slot (allocated by pid $pid, dead)"; contains "$out" "recovered 1 slot(s)"
  run 0 slots p.shm; contains "$out" "no slots taken"
  run 0 stats p.shm --json; contains "$out" '"recoveries": 1'; contains "$out" '"used": 0'
  run 0 recover p.shm; contains "$out" "recovered 0 slot(s)"
  ;;
live_owner)
  run 0 create p.shm --variant i64 --capacity 100
  "$helper" hold p.shm >held.txt &
  held_pid=$!
  for _ in $(seq 100); do [ -s held.txt ] && break; sleep 0.05; done
  read -r slot pid <held.txt || fail "helper hold printed nothing"
  [ "$pid" = "$held_pid" ] || fail "helper pid $pid != $held_pid"
  run 0 slots p.shm
  grep -qE "^$slot +allocated +$pid +alive +shmpool_tool_te" <<<"$out" || fail "slots does not show slot $slot alive: $out"
  run 0 recover p.shm; contains "$out" "recovered 0 slot(s)"   # a live owner keeps its slot
  kill -9 "$held_pid"; wait "$held_pid" 2>/dev/null; held_pid=""
  run 0 slots p.shm; grep -qE "^$slot +allocated +$pid +dead +-" <<<"$out" || fail "slots does not show slot $slot dead: $out"
  run 0 recover p.shm; contains "$out" "freed slot $slot (allocated by pid $pid, dead)"
  run 0 check p.shm; contains "$out" "0 in use"
  ;;
exec_owner)
  # exec keeps pid and start time: the slot stays held (PROTOCOL.md, "exec")
  # until an operator releases it with recover --owner.
  run 0 create p.shm --variant i64 --capacity 100
  "$helper" hold-exec p.shm >held.txt &
  held_pid=$!
  for _ in $(seq 100); do [ "$(cat /proc/$held_pid/comm 2>/dev/null)" = sleep ] && [ -s held.txt ] && break; sleep 0.05; done
  read -r slot pid <held.txt || fail "helper hold-exec printed nothing"
  [ "$(cat /proc/$pid/comm)" = sleep ] || fail "helper did not exec"
  run 0 slots p.shm
  grep -qE "^$slot +allocated +$pid +alive +sleep" <<<"$out" || fail "slots does not show slot $slot alive under sleep: $out"
  run 0 recover p.shm; contains "$out" "recovered 0 slot(s)"
  run 64 recover p.shm --owner 0; contains "$err" "--owner must be a pid"; one_line "$err"
  run 64 recover p.shm --owner x; one_line "$err"
  run 0 recover p.shm --owner "$pid"
  contains "$out" "released slot $slot (allocated by pid $pid, alive)"; contains "$out" "released 1 slot(s) of pid $pid"
  run 0 slots p.shm; contains "$out" "no slots taken"
  run 0 stats p.shm --json; contains "$out" '"recoveries": 1'
  run 0 recover p.shm --owner "$pid"; contains "$out" "released 0 slot(s)"
  ;;
hidden_owner)
  # An owner /proc hides (hidepid=2, another user) is "unknown", never "dead".
  run 0 create p.shm --variant i64 --capacity 100
  "$helper" hold p.shm >held.txt &
  held_pid=$!
  for _ in $(seq 100); do [ -s held.txt ] && break; sleep 0.05; done
  read -r slot pid <held.txt || fail "helper hold printed nothing"
  chmod 755 "$dir"; chmod 644 p.shm
  as_nobody() {
    unshare -m sh -c 'mount -t proc -o hidepid=2 proc /proc && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"' sh "$@"
  }
  as_nobody true 2>/dev/null || { echo "SKIP: needs unshare -m, a hidepid /proc and setpriv (root)"; exit 77; }
  as_nobody "$cli" slots p.shm >out.txt 2>err.txt || fail "slots as nobody failed: $(cat err.txt)"
  out=$(cat out.txt)
  grep -qE "^$slot +allocated +$pid +unknown +-" <<<"$out" || fail "slots does not show slot $slot unknown: $out"
  contains "$out" "0 held by dead processes"
  ;;
usage_errors)
  run 64; run 64 frobnicate p.shm; one_line "$err"
  run 64 info; one_line "$err"; run 64 info a b; one_line "$err"
  run 64 info p.shm --bogus; contains "$err" "unknown option --bogus"; one_line "$err"
  run 64 create p.shm --variant i64; contains "$err" "--capacity"
  run 64 create p.shm --variant wat --capacity 3; contains "$err" "unknown variant"
  run 64 create p.shm --variant i64 --capacity 3 --elem-size 8; contains "$err" "raw pools only"
  run 64 create p.shm --variant str --capacity 3; contains "$err" "--max-len"
  run 64 create p.shm --variant i64 --capacity -3; one_line "$err"
  run 64 stats p.shm --count 3; one_line "$err"
  [ ! -e p.shm ] || fail "a failed create left p.shm behind"
  ;;
*)
  fail "unknown case"
  ;;
esac
echo "PASS [$case_name]"
