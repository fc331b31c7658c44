#!/usr/bin/env bash
# ctest fuzz.oss_fuzz_build: runs fuzz/build.sh with the variables set as
# OSS-Fuzz and ClusterFuzzLite set them (clang, libFuzzer, ASan+UBSan, a
# temporary $OUT), checks what it must leave in $OUT, and runs each built
# target for a few seconds on its seed corpus.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v clang++ >/dev/null || { echo "oss_fuzz_build: clang++ missing (scripts/install-deps)"; exit 1; }
export CC=clang CXX=clang++
export CFLAGS="-O1 -fno-omit-frame-pointer -gline-tables-only -fsanitize=address,undefined -fsanitize=fuzzer-no-link"
export CXXFLAGS="$CFLAGS"
export LIB_FUZZING_ENGINE=-fsanitize=fuzzer
export SANITIZER=address
export OUT=$(mktemp -d) WORK=$(mktemp -d)
trap 'rm -rf "$OUT" "$WORK"' EXIT
"$root/fuzz/build.sh"
for t in fuzz_open fuzz_mutate_valid fuzz_ops fuzz_registry fuzz_misuse; do
  for f in "$t" "${t}_seed_corpus.zip" "$t.dict" "$t.options"; do
    [ -e "$OUT/$f" ] || { echo "oss_fuzz_build: $OUT/$f missing"; exit 1; }
  done
  corpus="$WORK/corpus-$t"
  mkdir -p "$corpus"
  unzip -q "$OUT/${t}_seed_corpus.zip" -d "$corpus"
  "$OUT/$t" -max_total_time=3 -dict="$OUT/$t.dict" "$corpus" >"$WORK/$t.log" 2>&1 ||
    { tail -30 "$WORK/$t.log"; echo "oss_fuzz_build: $t failed"; exit 1; }
  echo "oss_fuzz_build: $t ran 3 s: $(grep -Eo 'Done [0-9]+ runs' "$WORK/$t.log" || echo ok)"
done
