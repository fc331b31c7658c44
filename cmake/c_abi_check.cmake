# The C API's ABI check (ctest embedding.c_abi), run as
#   cmake -DSOURCE_DIR=<checkout> -DWORK_DIR=<scratch> -DCXX=<compiler>
#         -DABI_FILE=core/abi/shmpool_c_abi.txt -DSIZES=<c_api_test> [-DLAUNCHER=ccache]
#         [-DUPDATE=ON] -P c_abi_check.cmake
# 1. builds libshmpool as a shared library (-DBUILD_SHARED_LIBS=ON, the
#    library alone) in WORK_DIR;
# 2. lists its exported dynamic symbols (nm -D --defined-only) and fails on
#    any C (unmangled) symbol that is not shmpool_*: the library exports the
#    C API and the C++ API (mangled), nothing else of C;
# 3. compares with ABI_FILE: fails when a recorded shmpool_* symbol is gone,
#    when an exported one is not recorded (record it: the list is the
#    contract), or when a public C struct (sizes printed by
#    `c_api_test --abi`) is smaller than recorded.  Structs may grow.
# -DUPDATE=ON rewrites ABI_FILE from what was found (after a deliberate,
# reviewed change of the C API).
cmake_minimum_required(VERSION 3.25)
foreach(v SOURCE_DIR WORK_DIR CXX ABI_FILE SIZES)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "c_abi_check.cmake: -D${v}=... is required")
  endif()
endforeach()
set(args -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_COMPILER=${CXX}" -DBUILD_SHARED_LIBS=ON
         -DSHMPOOL_WORKBENCH=OFF -DSHMPOOL_BUILD_TOOLS=OFF -DSHMPOOL_INSTALL=OFF)
if(LAUNCHER)
  list(APPEND args "-DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}" ${args}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "c_abi: configuring the shared library failed:\n${out}")
endif()
set(jobs 2)
if(DEFINED ENV{SHMPOOL_LINT_JOBS})
  set(jobs $ENV{SHMPOOL_LINT_JOBS})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}" --target shmpool -j ${jobs}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "c_abi: building the shared library failed:\n${out}")
endif()
file(GLOB libs "${WORK_DIR}/core/libshmpool.so.*.*.*")
list(LENGTH libs nlibs)
if(NOT nlibs EQUAL 1)
  message(FATAL_ERROR "c_abi: expected one libshmpool.so.X.Y.Z in ${WORK_DIR}/core, found: ${libs}")
endif()

# 2. exported symbols
find_program(NM NAMES nm REQUIRED)
execute_process(COMMAND ${NM} -D --defined-only --format=posix "${libs}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE nm_out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "c_abi: nm -D ${libs} failed: ${err}")
endif()
string(REPLACE "\n" ";" nm_lines "${nm_out}")
set(c_symbols "")
set(unexpected "")
set(cxx_count 0)
foreach(line IN LISTS nm_lines)
  if(line STREQUAL "")
    continue()
  endif()
  string(REGEX REPLACE " .*" "" name "${line}")
  string(REGEX REPLACE "@.*" "" name "${name}")
  if(name MATCHES "^_Z")
    math(EXPR cxx_count "${cxx_count} + 1")  # the C++ API (and the templates it instantiates)
  elseif(name MATCHES "^shmpool_")
    list(APPEND c_symbols "${name}")
  elseif(NOT name MATCHES "^(_init|_fini|_edata|_end|__bss_start)$")  # the linker's own
    list(APPEND unexpected "${name}")
  endif()
endforeach()
list(SORT c_symbols)
list(REMOVE_DUPLICATES c_symbols)
set(failures "")
if(unexpected)
  list(JOIN unexpected " " u)
  string(APPEND failures "  C symbols exported that are not shmpool_*: ${u}\n")
endif()

# Struct sizes, as a C compiler lays them out.
execute_process(COMMAND "${SIZES}" --abi RESULT_VARIABLE rc OUTPUT_VARIABLE sizes_out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "c_abi: ${SIZES} --abi failed")
endif()
string(REPLACE "\n" ";" size_lines "${sizes_out}")

if(UPDATE)
  set(text "# The C API's ABI (core/include/shmpool/shmpool.h), checked by ctest embedding.c_abi\n")
  string(APPEND text "# (cmake/c_abi_check.cmake): no recorded symbol may disappear, every exported\n")
  string(APPEND text "# shmpool_* symbol must be recorded, no struct may shrink.  Regenerate with -DUPDATE=ON\n")
  string(APPEND text "# only after a reviewed change of the C API.\n")
  foreach(line IN LISTS size_lines)
    if(NOT line STREQUAL "")
      string(APPEND text "${line}\n")
    endif()
  endforeach()
  foreach(s IN LISTS c_symbols)
    string(APPEND text "symbol ${s}\n")
  endforeach()
  file(WRITE "${ABI_FILE}" "${text}")
  message(STATUS "c_abi: wrote ${ABI_FILE}")
endif()

# 3. against the record
file(STRINGS "${ABI_FILE}" recorded)
set(recorded_symbols "")
foreach(line IN LISTS recorded)
  if(line MATCHES "^symbol ([A-Za-z0-9_]+)$")
    list(APPEND recorded_symbols "${CMAKE_MATCH_1}")
    if(NOT CMAKE_MATCH_1 IN_LIST c_symbols)
      string(APPEND failures "  recorded symbol ${CMAKE_MATCH_1} is no longer exported\n")
    endif()
  elseif(line MATCHES "^struct ([A-Za-z0-9_]+) ([0-9]+)$")
    set(name "${CMAKE_MATCH_1}")
    set(size "${CMAKE_MATCH_2}")
    if(NOT sizes_out MATCHES "struct ${name} ([0-9]+)")
      string(APPEND failures "  struct ${name}: its size was not reported\n")
    elseif(CMAKE_MATCH_1 LESS size)
      string(APPEND failures "  struct ${name} shrank: ${CMAKE_MATCH_1} bytes, recorded ${size}\n")
    endif()
  endif()
endforeach()
foreach(s IN LISTS c_symbols)
  if(NOT s IN_LIST recorded_symbols)
    string(APPEND failures "  ${s} is exported but not recorded in ${ABI_FILE}\n")
  endif()
endforeach()
list(LENGTH c_symbols nc)
if(failures)
  message(FATAL_ERROR "c_abi: the C ABI changed:\n${failures}")
endif()
message(STATUS "c_abi: ${nc} shmpool_* C symbols and ${cxx_count} C++ symbols exported; matches ${ABI_FILE}")
