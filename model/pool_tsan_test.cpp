// ThreadSanitizer test of the pool: many threads on one handle, and several
// handles (from_fd) onto one memfd.  Built against shmpool_tsan (the core's
// sources compiled with -fsanitize=thread); TSan aborts the run on a race.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "shmpool/pool.hpp"

namespace {

constexpr int threads = 4;
constexpr int rounds = 2000;

// Each thread allocs (blocking, alloc_n, try), writes with the typed
// atomics, checks it still owns the value, frees.
void churn(shmpool::i64_pool& p, int me) {
  for (int r = 0; r < rounds; ++r) {
    auto i = *p.alloc();
    p.set(i, me);
    p.add(i, 1);
    EXPECT_EQ(p.xchg(i, me), me + 1) << "slot " << i << " shared by two owners";
    EXPECT_TRUE(p.cas(i, me, me + 2));
    EXPECT_TRUE(p.free(i));
    if (auto batch = p.alloc_n(2, std::chrono::milliseconds(1))) {
      for (auto s : *batch) p.incr(s);
      EXPECT_EQ(p.free_n(*batch), 2u);
    }
  }
}

TEST(PoolTsan, ManyThreadsOnOneHandle) {
  auto p = shmpool::i64_pool::anonymous(3);  // fewer slots than threads: waits and wakes
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) ts.emplace_back([&p, t] { churn(p, t); });
  for (auto& t : ts) t.join();
  EXPECT_EQ(p.used(), 0u);
  EXPECT_TRUE(p.check().empty());
}

TEST(PoolTsan, SeveralHandlesOntoOneMemfd) {
  auto first = shmpool::i64_pool::memfd("tsan", 3);
  std::vector<shmpool::i64_pool> handles;
  for (int t = 0; t < threads; ++t) handles.push_back(shmpool::i64_pool::from_fd(first.memfd()));
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) ts.emplace_back([&handles, t] { churn(handles[t], t); });
  for (auto& t : ts) t.join();
  EXPECT_EQ(first.used(), 0u);
  EXPECT_TRUE(first.check().empty());
}

}  // namespace
