# shmpool_require_package(<Package> [find_package arguments...])
# A dependency of the workbench (GoogleTest, RapidCheck, Google Benchmark).
# When it is missing, configuration stops with a message that names the
# package, how to install it, and the switch that builds without the
# workbench, instead of CMake's bare "Could NOT find".
macro(shmpool_require_package package)
  find_package(${package} ${ARGN} QUIET)
  if(NOT ${package}_FOUND)
    message(FATAL_ERROR
      "shmpool: the workbench needs ${package}, which was not found.\n"
      "  Install the workbench's dependencies with scripts/install-deps (Debian 12), or\n"
      "  configure with -DSHMPOOL_WORKBENCH=OFF to build and install only the library and the shmpool tool.")
  endif()
endmacro()

# The core sources stable_reference_buffer needs, for the workbench's
# plugins that compile a private copy of the core into a shared library
# (core/tests/plugins, and the fault sweep's plugin in stress/).
set(SHMPOOL_SRB_CORE_SOURCES
  ${PROJECT_SOURCE_DIR}/core/src/stable_reference_buffer.cpp
  ${PROJECT_SOURCE_DIR}/core/src/srb_registry.cpp
  ${PROJECT_SOURCE_DIR}/core/src/srb_anchor.cpp
  ${PROJECT_SOURCE_DIR}/core/src/sys_faults.cpp
  ${PROJECT_SOURCE_DIR}/core/src/liveness.cpp
  ${PROJECT_SOURCE_DIR}/core/src/linux_platform.cpp
  ${PROJECT_SOURCE_DIR}/core/src/error.cpp)  # shmpool::error_category (liveness throws identity_unavailable)
