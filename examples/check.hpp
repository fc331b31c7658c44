// CHECK(cond): the examples assert their own results, also in release builds
// (assert() is compiled out under NDEBUG).  A failed CHECK prints where and
// exits 1, so ctest sees a wrong result as a failure.
#pragma once

#include <cstdio>
#include <cstdlib>

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)
