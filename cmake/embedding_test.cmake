# The embedding test (ctest label "embedding"), run as
#   cmake -DSOURCE_DIR=<checkout> -DBUILD_DIR=<built tree> -DWORK_DIR=<scratch>
#         -DCXX=<compiler> [-DCC=<C compiler>] [-DLAUNCHER=ccache] [-DCONFIG=<cfg>] -P embedding_test.cmake
# 1. cmake --install of the current build tree into WORK_DIR/prefix;
# 2. a project using find_package(shmpool CONFIG REQUIRED): configure, build, run;
# 3. the same program built with `pkg-config --cflags --libs shmpool`, run,
#    and the C SYNOPSIS (examples/synopsis_c.c) with `pkg-config --static`;
# 4. a project using add_subdirectory(shmpool), and 5. one using FetchContent:
#    configure (asserting no workbench option is on), build, run.
foreach(v SOURCE_DIR BUILD_DIR WORK_DIR CXX)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "embedding_test.cmake: -D${v}=... is required")
  endif()
endforeach()
set(examples "${SOURCE_DIR}/examples/embedding")
set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(common -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_COMPILER=${CXX}")
if(LAUNCHER)
  list(APPEND common "-DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}")
endif()

function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "embedding: ${what} failed (${rc}):\n${out}")
  endif()
  message(STATUS "embedding: ${what}: ok")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

# 1. install
set(config_args "")
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()
step("cmake --install into ${prefix}" ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}" ${config_args})
foreach(f include/shmpool/pool.hpp include/shmpool/shmpool.h include/shmpool/version.hpp include/shmpool/detail/format.hpp)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "embedding: ${f} was not installed")
  endif()
endforeach()
file(GLOB_RECURSE pc_files "${prefix}/*/shmpool.pc")
file(GLOB_RECURSE config_files "${prefix}/*/shmpoolConfig.cmake")
if(NOT pc_files OR NOT config_files)
  message(FATAL_ERROR "embedding: shmpool.pc or shmpoolConfig.cmake was not installed")
endif()

# 2. find_package
step("find_package consumer: configure" ${CMAKE_COMMAND} -S "${examples}/find_package" -B "${WORK_DIR}/fp"
     ${common} "-DCMAKE_PREFIX_PATH=${prefix}")
step("find_package consumer: build" ${CMAKE_COMMAND} --build "${WORK_DIR}/fp")
step("find_package consumer: run" "${WORK_DIR}/fp/consumer")

# 3. pkg-config
find_program(PKG_CONFIG pkg-config)
if(PKG_CONFIG)
  list(GET pc_files 0 pc_file)
  get_filename_component(pc_dir "${pc_file}" DIRECTORY)
  set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
  step("pkg-config --cflags --libs shmpool" ${PKG_CONFIG} --cflags --libs shmpool)
  string(STRIP "${step_output}" flags)
  separate_arguments(flags UNIX_COMMAND "${flags}")
  # A shared libshmpool in a private prefix needs an rpath (as a user would set one).
  step("pkg-config --variable=libdir shmpool" ${PKG_CONFIG} --variable=libdir shmpool)
  string(STRIP "${step_output}" pc_libdir)
  list(APPEND flags "-Wl,-rpath,${pc_libdir}")
  step("pkg-config consumer: build" ${CXX} -std=c++20 "${examples}/consumer.cpp" -o "${WORK_DIR}/pc-consumer" ${flags})
  step("pkg-config consumer: run" "${WORK_DIR}/pc-consumer")
  # A C program (the SYNOPSIS in C) through <shmpool/shmpool.h>: --static
  # adds the C++ runtime that a static libshmpool needs.
  if(NOT CC)
    set(CC cc)
  endif()
  step("pkg-config --static --cflags --libs shmpool" ${PKG_CONFIG} --static --cflags --libs shmpool)
  string(STRIP "${step_output}" c_flags)
  separate_arguments(c_flags UNIX_COMMAND "${c_flags}")
  list(APPEND c_flags "-Wl,-rpath,${pc_libdir}")
  step("pkg-config C consumer: build" ${CC} -std=c99 -Wall -Wextra -Werror -pedantic
       "${SOURCE_DIR}/examples/synopsis_c.c" -o "${WORK_DIR}/pc-c-consumer" ${c_flags})
  step("pkg-config C consumer: run" "${WORK_DIR}/pc-c-consumer")
else()
  message(WARNING "embedding: pkg-config not found; the pkg-config consumer was skipped")
endif()

# 4. add_subdirectory and 5. FetchContent (no install involved)
step("add_subdirectory consumer: configure" ${CMAKE_COMMAND} -S "${examples}/subproject" -B "${WORK_DIR}/sub"
     ${common} "-DSHMPOOL_SOURCE_DIR=${SOURCE_DIR}")
step("add_subdirectory consumer: build" ${CMAKE_COMMAND} --build "${WORK_DIR}/sub")
step("add_subdirectory consumer: run" "${WORK_DIR}/sub/consumer")
# FetchContent really clones: a file:// copy of this repository at the
# release tag the README's example names, so a tag that does not exist fails
# here.  A checkout that carries no tags at all (a CI clone without them)
# cannot show it: that is reported and the clone is skipped.
file(READ "${SOURCE_DIR}/README.md" readme)
string(REGEX MATCH "FetchContent_Declare\\(shmpool [^)]*GIT_TAG (v[0-9]+\\.[0-9]+\\.[0-9]+)\\)" _ "${readme}")
set(readme_tag "${CMAKE_MATCH_1}")
if(NOT readme_tag)
  message(FATAL_ERROR "embedding: the README's FetchContent example names no GIT_TAG vX.Y.Z")
endif()
execute_process(COMMAND git -C "${SOURCE_DIR}" tag --list OUTPUT_VARIABLE tags RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR tags STREQUAL "")
  message(WARNING "embedding: ${SOURCE_DIR} carries no git tags: the FetchContent clone of ${readme_tag} is skipped")
else()
  step("the README's release tag ${readme_tag} exists" git -C "${SOURCE_DIR}" rev-parse --verify "refs/tags/${readme_tag}")
  step("FetchContent consumer: configure (clones file://${SOURCE_DIR} at ${readme_tag})"
       ${CMAKE_COMMAND} -S "${examples}/subproject" -B "${WORK_DIR}/fc" ${common} -DUSE_FETCHCONTENT=ON
       "-DSHMPOOL_GIT_REPOSITORY=file://${SOURCE_DIR}" "-DSHMPOOL_GIT_TAG=${readme_tag}")
  step("FetchContent consumer: build" ${CMAKE_COMMAND} --build "${WORK_DIR}/fc")
  step("FetchContent consumer: run" "${WORK_DIR}/fc/consumer")
endif()

# 6. The library and the tool alone, on a machine without the workbench's
#    dependencies (GoogleTest, RapidCheck, Google Benchmark hidden from
#    find_package): the default configure stops with a message naming
#    SHMPOOL_WORKBENCH; with -DSHMPOOL_WORKBENCH=OFF it configures, builds a
#    shared library and the tool, installs the licence, and the installed tool
#    runs (its RUNPATH finds libshmpool.so beside it).
set(no_workbench_deps -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DCMAKE_DISABLE_FIND_PACKAGE_rapidcheck=ON
    -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON)
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/nowb-default" ${common} ${no_workbench_deps}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0 OR NOT out MATCHES "SHMPOOL_WORKBENCH=OFF")
  message(FATAL_ERROR "embedding: without GTest the default configure must fail and name -DSHMPOOL_WORKBENCH=OFF:\n${out}")
endif()
message(STATUS "embedding: a missing workbench dependency names -DSHMPOOL_WORKBENCH=OFF: ok")
step("library-only configure (shared, no workbench dependency)" ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/lib"
     ${common} ${no_workbench_deps} -DSHMPOOL_WORKBENCH=OFF -DBUILD_SHARED_LIBS=ON)
step("library-only build" ${CMAKE_COMMAND} --build "${WORK_DIR}/lib")
step("library-only install" ${CMAKE_COMMAND} --install "${WORK_DIR}/lib" --prefix "${WORK_DIR}/lib-prefix")
if(NOT EXISTS "${WORK_DIR}/lib-prefix/share/doc/shmpool/LICENSE")
  message(FATAL_ERROR "embedding: the licence was not installed (share/doc/shmpool/LICENSE)")
endif()
step("the installed tool finds the installed shared library" "${WORK_DIR}/lib-prefix/bin/shmpool" --help)
