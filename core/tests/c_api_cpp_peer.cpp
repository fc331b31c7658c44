// The C++ side of c_api_ctypes_test.py: a pool created and checked through
// the C++ API, which the Python test uses through the C API.
//   c_api_cpp_peer create PATH            an i64 pool of 8 slots; allocates a
//                                         slot, sets it to 42, prints "SLOT PID"
//                                         and exits holding it
//   c_api_cpp_peer verify PATH SLOT VALUE exit 0 if SLOT is allocated and holds VALUE
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include <shmpool/pool.hpp>

int main(int argc, char** argv) try {
  if (argc == 3 && std::strcmp(argv[1], "create") == 0) {
    auto pool = shmpool::i64_pool::open(argv[2], 8);
    const auto slot = *pool.alloc_set(42);
    std::printf("%llu %d\n", static_cast<unsigned long long>(slot), static_cast<int>(::getpid()));
    return 0;
  }
  if (argc == 5 && std::strcmp(argv[1], "verify") == 0) {
    auto pool = shmpool::i64_pool::open(argv[2], 8);
    const auto slot = std::strtoull(argv[3], nullptr, 10);
    const auto want = std::strtoll(argv[4], nullptr, 10);
    if (!pool.is_allocated(slot)) {
      std::fprintf(stderr, "c_api_cpp_peer: slot %llu is not allocated\n", static_cast<unsigned long long>(slot));
      return 1;
    }
    const auto got = pool.get(slot);
    if (got != want) {
      std::fprintf(stderr, "c_api_cpp_peer: slot holds %lld, expected %lld\n", static_cast<long long>(got),
                   static_cast<long long>(want));
      return 1;
    }
    return 0;
  }
  std::fprintf(stderr, "usage: c_api_cpp_peer create PATH | verify PATH SLOT VALUE\n");
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "c_api_cpp_peer: %s\n", e.what());
  return 1;
}
