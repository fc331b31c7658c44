#!/bin/bash -eu
# ClusterFuzzLite's entry point: the project's own build script.
exec "$SRC/shmpool/fuzz/build.sh"
