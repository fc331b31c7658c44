// The program every consumer project of the embedding test builds: it uses
// the pool and the version macros, and checks both.
#include <cstdio>
#include <cstring>

#include <shmpool/pool.hpp>
#include <shmpool/version.hpp>

static_assert(SHMPOOL_VERSION_MAJOR >= 0 && SHMPOOL_VERSION_MINOR >= 0 && SHMPOOL_VERSION_PATCH >= 0);

int main() {
  auto pool = shmpool::i64_pool::anonymous(8);
  const auto i = pool.alloc_set(41);
  if (!i || pool.add(*i, 1) != 42 || !pool.free(*i) || pool.used() != 0) {
    std::fprintf(stderr, "consumer: the pool misbehaved\n");
    return 1;
  }
#ifdef EXPECTED_VERSION
  if (std::strcmp(SHMPOOL_VERSION, EXPECTED_VERSION) != 0) {
    std::fprintf(stderr, "consumer: version %s, expected %s\n", SHMPOOL_VERSION, EXPECTED_VERSION);
    return 1;
  }
#endif
  std::printf("consumer: ok (shmpool %s)\n", SHMPOOL_VERSION);
  return 0;
}
