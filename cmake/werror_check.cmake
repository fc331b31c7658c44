# cmake -DSOURCE_DIR=... -DBINARY_DIR=... -DCXX=g++|clang++ -P werror_check.cmake
#
# Configures the core (and the shmpool tool) alone with one compiler and
# -Wall -Wextra -Wpedantic -Werror, and builds it.  Fails on any warning.
# Run by ctest as lint.werror.<compiler> (label "lint").
foreach(v SOURCE_DIR BINARY_DIR CXX)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "werror_check.cmake: -D${v}=... is required")
  endif()
endforeach()
set(jobs 2)
if(DEFINED ENV{SHMPOOL_LINT_JOBS})
  set(jobs $ENV{SHMPOOL_LINT_JOBS})
endif()
set(launcher "")
find_program(CCACHE ccache)
if(CCACHE)
  set(launcher -DCMAKE_CXX_COMPILER_LAUNCHER=${CCACHE})
endif()
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BINARY_DIR} -G Ninja
          -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=${CXX} ${launcher}
          "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Wpedantic -Werror"
          -DSHMPOOL_BUILD_TESTS=OFF -DSHMPOOL_BUILD_MODELS=OFF -DSHMPOOL_BUILD_STRESS=OFF
          -DSHMPOOL_BUILD_FUZZ=OFF -DSHMPOOL_BUILD_BENCH=OFF -DSHMPOOL_BUILD_EXAMPLES=OFF
          -DSHMPOOL_BUILD_TOOLS=ON
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring with ${CXX} failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BINARY_DIR} --target shmpool shmpool_cli -j ${jobs}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the core does not build warning-free with ${CXX} -Werror")
endif()
message(STATUS "core builds warning-free with ${CXX} -Wall -Wextra -Wpedantic -Werror")
