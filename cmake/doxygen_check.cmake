# cmake -DSOURCE_DIR=... -DOUT_DIR=... [-DDOXYGEN=...] -P doxygen_check.cmake
#
# Builds the HTML API reference (docs/Doxyfile) into OUT_DIR and fails on any
# doxygen warning: an undocumented public declaration, a broken reference, a
# malformed comment.  The Doxyfile says WARN_AS_ERROR=FAIL_ON_WARNINGS; the
# output is checked as well, so that a doxygen which only reports still fails.
# Run by ctest as lint.doxygen (label "lint").
foreach(v SOURCE_DIR OUT_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "doxygen_check.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT DOXYGEN)
  find_program(DOXYGEN doxygen)
endif()
if(NOT DOXYGEN)
  message(FATAL_ERROR "doxygen is not installed: run scripts/install-deps (it installs Debian's doxygen)")
endif()

file(REMOVE_RECURSE "${OUT_DIR}")
set(ENV{SHMPOOL_DOCS_OUT} "${OUT_DIR}")
execute_process(COMMAND "${DOXYGEN}" docs/Doxyfile
                WORKING_DIRECTORY "${SOURCE_DIR}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT out STREQUAL "")
  message("${out}")
endif()
if(NOT err STREQUAL "")
  message("${err}")
endif()
if(NOT rc EQUAL 0 OR err MATCHES "(warning|error):")
  message(FATAL_ERROR "the API reference does not build warning-free (doxygen exit status ${rc}): "
                      "document what the messages above name (core/include/shmpool/*.hpp, docs/Doxyfile)")
endif()
if(NOT EXISTS "${OUT_DIR}/html/index.html")
  message(FATAL_ERROR "doxygen wrote no ${OUT_DIR}/html/index.html")
endif()
message(STATUS "API reference built warning-free: ${OUT_DIR}/html/index.html")
