#!/usr/bin/env bash
# End-to-end tests of the `shmpool` tool (ctest label "tool").
# Usage: tool_test.sh CASE SHMPOOL_CLI HELPER TOOLS_BINARY_DIR
# Each case works in its own temporary directory and exits non-zero on the
# first expectation that fails, saying which.
set -u
case_name=$1 cli=$2 helper=$3 tools_bin=${4:-}
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
# json_check PYTHON_EXPRESSION: parses $out as JSON (doc) and asserts the expression.
json_check() {
  python3 - "$1" "$out" <<'PY' || fail "JSON check '$1' failed on: $out"
import json, sys
doc = json.loads(sys.argv[2])
sys.exit(0 if eval(sys.argv[1]) else 1)
PY
}
# json_bytes_check PYTHON_EXPRESSION: parses out.txt as strict UTF-8 JSON
# (doc), every line of it (docs), and asserts the expression; h(bytes) is hex.
json_bytes_check() {
  python3 - "$1" <<'PY' || fail "JSON check '$1' failed on: $(cat out.txt)"
import json, sys
raw = open("out.txt", "rb").read()
try:
    docs = [json.loads(line.decode("utf-8")) for line in raw.splitlines()]
except (UnicodeDecodeError, ValueError) as e:
    print("not strict UTF-8 JSON: %s" % e, file=sys.stderr)
    sys.exit(1)
doc = docs[0]
h = lambda b: b.hex()
sys.exit(0 if eval(sys.argv[1]) else 1)
PY
}
one_line() { [ "$(printf '%s\n' "$1" | wc -l)" -eq 1 ] || fail "expected one line on stderr, got: $1"; }
poke() { printf "$2" | dd of=p.shm bs=1 seek="$1" conv=notrunc status=none; }  # poke OFFSET '\xNN...'

case "$case_name" in
help)
  run 0 --help; contains "$out" "recover FILE"
  for c in info stats slots check list recover create; do
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
  contains "$out" "format:         version 3"; contains "$out" "mapping size:   4096 bytes"
  run 5 create p.shm --variant str --capacity 70 --max-len 20; contains "$err" "already exists"; one_line "$err"
  run 0 create r.shm --variant raw --capacity 5 --elem-size 100
  run 0 info r.shm; contains "$out" "variant:        raw"; contains "$out" "elem_size:      100"
  for v in i64 i32 f64; do run 0 create "$v.shm" --variant "$v" --capacity 3; run 0 info "$v.shm"; contains "$out" "variant:        $v"; done
  run 64 create big.shm --variant i64 --capacity 0; contains "$err" "capacity"; one_line "$err"
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
stale_mark)
  run 0 create p.shm --variant i64 --capacity 100
  poke 320 '\x01'   # group 0 (slots 0..63) marked full over free slots
  run 1 check p.shm; contains "$out" "group 0 is marked full but slot 0 is free"
  cp p.shm snapshot.shm
  run 1 check p.shm; cmp -s p.shm snapshot.shm || fail "check wrote to the pool"
  run 0 recover p.shm; contains "$out" "cleared the mark of group 0"
  run 0 check p.shm; contains "$out" "healthy"
  poke 384 '\x07'   # group 1: neither 0 nor full
  run 1 check p.shm; contains "$out" "group 1 has a malformed mark"
  run 0 recover p.shm; run 0 check p.shm
  ;;
dead_owner)
  run 0 create p.shm --variant i64 --capacity 100
  read -r slot pid < <("$helper" die p.shm) || fail "helper die failed"
  run 0 slots p.shm
  grep -qE "^$slot +allocated +$pid +dead " <<<"$out" || fail "slots does not show slot $slot dead: $out"
  contains "$out" "1 held by dead processes"
  run 3 check p.shm   # a dead owner's slot is consistent, but leaked until recovered
  run 0 check p.shm --consistency-only
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
  # check cannot vouch for an owner it cannot judge: exit 4, the slot named.
  as_nobody "$cli" check p.shm >out.txt 2>err.txt; got=$?
  out=$(cat out.txt)
  [ "$got" -eq 4 ] || fail "check as nobody exited $got, expected 4: $out $(cat err.txt)"
  contains "$out" "slot $slot: allocated by pid $pid, unknown"
  as_nobody "$cli" check p.shm --json >out.txt 2>err.txt
  out=$(cat out.txt); json_check "doc['verdict'] == 'unknown-owners' and doc['exit'] == 4 and doc['unknown_owner_slots'][0]['pid'] == $pid"
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
fifo_never_blocks)
  # Opening a FIFO O_RDONLY waits for a writer; the tool must refuse it at once.
  mkfifo f
  for c in info stats slots check recover; do
    timeout 10 "$cli" "$c" f >out.txt 2>err.txt; got=$?
    [ "$got" -ne 124 ] || fail "shmpool $c on a FIFO blocked"
    [ "$got" -eq 2 ] || fail "shmpool $c on a FIFO exited $got, expected 2: $(cat err.txt)"
    contains "$(cat err.txt)" "not a regular file"
  done
  timeout 10 "$cli" recover f --owner 1 >/dev/null 2>&1; got=$?
  [ "$got" -eq 2 ] || fail "shmpool recover --owner on a FIFO exited $got, expected 2"
  ;;
check_owners_exit_status)
  # A pool whose every slot is held by dead processes is not healthy.
  run 0 create p.shm --variant i64 --capacity 10
  read -r s1 p1 < <("$helper" die p.shm) || fail "helper die failed"
  read -r s2 p2 < <("$helper" die p.shm) || fail "helper die failed"
  run 3 check p.shm
  contains "$out" "2 slot(s) held by dead processes"
  contains "$out" "slot $s1: allocated by pid $p1, dead"; contains "$out" "slot $s2: allocated by pid $p2, dead"
  lacks "$out" "healthy"
  run 3 check p.shm --json
  json_check "doc['verdict'] == 'dead-owners' and doc['exit'] == 3 and sorted(s['pid'] for s in doc['dead_owner_slots']) == sorted([$p1, $p2])"
  run 0 check p.shm --consistency-only; contains "$out" "owners not judged"
  # Inconsistency outranks dead owners.
  cp p.shm bad.shm; printf '\x00\x00\x00\x00\x00\x00\x00\x80' | dd of=bad.shm bs=1 seek=320 conv=notrunc status=none
  run 1 check bad.shm
  run 0 recover p.shm; run 0 check p.shm; contains "$out" "healthy"
  ;;
json_schemas)
  command -v python3 >/dev/null || { echo "SKIP: needs python3"; exit 77; }
  run 0 create p.shm --variant str --capacity 10 --max-len 20
  "$helper" die p.shm >/dev/null 2>&1   # str pool: the helper refuses; owners come from the i64 pool below
  run 0 create q.shm --variant i64 --capacity 10
  read -r slot pid < <("$helper" die q.shm) || fail "helper die failed"
  run 0 info p.shm --json
  json_check "doc['schema'] == 'shmpool-info/1' and doc['file'] == 'p.shm' and doc['variant'] == 'str' and doc['capacity'] == 10 and doc['max_len'] == 20 and doc['format_version'] == 3"
  run 0 info q.shm --json; json_check "doc['max_len'] is None and doc['elem_size'] == 8"
  run 0 stats q.shm --json
  json_check "doc['schema'] == 'shmpool-stats/1' and doc['used'] == 1 and doc['allocs'] == 1 and doc['time'].endswith('Z')"
  run 0 slots q.shm --json
  json_check "doc['schema'] == 'shmpool-slots/1' and doc['taken'] == 1 and doc['dead'] == 1 and doc['slots'] == [{'slot': $slot, 'state': 'allocated', 'pid': $pid, 'identity': doc['slots'][0]['identity'], 'owner': 'dead', 'command': None, 'allocs': 1}]"
  run 0 check p.shm --json
  json_check "doc['schema'] == 'shmpool-check/1' and doc['verdict'] == 'healthy' and doc['exit'] == 0 and doc['problems'] == [] and doc['variant'] == 'str'"
  # --watch --json: JSON Lines, each line a whole object with its own time.
  run 0 stats q.shm --json --watch 0.05 --count 3
  python3 - "$out" <<'PY' || fail "--watch --json is not JSON Lines with a time per line: $out"
import json, re, sys
lines = sys.argv[1].split("\n")
assert len(lines) == 3, lines
for line in lines:
    doc = json.loads(line)
    assert doc["schema"] == "shmpool-stats/1" and doc["used"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["time"]), doc["time"]
PY
  ;;
exit_status_per_cause)
  # One status per cause, whatever the subcommand (shmpool --help, "Exit status").
  for c in info stats slots check recover; do
    run 2 "$c" missing.shm; contains "$err" "No such file"; one_line "$err"
  done
  run 0 create d.shm --variant i64 --capacity 10
  printf '\x0b' | dd of=d.shm bs=1 seek=16 conv=notrunc status=none   # our magic, stale checksum
  for c in info stats slots check; do run 1 "$c" d.shm; done
  run 64 create z.shm --variant i64 --capacity 0; one_line "$err"
  run 64 create z.shm --variant raw --capacity 3 --elem-size 0; one_line "$err"
  [ ! -e z.shm ] || fail "a rejected create left z.shm behind"
  run 0 create e.shm --variant i64 --capacity 3
  run 5 create e.shm --variant i64 --capacity 3; contains "$err" "already exists"
  timeout 10 "$cli" stats e.shm --watch 0.01 --count 0 >out.txt 2>err.txt; got=$?
  [ "$got" -eq 64 ] || fail "--count 0 exited $got, expected 64 (124: it watched forever)"
  contains "$(cat err.txt)" "--count must be at least 1"
  run 0 --help; contains "$out" "64  usage error"; contains "$out" "3   check: slots are held by processes"
  ;;
end_of_options)
  # -- ends the options (getopt_long): a file named like an option is an operand.
  run 0 create --variant i64 --capacity 3 -- -x.shm; contains "$out" "created -x.shm"
  run 0 info -- -x.shm; contains "$out" "variant:        i64"
  run 64 info -x.shm; contains "$err" "unknown option -x"; one_line "$err"
  run 0 create --capacity=4 --variant=i32 y.shm          # options before the operand, --name=value
  run 0 info --json y.shm; contains "$out" '"capacity": 4'
  run 0 create w.shm --var i64 --cap 5                   # unambiguous prefixes, as getopt_long allows
  run 0 info w.shm; contains "$out" "capacity:       5"
  run 64 info w.shm --json=yes; contains "$err" "--json takes no value"; one_line "$err"
  run 64 stats w.shm --watch; contains "$err" "--watch needs a value"; one_line "$err"
  ;;
list_dir)
  mkdir pools
  run 0 create pools/a.shm --variant i64 --capacity 10
  read -r _ _ < <("$helper" die pools/a.shm) || fail "helper die failed"
  run 0 create pools/b.shm --variant str --capacity 7 --max-len 8
  run 0 create pools/damaged.shm --variant i64 --capacity 10
  printf '\x0b' | dd of=pools/damaged.shm bs=1 seek=16 conv=notrunc status=none
  run 0 create pools/secret.shm --variant f64 --capacity 3
  echo "not a pool, long enough to hold a header if it were one.............................." >pools/text
  printf 'tiny' >pools/tiny; mkfifo pools/fifo; mkdir pools/sub; ln -s a.shm pools/link
  timeout 20 "$cli" list pools >out.txt 2>err.txt; got=$?
  out=$(cat out.txt)
  [ "$got" -eq 0 ] || fail "list exited $got: $out $(cat err.txt)"
  grep -qE '^a\.shm +i64 +10 +1 +1 +0 +ok$' <<<"$out" || fail "list does not show a.shm with one dead-owner slot: $out"
  grep -qE '^b\.shm +str +7 +0 +0 +0 +ok$' <<<"$out" || fail "list does not show b.shm: $out"
  grep -qE '^damaged\.shm .*damaged: .*checksum' <<<"$out" || fail "list does not show damaged.shm as damaged: $out"
  contains "$out" "4 pool(s) in pools, 5 other file(s) skipped, 0 unreadable"
  run 0 list pools --json
  json_check "doc['schema'] == 'shmpool-list/1' and doc['skipped'] == 5 and doc['unreadable'] == [] and [p['name'] for p in doc['pools']] == ['a.shm', 'b.shm', 'damaged.shm', 'secret.shm'] and doc['pools'][0]['dead_owner_slots'] == 1 and doc['pools'][2]['status'] == 'damaged'"
  run 2 list no-such-dir; one_line "$err"
  run 64 list a b; one_line "$err"
  if [ -d /dev/shm ]; then run 0 list; contains "$out" "in /dev/shm"; fi
  # A file we may not read is named, not skipped.
  chmod 755 "$dir" pools; chmod 644 pools/*.shm; chmod 600 pools/secret.shm
  if setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null; then
    setpriv --reuid=65534 --regid=65534 --clear-groups "$cli" list pools >out.txt 2>err.txt || fail "list as nobody failed"
    out=$(cat out.txt)
    contains "$out" "unreadable: secret.shm: open: Permission denied"
    contains "$out" "3 pool(s) in pools, 5 other file(s) skipped, 1 unreadable"
  fi
  ;;
man_page)
  # shmpool(1) is written from the same text as --help, and installed.
  [ -n "$tools_bin" ] && [ -f "$tools_bin/shmpool.1" ] || fail "the build wrote no shmpool.1 in $tools_bin"
  "$cli" --man >man.1 || fail "shmpool --man failed"
  cmp -s man.1 "$tools_bin/shmpool.1" || fail "the built shmpool.1 is not what shmpool --man prints"
  for c in info stats slots check list recover create; do
    run 0 "$c" --help
    synopsis=$(head -1 <<<"$out" | sed -e 's/^usage: shmpool //' -e 's/-/\\-/g')
    grep -qF ".SS \"$synopsis\"" man.1 || fail "the man page has no section for: $synopsis"
    option=$(grep -m1 -oE '^  --[a-z-]+' <<<"$out" | sed -e 's/^  //' -e 's/-/\\-/g')
    [ -z "$option" ] || grep -qF ".B $option" man.1 || fail "the man page lacks $c's option $option"
  done
  for code in 0 1 2 3 4 5 6 64; do grep -qxF ".B $code" man.1 || fail "the man page does not document exit status $code"; done
  if command -v groff >/dev/null; then
    warnings=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z man.1 2>&1)
    [ -z "$warnings" ] || fail "groff warns: $warnings"
  fi
  cmake -DCMAKE_INSTALL_PREFIX="$dir/inst" -P "$tools_bin/cmake_install.cmake" >install.log 2>&1 ||
    fail "installing the tool failed: $(cat install.log)"
  cmp -s "$dir/inst/share/man/man1/shmpool.1" man.1 || fail "shmpool.1 is not installed under share/man/man1"
  [ -x "$dir/inst/bin/shmpool" ] || fail "bin/shmpool is not installed"
  ;;
truncated_under_watch)
  # Issue 20, item 9: the file truncated under stats --watch.  It used to die
  # of SIGBUS (status 135, nothing on stderr); now exit 6, naming the file.
  run 0 create p.shm --variant i64 --capacity 100000
  timeout 30 "$cli" stats p.shm --watch 0.05 --count 400 >out.txt 2>err.txt &
  watch_pid=$!
  for _ in $(seq 300); do [ "$(wc -l <out.txt)" -ge 3 ] && break; sleep 0.05; done
  [ "$(wc -l <out.txt)" -ge 3 ] || fail "stats --watch printed no rows: $(cat err.txt)"
  truncate -s 100 p.shm   # pages 1.. of the mapping vanish: a load from them faults
  wait "$watch_pid"; got=$?
  out=$(cat out.txt) err=$(cat err.txt)
  [ "$got" -ne 124 ] || fail "stats --watch did not stop"
  [ "$got" -eq 6 ] || fail "stats --watch on a truncated file exited $got (135: SIGBUS), expected 6; stderr: $err"
  contains "$err" "shmpool stats: p.shm: changed while being read: the file is now 100 bytes"; one_line "$err"
  [ "$(grep -c '^ *100000 ' <<<"$out")" -ge 2 ] || fail "the rows before the change are gone: $out"
  # Truncated inside the last page of the slot metadata (it ends at byte
  # 1700352): no fault, the last slots read as zeros.  Reported all the same,
  # never printed as counters.
  run 0 create q.shm --variant i64 --capacity 100000
  timeout 30 "$cli" stats q.shm --json --watch 0.05 --count 400 >out.txt 2>err.txt &
  watch_pid=$!
  for _ in $(seq 300); do [ "$(wc -l <out.txt)" -ge 2 ] && break; sleep 0.05; done
  truncate -s 1700000 q.shm
  wait "$watch_pid"; got=$?
  [ "$got" -eq 6 ] || fail "stats --json --watch on a truncated file exited $got, expected 6: $(cat err.txt)"
  contains "$(cat err.txt)" "q.shm: changed while being read"
  command -v python3 >/dev/null && json_bytes_check "all(d['capacity'] == 100000 and d['used'] == 0 for d in docs)"
  # Extended under it: nothing changed that it reads; it goes on.
  run 0 create e.shm --variant i64 --capacity 1000
  timeout 30 "$cli" stats e.shm --watch 0.05 --count 8 >out.txt 2>err.txt &
  watch_pid=$!
  sleep 0.1; truncate -s 10000000 e.shm
  wait "$watch_pid"; got=$?
  [ "$got" -eq 0 ] || fail "stats --watch on an extended file exited $got: $(cat err.txt)"
  [ "$(grep -c '^ *1000 ' out.txt)" -eq 8 ] || fail "stats --watch on an extended file printed: $(cat out.txt)"
  # Exit status 6 is documented.
  run 0 --help; contains "$out" "6   FILE changed while it was being read"
  ;;
json_hostile_names)
  # Issue 20, item 10: file and process names of any bytes.  --json output is
  # strict UTF-8 JSON; a name that is not UTF-8 gets NAME_hex with its bytes,
  # so names a lossy conversion would merge stay apart.
  command -v python3 >/dev/null || { echo "SKIP: needs python3"; exit 77; }
  mkdir pools
  a=$(printf 'pool-\xff\xfe') b=$(printf 'pool-\xef\xbf\xbd\xef\xbf\xbd') c=$(printf 'pool-"\\\001\n\x7f.')
  for n in "$a" "$b" "$c"; do run 0 create "pools/$n" --variant i64 --capacity 3; done
  "$helper" hold-named "pools/$a" 6e616d65ff0a225c01c3 >held.txt &   # name\xff\n"\\\x01\xc3
  held_pid=$!
  for _ in $(seq 100); do [ -s held.txt ] && break; sleep 0.05; done
  read -r slot pid <held.txt || fail "helper hold-named printed nothing"
  run 0 list pools --json
  json_bytes_check "[p['name'] for p in doc['pools']] == ['pool-\"\\\\\x01\\n\x7f.', 'pool-\ufffd\ufffd', 'pool-\ufffd\ufffd'] and [p.get('name_hex') for p in doc['pools']] == [None, None, h(b'pool-\xff\xfe')]"
  run 0 slots "pools/$a" --json
  json_bytes_check "doc['file'] == 'pools/pool-\ufffd\ufffd' and doc['file_hex'] == h(b'pools/pool-\xff\xfe') and doc['slots'][0]['pid'] == $pid and doc['slots'][0]['command'] == 'name\ufffd\n\"\\\\\x01\ufffd' and doc['slots'][0]['command_hex'] == '6e616d65ff0a225c01c3'"
  # The text table prints control characters as '?', so a name cannot add a row.
  run 0 slots "pools/$a"
  [ "$(wc -l <out.txt)" -eq 3 ] || fail "a process name broke the table: $out"
  grep -qF -- "$(printf 'alive    name\xff?"\\?\xc3')" out.txt || fail "slots does not show the name with '?': $out"
  for cmd in info stats check; do
    run 0 "$cmd" "pools/$a" --json
    json_bytes_check "doc['file_hex'] == h(b'pools/pool-\xff\xfe')"
    run 0 "$cmd" "pools/$b" --json   # UTF-8 (U+FFFD itself): exact, no file_hex
    json_bytes_check "doc['file'] == 'pools/pool-\ufffd\ufffd' and 'file_hex' not in doc"
    run 0 "$cmd" "pools/$c" --json
    json_bytes_check "doc['file'] == 'pools/pool-\"\\\\\x01\\n\x7f.' and 'file_hex' not in doc"
  done
  run 0 stats "pools/$a" --json --watch 0.01 --count 2
  json_bytes_check "len(docs) == 2 and all(d['file_hex'] == h(b'pools/pool-\xff\xfe') for d in docs)"
  ln -s pools "$(printf 'dir-\xff')"
  run 0 list "$(printf 'dir-\xff')" --json
  json_bytes_check "doc['dir'] == 'dir-\ufffd' and doc['dir_hex'] == h(b'dir-\xff') and len(doc['pools']) == 3"
  ;;
*)
  fail "unknown case"
  ;;
esac
echo "PASS [$case_name]"
