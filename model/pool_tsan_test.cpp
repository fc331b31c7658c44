// ThreadSanitizer test of the pool: many threads on one handle, and several
// handles (from_fd) onto one memfd.  Built against shmpool_tsan (the core's
// sources compiled with -fsanitize=thread); TSan aborts the run on a race.
//
// The i64 tests touch slot data only through atomics, so TSan cannot see a
// weakened claim (O1) or free (O5) order there: nothing plain is handed
// over.  The PlainBytesHandOff tests hand plain bytes from a freer to the
// next claimer; the only happens-before between them is the protocol's, so
// a build with SHMPOOL_MUTANT=WEAK_CLAIM or WEAK_FREE_STORE reports a data
// race here (model/README.md, "pool_tsan_test", has the figures).  A raw
// pool, not a str pool: str_pool::set publishes its length word with a
// release store that get() reads with acquire, which orders the bytes by
// itself and would hide a weakened protocol.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <cstdint>
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

// ---- plain bytes handed from a freer to the next claimer ------------------------

constexpr int hand_off_threads = 16;
constexpr int hand_off_rounds = 20000;
constexpr std::uint64_t hand_off_slots = 64;  // one group

// Every holder reads the 8-byte stamp its predecessor left, writes its own
// with a plain store, reads it back and frees.  The stamp is plain memory,
// so only the pool's own orders put one holder's store before the next
// holder's load, and TSan reports any hand-off they leave unordered.
//
// Which orders: the freer's CAS to FREE (O3, release) read by the claim
// CAS (O1, acquire) is the only edge from one holder's stamp to the next
// holder's; the scan's loads order nothing.  Weaken either
// (SHMPOOL_MUTANT=RELAXED_RELEASE / WEAK_CLAIM) and TSan sees a race.
// try_alloc spins rather than sleeps, so no futex wake adds an order.
int hand_off(shmpool::pool& p, std::uint64_t me) {
  int held = 0;
  for (int r = 0; r < hand_off_rounds; ++r) {
    const auto i = p.try_alloc();
    if (!i) continue;
    ++held;
    std::byte* stamp = p.slot(*i).data();
    std::uint64_t before = 0;
    std::memcpy(&before, stamp, sizeof before);  // plain load
    EXPECT_LE(before >> 32, std::uint64_t{hand_off_threads}) << "slot " << *i << " holds a torn stamp";
    const std::uint64_t mine = (me << 32) | static_cast<std::uint32_t>(r);
    std::memcpy(stamp, &mine, sizeof mine);  // plain store
    std::uint64_t after = 0;
    std::memcpy(&after, stamp, sizeof after);
    EXPECT_EQ(after, mine) << "slot " << *i << " written by another holder: two holders at once";
    EXPECT_TRUE(p.free(*i));
  }
  return held;
}

TEST(PoolTsan, PlainBytesHandOffThroughARawPool) {
  auto p = shmpool::pool::anonymous(hand_off_slots, sizeof(std::uint64_t));
  std::atomic<int> held{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < hand_off_threads; ++t)
    ts.emplace_back([&, t] { held += hand_off(p, static_cast<std::uint64_t>(t) + 1); });
  for (auto& t : ts) t.join();
  EXPECT_GT(held.load(), hand_off_threads * hand_off_rounds / 2) << "too few hand-offs to prove anything";
  EXPECT_EQ(p.used(), 0u);
  EXPECT_TRUE(p.check().empty());
}

}  // namespace
