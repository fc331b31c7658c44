#!/bin/bash -eu
# Builds the fuzz targets the OSS-Fuzz / ClusterFuzzLite way, so the same
# targets run on those services unchanged.  The engine's variables are
# honoured as the services set them:
#   CC CXX             clang, clang++
#   CFLAGS CXXFLAGS    optimisation and sanitizer flags (with -fsanitize=fuzzer-no-link)
#   LIB_FUZZING_ENGINE the link flag of the engine (-fsanitize=fuzzer for libFuzzer)
#   OUT                where each target, <target>_seed_corpus.zip, <target>.dict
#                      and <target>.options go
#   WORK               scratch space (a temporary folder if unset)
# Locally (ctest fuzz.oss_fuzz_build does this):
#   CXX=clang++ CXXFLAGS="-O1 -fsanitize=address,fuzzer-no-link" LIB_FUZZING_ENGINE=-fsanitize=fuzzer \
#     OUT=/tmp/out fuzz/build.sh
root=$(cd "$(dirname "$0")/.." && pwd)
: "${CXX:=clang++}"
: "${CXXFLAGS:=}"
: "${LIB_FUZZING_ENGINE:=-fsanitize=fuzzer}"
: "${OUT:?OUT must name the output folder}"
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$OUT" "$WORK/shmpool-core"

# target name -> source, as fuzz/CMakeLists.txt names them
targets=(fuzz_open:pool_open_fuzz.cpp fuzz_mutate_valid:pool_mutate_fuzz.cpp fuzz_ops:pool_ops_fuzz.cpp
         fuzz_registry:registry_fuzz.cpp fuzz_misuse:pool_misuse_fuzz.cpp)

# The core, once (-fsanitize=fuzzer-no-link from CXXFLAGS instruments it).
objects=()
for src in "$root"/core/src/*.cpp; do
  obj="$WORK/shmpool-core/$(basename "${src%.cpp}").o"
  # shellcheck disable=SC2086 # CXXFLAGS is a list of flags
  $CXX $CXXFLAGS -std=c++20 -I"$root/core/include" -c "$src" -o "$obj"
  objects+=("$obj")
done

for entry in "${targets[@]}"; do
  name=${entry%%:*}
  src=${entry#*:}
  # shellcheck disable=SC2086
  $CXX $CXXFLAGS -std=c++20 -I"$root/core/include" "$root/fuzz/$src" "${objects[@]}" \
    $LIB_FUZZING_ENGINE -pthread -o "$OUT/$name"
  if [ -d "$root/fuzz/corpus/$name" ]; then
    rm -f "$OUT/${name}_seed_corpus.zip"
    (cd "$root/fuzz/corpus/$name" && zip -q -r "$OUT/${name}_seed_corpus.zip" .)
  fi
  for ext in dict options; do
    [ -f "$root/fuzz/$name.$ext" ] && cp "$root/fuzz/$name.$ext" "$OUT/$name.$ext"
  done
  echo "fuzz/build.sh: $OUT/$name"
done
