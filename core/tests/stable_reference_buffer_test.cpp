// Unit tests of stable_reference_buffer in one process: every API item and
// error, counts under copies/moves/resets/swaps, append (copy-on-write and
// exclusive), delay_deallocation, threads, and registry growth.  Process
// matters (fork, cleanup, corrupted segments) are in
// stable_reference_buffer_process_test.cpp; several libraries in
// plugins/srb_plugin_test.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/stable_reference_buffer.hpp"

namespace {

using shmpool::stable_reference_buffer;
using delay = stable_reference_buffer::delay_deallocation;

shmpool::detail::srb_stats stats() { return shmpool::detail::srb_current_stats(); }

std::string hex(const void* p) {
  char text[32];
  std::snprintf(text, sizeof text, "0x%" PRIxPTR, reinterpret_cast<std::uintptr_t>(p));
  return text;
}

bool all_zero(const void* p, std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != 0) return false;
  return true;
}

void fill(const stable_reference_buffer& b, unsigned char v) { std::memset(b.get(), v, b.size()); }

// ---- construction ------------------------------------------------------------

TEST(StableReferenceBuffer, DefaultConstructedIsEmpty) {
  const stable_reference_buffer b;
  EXPECT_EQ(b.get(), nullptr);
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.use_count(), 0u);
  EXPECT_EQ(b.safe_get(), nullptr);
}

TEST(StableReferenceBuffer, CountConstructorAllocatesZeroedBytesWithOneReference) {
  const stable_reference_buffer b(10, sizeof(int));
  ASSERT_NE(b.get(), nullptr);
  EXPECT_EQ(b.size(), 10 * sizeof(int));
  EXPECT_TRUE(all_zero(b.get(), b.size()));
  EXPECT_EQ(b.use_count(), 1u);
  EXPECT_TRUE(stable_reference_buffer::is_known(b.get()));
}

TEST(StableReferenceBuffer, SizeOfTypeDefaultsToOneByte) {
  const stable_reference_buffer b(7);
  EXPECT_EQ(b.size(), 7u);
}

TEST(StableReferenceBuffer, ZeroBytesMakeAnEmptyBuffer) {
  const stable_reference_buffer b(0, 8);
  EXPECT_EQ(b.get(), nullptr);
  EXPECT_EQ(b.use_count(), 0u);
}

TEST(StableReferenceBuffer, Misuse_CountTimesSizeOverflowThrowsLengthError) {
  EXPECT_THROW(stable_reference_buffer(SIZE_MAX / 2, 3), std::length_error);
}

// ---- copies, moves, resets, swaps --------------------------------------------

TEST(StableReferenceBuffer, CopyConstructionAddsAReferenceToTheSameBlock) {
  const stable_reference_buffer a(4);
  const stable_reference_buffer b(a);
  EXPECT_EQ(b.get(), a.get());
  EXPECT_EQ(b.size(), a.size());
  EXPECT_EQ(a.use_count(), 2u);
  EXPECT_EQ(b.use_count(), 2u);
}

TEST(StableReferenceBuffer, CopyAssignmentAddsAReferenceAndDropsTheOldOne) {
  const stable_reference_buffer a(4);
  stable_reference_buffer b(8);
  const stable_reference_buffer keep_b(b);
  b = a;
  EXPECT_EQ(a.use_count(), 2u);
  EXPECT_EQ(keep_b.use_count(), 1u);
  EXPECT_EQ(b.get(), a.get());
}

TEST(StableReferenceBuffer, SelfCopyAssignmentKeepsTheCount) {
  stable_reference_buffer a(4);
  const auto& same = a;
  a = same;
  EXPECT_EQ(a.use_count(), 1u);
  EXPECT_TRUE(stable_reference_buffer::is_known(a.get()));
}

TEST(StableReferenceBuffer, MoveConstructionTransfersTheReference) {
  stable_reference_buffer a(4);
  void* p = a.get();
  stable_reference_buffer b(std::move(a));
  EXPECT_EQ(b.get(), p);
  EXPECT_EQ(b.use_count(), 1u);
  EXPECT_EQ(a.get(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(a.use_count(), 0u);
}

TEST(StableReferenceBuffer, MoveAssignmentTransfersAndReleasesTheTarget) {
  const auto before = stats();
  stable_reference_buffer a(4);
  stable_reference_buffer b(4);
  void* old_b = b.get();
  b = std::move(a);
  EXPECT_EQ(b.use_count(), 1u);
  EXPECT_FALSE(stable_reference_buffer::is_known(old_b));
  EXPECT_EQ(stats().frees, before.frees + 1);
}

TEST(StableReferenceBuffer, SwapExchangesBlocksSizesAndCounts) {
  stable_reference_buffer a(4);
  stable_reference_buffer b(8);
  const stable_reference_buffer a2(a);
  void* pa = a.get();
  void* pb = b.get();
  a.swap(b);
  EXPECT_EQ(a.get(), pb);
  EXPECT_EQ(a.size(), 8u);
  EXPECT_EQ(a.use_count(), 1u);
  EXPECT_EQ(b.get(), pa);
  EXPECT_EQ(b.use_count(), 2u);
  swap(a, b);  // the free function
  EXPECT_EQ(a.get(), pa);
  EXPECT_EQ(b.get(), pb);
}

TEST(StableReferenceBuffer, ResetDropsOneReferenceAndEmptiesTheInstance) {
  stable_reference_buffer a(4);
  const stable_reference_buffer b(a);
  a.reset();
  EXPECT_EQ(a.get(), nullptr);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.use_count(), 0u);
  EXPECT_EQ(b.use_count(), 1u);
  a.reset();  // resetting an empty instance is harmless
  EXPECT_EQ(b.use_count(), 1u);
}

// Pins SHMPOOL_MUTANT_REGISTRY_NO_ZERO_CHECK: a drop that is not the last
// must neither free nor forget the block.
TEST(StableReferenceBuffer, DestroyingACopyKeepsTheOriginalAlive) {
  const auto before = stats();
  stable_reference_buffer a(16);
  fill(a, 0x5A);
  { const stable_reference_buffer copy(a); }
  EXPECT_EQ(a.use_count(), 1u);
  EXPECT_TRUE(stable_reference_buffer::is_known(a.get()));
  EXPECT_EQ(stats().frees, before.frees);
  EXPECT_EQ(stats().live, before.live + 1);
  EXPECT_EQ(static_cast<unsigned char*>(a.get())[15], 0x5A);
}

TEST(StableReferenceBuffer, LastReferenceFreesTheBlockExactlyOnce) {
  const auto before = stats();
  stable_reference_buffer a(16);
  stable_reference_buffer b(a);
  void* p = a.get();
  a.reset();
  EXPECT_EQ(stats().frees, before.frees);
  b.reset();
  EXPECT_EQ(stats().frees, before.frees + 1);
  EXPECT_EQ(stats().live, before.live);
  EXPECT_FALSE(stable_reference_buffer::is_known(p));
}

// ---- adopt -------------------------------------------------------------------

TEST(StableReferenceBuffer, AdoptAddsAReferenceWithUnknownSize) {
  const stable_reference_buffer a(32);
  const stable_reference_buffer adopted(static_cast<const void*>(a.get()));
  EXPECT_EQ(adopted.get(), a.get());
  EXPECT_EQ(adopted.size(), 0u);
  EXPECT_EQ(a.use_count(), 2u);
  const stable_reference_buffer copy_of_adopted(adopted);
  EXPECT_EQ(copy_of_adopted.size(), 0u);
  EXPECT_EQ(a.use_count(), 3u);
}

TEST(StableReferenceBuffer, AdoptedReferenceKeepsTheBlockAfterTheCreatorLetsGo) {
  stable_reference_buffer a(8);
  fill(a, 7);
  const stable_reference_buffer adopted(static_cast<const void*>(a.get()));
  a.reset();
  EXPECT_EQ(adopted.use_count(), 1u);
  EXPECT_EQ(static_cast<unsigned char*>(adopted.get())[7], 7);
}

TEST(StableReferenceBuffer, Misuse_AdoptingAnUnknownAddressThrowsInvalidArgumentNamingIt) {
  int on_stack = 0;
  try {
    stable_reference_buffer b(static_cast<const void*>(&on_stack));
    FAIL() << "adopted a stack address";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(hex(&on_stack)), std::string::npos) << e.what();
  }
}

TEST(StableReferenceBuffer, Misuse_AdoptingAFreedAddressThrows) {
  stable_reference_buffer a(8);
  const void* p = a.get();
  a.reset();
  EXPECT_THROW(stable_reference_buffer{p}, std::invalid_argument);
}

TEST(StableReferenceBuffer, Misuse_AdoptingAnInteriorPointerThrows) {
  const stable_reference_buffer a(8);
  EXPECT_THROW(stable_reference_buffer{static_cast<const char*>(a.get()) + 1}, std::invalid_argument);
  EXPECT_EQ(a.use_count(), 1u);
}

TEST(StableReferenceBuffer, Misuse_AdoptingNullThrows) {
  EXPECT_THROW(stable_reference_buffer{static_cast<const void*>(nullptr)}, std::invalid_argument);
}

// ---- is_known, safe_get --------------------------------------------------------

TEST(StableReferenceBuffer, IsKnownFollowsTheBlockLifecycle) {
  int on_stack = 0;
  EXPECT_FALSE(stable_reference_buffer::is_known(nullptr));
  EXPECT_FALSE(stable_reference_buffer::is_known(&on_stack));
  stable_reference_buffer a(8);
  const void* p = a.get();
  EXPECT_TRUE(stable_reference_buffer::is_known(p));
  EXPECT_FALSE(stable_reference_buffer::is_known(static_cast<const char*>(p) + 1));
  a.reset();
  EXPECT_FALSE(stable_reference_buffer::is_known(p));
}

TEST(StableReferenceBuffer, SafeGetNeedsAnotherReferenceOrADelayScope) {
  stable_reference_buffer a(8);
  EXPECT_EQ(a.safe_get(), nullptr);  // the only reference: nothing keeps it after a lets go
  {
    const stable_reference_buffer b(a);
    EXPECT_EQ(a.safe_get(), a.get());
  }
  EXPECT_EQ(a.safe_get(), nullptr);
  {
    const delay scope;
    EXPECT_EQ(a.safe_get(), a.get());
  }
  EXPECT_EQ(a.safe_get(), nullptr);
}

// ---- append --------------------------------------------------------------------

TEST(StableReferenceBuffer, AppendToAnExclusiveBufferGrowsItAndTheRegistryFollows) {
  stable_reference_buffer a(4);
  fill(a, 1);
  const std::vector<unsigned char> more(1 << 20, 2);  // large enough that realloc moves
  const void* old = a.get();
  a.append(more.data(), more.size());
  EXPECT_EQ(a.size(), 4 + more.size());
  EXPECT_EQ(a.use_count(), 1u);
  const auto* bytes = static_cast<const unsigned char*>(a.get());
  EXPECT_EQ(bytes[3], 1);
  EXPECT_EQ(bytes[4], 2);
  EXPECT_EQ(bytes[a.size() - 1], 2);
  EXPECT_TRUE(stable_reference_buffer::is_known(a.get()));
  if (a.get() != old) {
    EXPECT_FALSE(stable_reference_buffer::is_known(old));
  }
  const stable_reference_buffer adopted(static_cast<const void*>(a.get()));
  EXPECT_EQ(a.use_count(), 2u);
}

TEST(StableReferenceBuffer, AppendToASharedBufferCopiesOnWrite) {
  const auto before = stats();
  stable_reference_buffer a(4);
  fill(a, 1);
  const stable_reference_buffer other(a);
  const unsigned char extra[3] = {9, 8, 7};
  a.append(extra, sizeof extra);
  EXPECT_NE(a.get(), other.get());
  EXPECT_EQ(a.size(), 7u);
  EXPECT_EQ(other.size(), 4u);
  EXPECT_EQ(a.use_count(), 1u);
  EXPECT_EQ(other.use_count(), 1u);
  EXPECT_EQ(static_cast<unsigned char*>(a.get())[0], 1);
  EXPECT_EQ(static_cast<unsigned char*>(a.get())[6], 7);
  EXPECT_EQ(stats().live, before.live + 2);
  EXPECT_EQ(stats().frees, before.frees);
}

TEST(StableReferenceBuffer, AppendToAnEmptyBufferCreatesABlock) {
  stable_reference_buffer a;
  const char text[] = "hello";
  a.append(text, sizeof text);
  ASSERT_NE(a.get(), nullptr);
  EXPECT_EQ(a.size(), sizeof text);
  EXPECT_EQ(a.use_count(), 1u);
  EXPECT_STREQ(static_cast<const char*>(a.get()), "hello");
}

TEST(StableReferenceBuffer, AppendOfItsOwnBytesSurvivesTheBlockMoving) {
  stable_reference_buffer a(1 << 16);
  fill(a, 3);
  static_cast<unsigned char*>(a.get())[0] = 4;
  a.append(a.get(), a.size());
  ASSERT_EQ(a.size(), std::size_t{2} << 16);
  const auto* bytes = static_cast<const unsigned char*>(a.get());
  EXPECT_EQ(bytes[1 << 16], 4);
  EXPECT_EQ(bytes[(2 << 16) - 1], 3);
}

TEST(StableReferenceBuffer, AppendOfZeroBytesChangesNothing) {
  stable_reference_buffer a(4);
  void* p = a.get();
  a.append(nullptr, 0);
  EXPECT_EQ(a.get(), p);
  EXPECT_EQ(a.size(), 4u);
}

TEST(StableReferenceBuffer, Misuse_AppendToAnAdoptedBufferThrowsLogicError) {
  const stable_reference_buffer a(4);
  stable_reference_buffer adopted(static_cast<const void*>(a.get()));
  const char c = 'x';
  EXPECT_THROW(adopted.append(&c, 1), std::logic_error);
  EXPECT_EQ(a.use_count(), 2u);
}

TEST(StableReferenceBuffer, Misuse_AppendOfNullDataThrowsInvalidArgument) {
  stable_reference_buffer a(4);
  EXPECT_THROW(a.append(nullptr, 1), std::invalid_argument);
  EXPECT_EQ(a.size(), 4u);
}

TEST(StableReferenceBuffer, AppendInsideADelayScopeKeepsTheOldBlockReadable) {
  const auto before = stats();
  stable_reference_buffer a(64);
  fill(a, 6);
  const void* old = a.get();
  {
    const delay scope;
    const std::vector<unsigned char> more(1 << 20, 1);
    a.append(more.data(), more.size());
    EXPECT_NE(a.get(), old);  // copied, not moved in place
    EXPECT_EQ(stats().pending, before.pending + 1);
    EXPECT_EQ(static_cast<const unsigned char*>(old)[63], 6);  // still readable
  }
  EXPECT_EQ(stats().pending, before.pending);
  EXPECT_EQ(stats().frees, before.frees + 1);
}

// ---- delay_deallocation ------------------------------------------------------------

TEST(DelayDeallocation, ReleasedBlocksWaitForTheScopeToEnd) {
  const auto before = stats();
  {
    const delay scope;
    EXPECT_EQ(stats().depth, before.depth + 1);
    stable_reference_buffer a(16);
    fill(a, 0x11);
    const void* p = a.get();
    a.reset();
    EXPECT_EQ(stats().frees, before.frees);
    EXPECT_EQ(stats().pending, before.pending + 1);
    EXPECT_TRUE(stable_reference_buffer::is_known(p));  // released, not freed: still known (item 13)
    EXPECT_EQ(static_cast<const unsigned char*>(p)[15], 0x11);  // still readable
  }
  EXPECT_EQ(stats().frees, before.frees + 1);
  EXPECT_EQ(stats().pending, before.pending);
  EXPECT_EQ(stats().depth, before.depth);
}

// Issue 12, item 13 (parity with the seed): inside a delay scope a block
// whose count reached zero is still known and can be adopted again from its
// raw pointer; the adopted block then lives on after the scope.
TEST(DelayDeallocation, ABlockReleasedInsideAScopeCanBeAdoptedAgainAndOutlivesIt) {
  const auto before = stats();
  stable_reference_buffer kept;
  const void* p = nullptr;
  {
    const delay scope;
    stable_reference_buffer a(32);
    fill(a, 0x5A);
    p = a.get();
    a.reset();
    EXPECT_EQ(stats().pending, before.pending + 1);
    EXPECT_TRUE(stable_reference_buffer::is_known(p)) << "a block released inside a scope must stay known";
    kept = stable_reference_buffer(p);
    EXPECT_EQ(kept.use_count(), 1u);
    EXPECT_EQ(stats().pending, before.pending);
    EXPECT_EQ(stats().live, before.live + 1);
    const stable_reference_buffer twice(p);  // live again: an ordinary adopt
    EXPECT_EQ(kept.use_count(), 2u);
  }
  EXPECT_EQ(stats().frees, before.frees) << "the scope's end freed a block adopted again";
  EXPECT_TRUE(stable_reference_buffer::is_known(p));
  EXPECT_EQ(static_cast<const unsigned char*>(p)[31], 0x5A);
  kept.reset();
  EXPECT_EQ(stats().frees, before.frees + 1);
  EXPECT_FALSE(stable_reference_buffer::is_known(p));
  EXPECT_THROW(stable_reference_buffer{p}, std::invalid_argument);
}

// Re-adoption takes one block out of the middle, the head and the tail of
// the pending list: the others are still freed exactly once at the end.
TEST(DelayDeallocation, AdoptingOnePendingBlockLeavesTheOthersPending) {
  const auto before = stats();
  std::vector<stable_reference_buffer> kept;
  {
    const delay scope;
    std::vector<const void*> raw;
    for (int i = 0; i < 5; ++i) {
      stable_reference_buffer b(8);
      raw.push_back(b.get());
    }
    EXPECT_EQ(stats().pending, before.pending + 5);
    for (int i : {2, 4, 0}) kept.emplace_back(raw[static_cast<std::size_t>(i)]);
    EXPECT_EQ(stats().pending, before.pending + 2);
    EXPECT_TRUE(stable_reference_buffer::is_known(raw[1]));
    EXPECT_TRUE(stable_reference_buffer::is_known(raw[3]));
  }
  EXPECT_EQ(stats().frees, before.frees + 2);
  EXPECT_EQ(stats().pending, before.pending);
  EXPECT_EQ(stats().live, before.live + 3);
  kept.clear();
  EXPECT_EQ(stats().frees, before.frees + 5);
}

// Issue 12, item 12: a scope may end on another thread than the one that
// opened it; the scope count stays exact (here without fork; the fork case
// is in the process test).
TEST(DelayDeallocation, AScopeClosedOnAnotherThreadEndsExactlyOnce) {
  const auto before = stats();
  auto* scope = new delay;
  std::thread([&] { delete scope; }).join();
  EXPECT_EQ(stats().depth, before.depth);
  stable_reference_buffer a(8);
  a.reset();
  EXPECT_EQ(stats().frees, before.frees + 1);
}

// Pins SHMPOOL_MUTANT_DELAY_FREES_AT_INNER_EXIT.
TEST(DelayDeallocation, NestedScopesFreeOnlyWhenTheOutermostEnds) {
  const auto before = stats();
  {
    const delay outer;
    {
      const delay inner;
      stable_reference_buffer a(8);
      a.reset();
    }
    EXPECT_EQ(stats().frees, before.frees) << "an inner scope's end freed a delayed block";
    EXPECT_EQ(stats().pending, before.pending + 1);
    stable_reference_buffer b(8);
    b.reset();
    EXPECT_EQ(stats().pending, before.pending + 2);
  }
  EXPECT_EQ(stats().frees, before.frees + 2);
  EXPECT_EQ(stats().pending, before.pending);
}

TEST(DelayDeallocation, ScopesFromSeveralThreadsDelayUntilTheLastEnds) {
  const auto before = stats();
  stable_reference_buffer a(8);
  std::promise<void> opened1, opened2, close1, close2;
  std::thread t1([&] {
    const delay scope;
    opened1.set_value();
    close1.get_future().wait();
  });
  std::thread t2([&] {
    const delay scope;
    opened2.set_value();
    close2.get_future().wait();
  });
  opened1.get_future().wait();
  opened2.get_future().wait();
  a.reset();
  EXPECT_EQ(stats().pending, before.pending + 1);
  close1.set_value();
  t1.join();
  EXPECT_EQ(stats().frees, before.frees);
  EXPECT_EQ(stats().pending, before.pending + 1);
  close2.set_value();
  t2.join();
  EXPECT_EQ(stats().frees, before.frees + 1);
  EXPECT_EQ(stats().pending, before.pending);
}

TEST(DelayDeallocation, BlocksReleasedOutsideAnyScopeAreFreedAtOnce) {
  const auto before = stats();
  { const delay scope; }
  stable_reference_buffer a(8);
  a.reset();
  EXPECT_EQ(stats().frees, before.frees + 1);
  EXPECT_EQ(stats().pending, before.pending);
}

// ---- threads ---------------------------------------------------------------------------

// Many threads copy, assign, move, adopt, reset, swap and append instances
// that share one block.  Counts must come back exact (also run under TSan).
TEST(StableReferenceBufferThreads, ConcurrentCopyResetAppendKeepCountsExact) {
  const auto before = stats();
  stable_reference_buffer base(64);
  fill(base, 0x42);
  constexpr int threads = 4;
  constexpr int rounds = 3000;
  std::atomic<int> failures{0};
  auto work = [&](int id) {
    for (int i = 0; i < rounds; ++i) {
      stable_reference_buffer c(base);
      stable_reference_buffer d;
      d = c;
      stable_reference_buffer e(std::move(d));
      const stable_reference_buffer adopted(static_cast<const void*>(base.get()));
      if (adopted.use_count() < 4 || !stable_reference_buffer::is_known(base.get())) failures.fetch_add(1);
      if (i % 8 == id % 8) {
        e.append(&i, sizeof i);   // shared: copy-on-write
        e.append(&id, sizeof id);  // now exclusive: grows in place
        if (static_cast<unsigned char*>(e.get())[63] != 0x42 || e.use_count() != 1) failures.fetch_add(1);
      }
      if (i % 64 == 0) {
        const delay scope;
        c.reset();
      }
      c.swap(e);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work, t);
  for (auto& t : pool) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(base.use_count(), 1u);
  EXPECT_EQ(stats().live, before.live + 1);
  EXPECT_EQ(stats().pending, before.pending);
}

// A holder writes through its copy and lets go; the remaining holder then
// appends in place (realloc reads the bytes).  Only the count orders the
// two: the flag below is relaxed on purpose.  ThreadSanitizer reports a race
// if the exclusive check does not acquire the holders' releases.
TEST(StableReferenceBufferThreads, AnExclusiveAppendSeesTheWritesOfHoldersThatLetGo) {
  for (int round = 0; round < 50; ++round) {
    stable_reference_buffer a(256);
    std::atomic<bool> dropped{false};
    std::thread writer([copy = stable_reference_buffer(a), &dropped]() mutable {
      std::memset(copy.get(), 0x3C, copy.size());
      copy.reset();
      dropped.store(true, std::memory_order_relaxed);
    });
    while (!dropped.load(std::memory_order_relaxed)) std::this_thread::yield();
    const std::vector<unsigned char> more(1 << 16, 1);
    a.append(more.data(), more.size());
    EXPECT_EQ(static_cast<unsigned char*>(a.get())[255], 0x3C);
    writer.join();
  }
}

// An adopter racing the last release either gets a reference (and keeps the
// block alive) or an exception; the block is freed exactly once.
TEST(StableReferenceBufferThreads, AdoptRacingTheLastReleaseNeverRevivesTheBlock) {
  const auto before = stats();
  constexpr int rounds = 200;
  for (int r = 0; r < rounds; ++r) {
    stable_reference_buffer a(32);
    const void* p = a.get();
    std::atomic<bool> go{false};
    std::thread adopter([&] {
      while (!go.load()) std::this_thread::yield();
      for (;;) {
        try {
          const stable_reference_buffer held(p);
          if (held.use_count() == 0) std::abort();
        } catch (const std::invalid_argument&) {
          return;
        }
      }
    });
    go.store(true);
    a.reset();
    adopter.join();
  }
  EXPECT_EQ(stats().frees, before.frees + rounds);
  EXPECT_EQ(stats().live, before.live);
}

TEST(StableReferenceBufferThreads, ManyThreadsCreatingAndReleasingKeepTheRegistryConsistent) {
  const auto before = stats();
  std::vector<std::thread> pool;
  for (int t = 0; t < 4; ++t)
    pool.emplace_back([] {
      std::vector<stable_reference_buffer> mine;
      for (int i = 0; i < 2000; ++i) mine.emplace_back(16);
      for (auto& b : mine)
        if (!stable_reference_buffer::is_known(b.get())) std::abort();
    });
  for (auto& t : pool) t.join();
  EXPECT_EQ(stats().live, before.live);
  EXPECT_EQ(stats().frees, before.frees + 8000);
}

// The registry's lock is fair enough: a thread that needs it 100 times gets
// it within 5 s (generous for a loaded CI machine; it takes milliseconds)
// while ten threads loop on calls that take it.  A lock that preferred the
// looping threads (readers, or newcomers that barge past a woken sleeper
// every time) would keep it waiting for as long as they loop.
TEST(StableReferenceBufferThreads, ALockerGetsTheRegistryLockWithinABoundWhileTenThreadsLoopOnIt) {
  const stable_reference_buffer known(8);
  const void* const p = known.get();
  std::atomic<bool> stop{false};
  std::atomic<int> looping{0};
  std::vector<std::thread> loopers;
  for (int t = 0; t < 10; ++t)
    loopers.emplace_back([&] {
      looping.fetch_add(1);
      while (!stop.load(std::memory_order_relaxed)) {
        if (!stable_reference_buffer::is_known(p)) std::abort();
        const stable_reference_buffer adopted(p);  // adopt and its release: the lock twice more
      }
    });
  while (looping.load() < 10) std::this_thread::yield();
  std::promise<void> done;
  std::future<void> finished = done.get_future();
  std::thread locker([&] {
    for (int i = 0; i < 100; ++i) {
      const delay scope;                    // enter and exit: the lock
      const stable_reference_buffer b(16);  // insert and retire: the lock
    }
    done.set_value();
  });
  const auto start = std::chrono::steady_clock::now();
  const bool in_time = finished.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  const auto waited = std::chrono::steady_clock::now() - start;
  stop.store(true);  // the locker then finishes whatever the lock's policy
  if (finished.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    std::fprintf(stderr, "the locker never got the registry lock, even with nobody else asking: a lost wake-up\n");
    std::abort();  // fail now rather than hang the run
  }
  locker.join();
  for (auto& t : loopers) t.join();
  EXPECT_TRUE(in_time) << "100 uses of the registry lock took more than 5 s against 10 looping threads ("
                       << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count() << " ms waited)";
}

// ---- registry growth ----------------------------------------------------------------------

TEST(StableReferenceBufferRegistry, GrowsWithoutLimitAndNeverReportsFull) {
  const auto before = stats();
  constexpr std::size_t n = 150'000;
  std::vector<stable_reference_buffer> many;
  many.reserve(n);
  for (std::size_t i = 0; i < n; ++i) many.emplace_back(1);
  EXPECT_EQ(stats().live, before.live + n);
  EXPECT_GE(stats().entries, n);
  EXPECT_GE(stats().index_slots, 2 * n);
  for (std::size_t i = 0; i < n; i += 997) EXPECT_TRUE(stable_reference_buffer::is_known(many[i].get()));
  const stable_reference_buffer adopted(static_cast<const void*>(many[n / 2].get()));
  EXPECT_EQ(adopted.use_count(), 2u);
  many.clear();
  EXPECT_EQ(stats().live, before.live + 1);  // the adopted reference
  EXPECT_EQ(adopted.use_count(), 1u);
}

TEST(StableReferenceBufferRegistry, ReleasedEntriesAreReused) {
  { std::vector<stable_reference_buffer> warm(100, stable_reference_buffer(1)); }
  const auto before = stats();
  for (int i = 0; i < 10'000; ++i) stable_reference_buffer b(1);
  EXPECT_EQ(stats().entries, before.entries);
}

}  // namespace
