// Unit tests of the pool API: every item of the issue, its errors, and the
// crash-consistency claims that a single process can exercise.
#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <set>
#include <thread>

#include "shmpool/detail/format.hpp"
#include "shmpool/pool.hpp"
#include "temp_dir.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using shmpool_test::temp_dir;

std::span<const std::byte> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
std::string string_of(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Runs fn in a forked child; returns its exit status (0 = fn returned true).
template <class F>
int in_child(F&& fn) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(fn() ? 0 : 1);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

// Overwrites header fields of a pool file and recomputes the checksum, as a
// hostile writer who knows the format would.
void forge_header(const fs::path& path, const std::function<void(shmpool::detail::pool_header&)>& edit) {
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  shmpool::detail::pool_header h{};
  ASSERT_EQ(::pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  edit(h);
  h.checksum = shmpool::detail::header_checksum(h);
  ASSERT_EQ(::pwrite(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  ::close(fd);
}

template <class F>
shmpool::errc error_code_of(F&& fn) {
  try {
    fn();
  } catch (const shmpool::error& e) {
    EXPECT_NE(std::string(e.what()).find("shmpool"), std::string::npos);
    return static_cast<shmpool::errc>(e.code().value());
  }
  ADD_FAILURE() << "expected shmpool::error";
  return shmpool::errc{};
}

}  // namespace

// ---- the seed's SYNOPSIS ----------------------------------------------------------

TEST(Pool, RawSlotRoundTripsBytesAndZeroFills) {
  temp_dir d;
  auto p = shmpool::pool::open(d.file("pool.shm"), 100, 64);
  auto idx = p.alloc();
  ASSERT_TRUE(idx);
  p.set(*idx, bytes_of("hello world"));
  auto got = p.get(*idx);
  ASSERT_EQ(got.size(), 64u);
  EXPECT_EQ(string_of(got.first(11)), "hello world");
  EXPECT_EQ(got[11], std::byte{0});
  EXPECT_TRUE(p.free(*idx));
}

TEST(Pool, RawSetTruncatesToElemSize) {
  auto p = shmpool::pool::anonymous(4, 4);
  auto i = *p.alloc();
  p.set(i, bytes_of("abcdefgh"));
  EXPECT_EQ(string_of(p.get(i)), "abcd");
}

TEST(Pool, I64AtomicsFollowTheSynopsis) {
  temp_dir d;
  auto ints = shmpool::i64_pool::open(d.file("ints.shm"), 1000);
  auto i = *ints.alloc();
  ints.set(i, 42);
  EXPECT_EQ(ints.add(i, 8), 50);
  EXPECT_TRUE(ints.cas(i, 50, 99));
  EXPECT_FALSE(ints.cas(i, 50, 7));
  EXPECT_EQ(ints.get(i), 99);
  EXPECT_EQ(ints.cmpxchg(i, 99, 200), 99);
  EXPECT_EQ(ints.cmpxchg(i, 1, 2), 200);
  EXPECT_EQ(ints.xchg(i, 300), 200);
  EXPECT_EQ(ints.incr(i), 301);
  EXPECT_EQ(ints.decr(i), 300);
  EXPECT_EQ(ints.elem_size(), 8u);
}

TEST(Pool, I64AddWrapsInsteadOfOverflowing) {
  auto ints = shmpool::i64_pool::anonymous(1);
  auto i = *ints.alloc();
  ints.set(i, INT64_MAX);
  EXPECT_EQ(ints.incr(i), INT64_MIN);
}

TEST(Pool, I32AtomicsWork) {
  auto p = shmpool::i32_pool::anonymous(10);
  auto i = *p.alloc_set(7);
  EXPECT_EQ(p.get(i), 7);
  EXPECT_EQ(p.add(i, -10), -3);
  EXPECT_EQ(p.xchg(i, 5), -3);
  EXPECT_TRUE(p.cas(i, 5, 6));
  EXPECT_EQ(p.elem_size(), 4u);
}

TEST(Pool, F64StoresDoubles) {
  auto p = shmpool::f64_pool::anonymous(10);
  auto i = *p.alloc();
  p.set(i, 3.25);
  EXPECT_EQ(p.get(i), 3.25);
}

TEST(Pool, StrTruncatesToMaxLen) {
  auto p = shmpool::str_pool::anonymous(10, 5);
  EXPECT_EQ(p.max_len(), 5u);
  auto i = *p.alloc();
  p.set(i, "hello world");
  EXPECT_EQ(p.get(i), "hello");
  p.set(i, "hi");
  EXPECT_EQ(p.get(i), "hi");
  auto j = p.try_alloc_set("");
  ASSERT_TRUE(j);
  EXPECT_EQ(p.get(*j), "");
}

TEST(Pool, StrClampsACorruptedLength) {
  auto p = shmpool::str_pool::anonymous(2, 8);
  auto i = *p.alloc();
  std::uint32_t huge = 0xFFFFFFFF;
  std::memcpy(p.ptr(i), &huge, 4);
  EXPECT_EQ(p.get(i).size(), 8u);
}

// ---- allocation -----------------------------------------------------------------

TEST(Pool, AllocUntilFullThenTryAllocFails) {
  auto p = shmpool::i64_pool::anonymous(130);
  std::set<shmpool::slot_index> got;
  for (int k = 0; k < 130; ++k) {
    auto i = p.try_alloc();
    ASSERT_TRUE(i);
    EXPECT_LT(*i, 130u);
    EXPECT_TRUE(got.insert(*i).second) << "slot handed out twice";
  }
  EXPECT_FALSE(p.try_alloc());
  EXPECT_FALSE(p.alloc(0s));
  EXPECT_EQ(p.used(), 130u);
  EXPECT_EQ(p.available(), 0u);
}

TEST(Pool, LastBitmapWordNeverHandsOutSlotsBeyondCapacity) {
  for (std::uint64_t cap : {1u, 63u, 64u, 65u, 127u}) {
    auto p = shmpool::pool::anonymous(cap, 8);
    for (std::uint64_t k = 0; k < cap; ++k) ASSERT_LT(*p.try_alloc(), cap);
    EXPECT_FALSE(p.try_alloc()) << "capacity " << cap;
    EXPECT_TRUE(p.check().empty());
  }
}

TEST(Pool, TimedAllocOnAFullPoolTimesOut) {
  auto p = shmpool::pool::anonymous(1, 8);
  ASSERT_TRUE(p.alloc());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(p.alloc(30ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 30ms);
  const auto s = p.stats();
  EXPECT_EQ(s.timeouts, 1u);
  EXPECT_EQ(s.waits, 1u);
  EXPECT_EQ(s.waiters, 0u);
}

TEST(Pool, FreeOfUnallocatedSlotReturnsFalse) {
  auto p = shmpool::pool::anonymous(4, 8);
  EXPECT_FALSE(p.free(2));
  auto i = *p.alloc();
  EXPECT_TRUE(p.free(i));
  EXPECT_FALSE(p.free(i)) << "double free";
}

TEST(Pool, Misuse_IndexOutOfRangeThrows) {
  auto p = shmpool::i64_pool::anonymous(4);
  EXPECT_THROW(p.free(4), std::out_of_range);
  EXPECT_THROW(p.get(99), std::out_of_range);
  EXPECT_THROW(p.set(4, 1), std::out_of_range);
  EXPECT_THROW(p.is_allocated(4), std::out_of_range);
  EXPECT_THROW(p.slot(4), std::out_of_range);
  EXPECT_THROW(p.owner(4), std::out_of_range);
}

TEST(Pool, Misuse_DataAccessToAFreeSlotThrows) {
  auto p = shmpool::i64_pool::anonymous(4);
  EXPECT_THROW(p.get(0), std::logic_error);
  EXPECT_THROW(p.set(0, 1), std::logic_error);
  EXPECT_THROW(p.add(0, 1), std::logic_error);
  EXPECT_THROW(p.cas(0, 0, 1), std::logic_error);
  auto s = shmpool::str_pool::anonymous(2, 4);
  EXPECT_THROW(s.get(1), std::logic_error);
}

TEST(Pool, AllocNIsAllOrNothing) {
  auto p = shmpool::pool::anonymous(10, 8);
  auto a = p.alloc_n(7);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->size(), 7u);
  EXPECT_FALSE(p.alloc_n(4, 0s));
  EXPECT_EQ(p.used(), 7u) << "a failed alloc_n must leave nothing claimed";
  auto b = p.alloc_n(3, 0s);
  ASSERT_TRUE(b);
  EXPECT_EQ(p.used(), 10u);
  EXPECT_EQ(p.free_n(*a), 7u);
  EXPECT_EQ(p.free_n(*a), 0u) << "second free_n frees nothing";
  EXPECT_EQ(p.used(), 3u);
  EXPECT_EQ(p.alloc_n(0)->size(), 0u);
}

TEST(Pool, Misuse_AllocNBeyondCapacityThrows) {
  auto p = shmpool::pool::anonymous(4, 8);
  EXPECT_THROW(p.alloc_n(5), std::invalid_argument);
}

TEST(Pool, Misuse_FreeNWithAnOutOfRangeIndexFreesNothing) {
  auto p = shmpool::pool::anonymous(4, 8);
  auto a = *p.alloc_n(2);
  std::vector<shmpool::slot_index> bad{a[0], 17, a[1]};
  EXPECT_THROW(p.free_n(bad), std::out_of_range);
  EXPECT_EQ(p.used(), 2u);
}

TEST(Pool, GuardFreesOnDestructionAndReleaseKeepsTheSlot) {
  auto p = shmpool::pool::anonymous(2, 8);
  {
    auto g = p.alloc_guard();
    ASSERT_TRUE(g);
    EXPECT_TRUE(p.is_allocated(g->index()));
    auto moved = std::move(*g);
    EXPECT_FALSE(g->owns_slot());
    EXPECT_TRUE(moved.owns_slot());
  }
  EXPECT_EQ(p.used(), 0u);
  shmpool::slot_index kept;
  {
    auto g = p.try_alloc_guard();
    kept = g->release();
  }
  EXPECT_TRUE(p.is_allocated(kept));
  auto g2 = p.alloc_guard(10ms);
  ASSERT_TRUE(g2);
  EXPECT_FALSE(p.try_alloc_guard()) << "pool of 2 is full";
}

TEST(Pool, GuardSurvivesAMoveOfThePoolHandle) {
  auto p = shmpool::pool::anonymous(2, 8);
  auto g = p.alloc_guard();
  auto q = std::move(p);
  g.reset();
  EXPECT_EQ(q.used(), 0u);
}

TEST(Pool, AllocSetAndTryAllocSet) {
  auto p = shmpool::i64_pool::anonymous(1);
  auto i = p.alloc_set(42, 10ms);
  ASSERT_TRUE(i);
  EXPECT_EQ(p.get(*i), 42);
  EXPECT_FALSE(p.try_alloc_set(1));
}

TEST(Pool, AllocatedSlotsOwnerAndStats) {
  auto p = shmpool::pool::anonymous(70, 16);
  auto a = *p.alloc_n(5);
  p.free(a[2]);
  auto all = p.allocated_slots();
  EXPECT_EQ(all.size(), 4u);
  std::size_t seen = 0;
  p.each_allocated([&](shmpool::slot_index i) {
    EXPECT_TRUE(p.is_allocated(i));
    EXPECT_EQ(p.owner(i), ::getpid());
    ++seen;
  });
  EXPECT_EQ(seen, 4u);
  EXPECT_EQ(p.owner(a[2]), 0);
  const auto s = p.stats();
  EXPECT_EQ(s.capacity, 70u);
  EXPECT_EQ(s.elem_size, 16u);
  EXPECT_EQ(s.used, 4u);
  EXPECT_EQ(s.available, 66u);
  EXPECT_EQ(s.allocs, 5u);
  EXPECT_EQ(s.frees, 1u);
  EXPECT_GE(s.mmap_size, 70u * 16u);
  EXPECT_EQ(s.mmap_size % 4096, 0u);
  EXPECT_EQ(static_cast<std::byte*>(p.ptr(3)), static_cast<std::byte*>(p.data_ptr()) + 3 * 16);
}

// ---- blocking -------------------------------------------------------------------

template <class Release>
void expect_blocked_alloc_woken_by(Release&& release_one) {
  auto p = shmpool::pool::anonymous(2, 8);
  auto held = *p.alloc_n(2);
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    EXPECT_TRUE(p.alloc(10s));
    done = true;
  });
  while (p.stats().waiters == 0) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(5ms);
  EXPECT_FALSE(done);
  const auto t0 = std::chrono::steady_clock::now();
  release_one(p, held);
  waiter.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << "waiter slept on after a slot was freed";
}

TEST(Pool, BlockedAllocIsWokenByFree) {
  expect_blocked_alloc_woken_by([](auto& p, auto& held) { p.free(held[0]); });
}
TEST(Pool, BlockedAllocIsWokenByFreeN) {
  expect_blocked_alloc_woken_by([](auto& p, auto& held) { p.free_n(held); });
}
TEST(Pool, BlockedAllocIsWokenByReset) {
  expect_blocked_alloc_woken_by([](auto& p, auto&) { p.reset(); });
}
TEST(Pool, BlockedAllocIsWokenByRecoverStale) {
  auto p = shmpool::pool::anonymous(1, 8);
  ASSERT_EQ(in_child([&] { return p.alloc().has_value(); }), 0);
  std::thread waiter([&] { EXPECT_TRUE(p.alloc(10s)); });
  while (p.stats().waiters == 0) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(p.recover_stale(), 1u);
  waiter.join();
}

TEST(Pool, BlockedAllocNWaitsForEnoughSlots) {
  auto p = shmpool::pool::anonymous(4, 8);
  auto held = *p.alloc_n(4);
  std::thread waiter([&] {
    auto got = p.alloc_n(3, 10s);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->size(), 3u);
  });
  p.free(held[0]);
  std::this_thread::sleep_for(5ms);
  p.free(held[1]);
  p.free(held[2]);
  waiter.join();
  EXPECT_EQ(p.used(), 4u);
}

// ---- backings -------------------------------------------------------------------

TEST(Pool, FileBackedStateSurvivesCloseAndReopen) {
  temp_dir d;
  shmpool::slot_index i;
  {
    auto p = shmpool::i64_pool::open(d.file("a"), 10);
    i = *p.alloc_set(1234);
    EXPECT_EQ(p.path(), d.file("a"));
    EXPECT_EQ(p.memfd(), -1);
    p.sync();
  }
  auto q = shmpool::i64_pool::open(d.file("a"), 10);
  EXPECT_TRUE(q.is_allocated(i));
  EXPECT_EQ(q.get(i), 1234);
  EXPECT_TRUE(q.unlink());
  EXPECT_FALSE(fs::exists(d.file("a")));
}

TEST(Pool, OpeningWithOtherParametersIsAnError) {
  temp_dir d;
  { auto p = shmpool::pool::open(d.file("a"), 10, 8); }
  EXPECT_EQ(error_code_of([&] { shmpool::pool::open(d.file("a"), 11, 8); }), shmpool::errc::parameter_mismatch);
  EXPECT_EQ(error_code_of([&] { shmpool::i64_pool::open(d.file("a"), 10); }), shmpool::errc::wrong_variant);
}

TEST(Pool, Misuse_BadParametersAreRejected) {
  EXPECT_EQ(error_code_of([] { shmpool::pool::anonymous(0, 8); }), shmpool::errc::bad_argument);
  EXPECT_EQ(error_code_of([] { shmpool::pool::anonymous(8, 0); }), shmpool::errc::bad_argument);
  EXPECT_EQ(error_code_of([] { shmpool::str_pool::anonymous(8, 0); }), shmpool::errc::bad_argument);
  EXPECT_EQ(error_code_of([] { shmpool::pool::memfd(std::string(300, 'x'), 8, 8); }), shmpool::errc::bad_argument);
}

TEST(Pool, MemfdIsSealedAndAttachableFromItsFd) {
  auto p = shmpool::str_pool::memfd("test-pool", 8, 32);
  ASSERT_GE(p.memfd(), 0);
  EXPECT_FALSE(p.path());
  EXPECT_NE(::ftruncate(p.memfd(), 0), 0) << "shrink must be sealed";
  EXPECT_NE(::ftruncate(p.memfd(), 1 << 30), 0) << "grow must be sealed";
  EXPECT_EQ(::fcntl(p.memfd(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  auto i = *p.alloc_set("shared");
  auto q = shmpool::str_pool::from_fd(p.memfd());
  EXPECT_NE(q.memfd(), p.memfd()) << "from_fd dups the fd";
  EXPECT_EQ(::fcntl(q.memfd(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  EXPECT_EQ(q.get(i), "shared");
  EXPECT_EQ(q.max_len(), 32u);
  EXPECT_EQ(error_code_of([&] { shmpool::i64_pool::from_fd(p.memfd()); }), shmpool::errc::wrong_variant);
  EXPECT_EQ(error_code_of([&] { shmpool::pool::from_fd(p.memfd()); }), shmpool::errc::wrong_variant);
}

TEST(Pool, Misuse_FromFdOfABadFdThrowsSystemError) {
  try {
    shmpool::pool::from_fd(-1);
    FAIL();
  } catch (const shmpool::error& e) {
    EXPECT_EQ(e.code(), std::error_code(EBADF, std::system_category()));
    EXPECT_NE(std::string(e.what()).find("fd -1"), std::string::npos);
  }
}

TEST(Pool, AnonymousPoolIsSharedWithAForkedChild) {
  auto p = shmpool::i64_pool::anonymous(4);
  auto i = *p.alloc_set(1);
  ASSERT_EQ(in_child([&] {
              p.add(i, 10);
              auto j = p.alloc_set(99);
              return j.has_value() && p.owner(*j) == ::getpid();
            }),
            0);
  EXPECT_EQ(p.get(i), 11);
  EXPECT_EQ(p.used(), 2u);
}

TEST(Pool, Misuse_SymlinkIsRefused) {
  temp_dir d;
  fs::create_symlink(d.file("target"), d.file("link"));
  try {
    shmpool::pool::open(d.file("link"), 4, 8);
    FAIL();
  } catch (const shmpool::error& e) {
    EXPECT_EQ(e.code(), std::error_code(ELOOP, std::system_category()));
    EXPECT_NE(std::string(e.what()).find("symbolic link"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(d.file("target")));
}

TEST(Pool, CreatedFileRespectsUmask) {
  temp_dir d;
  const mode_t old = ::umask(077);
  { auto p = shmpool::pool::open(d.file("a"), 4, 8); }
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(d.file("a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(Pool, Misuse_NotARegularFileIsRejected) {
  temp_dir d;
  fs::create_directory(d.file("dir"));
  EXPECT_THROW(shmpool::pool::open(d.file("dir"), 4, 8), shmpool::error);
}

TEST(Pool, EmptyFileIsInitialised) {
  temp_dir d;
  { std::FILE* f = std::fopen(d.file("a").c_str(), "w"); std::fclose(f); }
  auto p = shmpool::pool::open(d.file("a"), 4, 8);
  EXPECT_TRUE(p.alloc());
}

TEST(Pool, FileOfACreatorKilledMidInitialisationIsCompleted) {
  temp_dir d;
  {
    const int fd = ::open(d.file("a").c_str(), O_RDWR | O_CREAT, 0600);
    ASSERT_EQ(::pwrite(fd, &shmpool::detail::pool_init_magic, 8, 0), 8);
    ASSERT_EQ(::ftruncate(fd, 1000), 0);
    ::close(fd);
  }
  auto p = shmpool::pool::open(d.file("a"), 4, 8);
  EXPECT_TRUE(p.alloc());
  EXPECT_TRUE(p.check().empty());
}

TEST(Pool, ConcurrentCreatorsInitialiseExactlyOnce) {
  temp_dir d;
  const auto path = d.file("race");
  std::vector<pid_t> kids;
  for (int k = 0; k < 4; ++k) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      auto p = shmpool::i64_pool::open(path, 64);
      auto i = p.alloc_set(k);
      ::_exit(i ? 0 : 1);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  auto p = shmpool::i64_pool::open(path, 64);
  EXPECT_EQ(p.stats().allocs, 4u) << "a second initialisation would have wiped earlier allocs";
}

// ---- hostile and corrupted files ------------------------------------------------

TEST(Pool, Misuse_FilesThatAreNotPoolsAreRejected) {
  temp_dir d;
  auto write_file = [&](const char* name, std::size_t n, int byte) {
    std::string s(n, static_cast<char>(byte));
    std::FILE* f = std::fopen(d.file(name).c_str(), "w");
    std::fwrite(s.data(), 1, s.size(), f);
    std::fclose(f);
  };
  write_file("zeros", 8192, 0);
  write_file("ones", 8192, 0xFF);
  write_file("short", 10, 'x');
  EXPECT_EQ(error_code_of([&] { shmpool::pool::open(d.file("zeros"), 4, 8); }), shmpool::errc::bad_magic);
  EXPECT_EQ(error_code_of([&] { shmpool::pool::open(d.file("ones"), 4, 8); }), shmpool::errc::bad_magic);
  EXPECT_EQ(error_code_of([&] { shmpool::pool::open(d.file("short"), 4, 8); }), shmpool::errc::truncated);
}

TEST(Pool, Misuse_TruncatedPoolIsRejected) {
  temp_dir d;
  { auto p = shmpool::pool::open(d.file("a"), 1000, 64); }
  fs::resize_file(d.file("a"), 4096);
  EXPECT_EQ(error_code_of([&] { shmpool::pool::open(d.file("a"), 1000, 64); }), shmpool::errc::truncated);
}

TEST(Pool, Misuse_HeaderChecksumMismatchIsRejected) {
  temp_dir d;
  { auto p = shmpool::pool::open(d.file("a"), 10, 8); }
  const int fd = ::open(d.file("a").c_str(), O_RDWR);
  std::uint64_t cap = 11;
  ASSERT_EQ(::pwrite(fd, &cap, 8, offsetof(shmpool::detail::pool_header, capacity)), 8);
  ::close(fd);
  EXPECT_EQ(error_code_of([&] { shmpool::pool::open(d.file("a"), 10, 8); }), shmpool::errc::corrupt_header);
}

// A hostile writer who recomputes the checksum: every field check must hold on its own.
TEST(Pool, Misuse_ForgedZeroCapacityIsRejected) {
  temp_dir d;
  { auto p = shmpool::pool::open(d.file("a"), 10, 8); }
  forge_header(d.file("a"), [](auto& h) { h.capacity = 0; });
  EXPECT_EQ(error_code_of([&] { shmpool::pool::open(d.file("a"), 10, 8); }), shmpool::errc::corrupt_header);
}
TEST(Pool, Misuse_ForgedElemSizeOfATypedPoolIsRejected) {
  temp_dir d;
  { auto p = shmpool::i64_pool::open(d.file("a"), 64); }
  forge_header(d.file("a"), [](auto& h) { h.elem_size = 1; });
  EXPECT_EQ(error_code_of([&] { shmpool::i64_pool::open(d.file("a"), 64); }), shmpool::errc::layout_mismatch);
}
TEST(Pool, Misuse_ForgedOffsetIsRejected) {
  temp_dir d;
  { auto p = shmpool::pool::open(d.file("a"), 10, 8); }
  forge_header(d.file("a"), [](auto& h) { h.data_offset += 4096 * 16; });
  EXPECT_EQ(error_code_of([&] { shmpool::pool::open(d.file("a"), 10, 8); }), shmpool::errc::layout_mismatch);
}
TEST(Pool, Misuse_ForgedVariantIsRejected) {
  temp_dir d;
  { auto p = shmpool::i64_pool::open(d.file("a"), 10); }
  forge_header(d.file("a"), [](auto& h) { h.variant = static_cast<std::uint32_t>(shmpool::pool_variant::f64); });
  EXPECT_EQ(error_code_of([&] { shmpool::i64_pool::open(d.file("a"), 10); }), shmpool::errc::wrong_variant);
}
TEST(Pool, Misuse_UnknownFormatVersionIsRejected) {
  temp_dir d;
  { auto p = shmpool::pool::open(d.file("a"), 10, 8); }
  forge_header(d.file("a"), [](auto& h) { h.format += 1u << 24; });
  EXPECT_EQ(error_code_of([&] { shmpool::pool::open(d.file("a"), 10, 8); }), shmpool::errc::unsupported_format);
}

// free() is one CAS: of two frees racing on one allocation exactly one
// succeeds (a check-then-store free lets both succeed, and the second may
// free an allocation claimed in between: SHMPOOL_MUTANT_FREE_BY_STORE).
// The main thread varies its start so the two frees overlap in some rounds.
TEST(Pool, TwoRacingFreesOfOneAllocationFreeItOnce) {
  auto p = shmpool::i64_pool::anonymous(1);
  // At most 100,000 rounds or 3 s: on a loaded machine the two threads
  // may rarely run at once (the spins yield), and the test must not time out.
  constexpr int max_rounds = 100000;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  std::atomic<int> round{0}, done{0}, wins{0};
  std::atomic<std::uint64_t> slot{0};
  std::thread racer([&] {
    for (int r = 1;; ++r) {
      int seen = 0;
      for (int spins = 0; (seen = round.load(std::memory_order_acquire)) >= 0 && seen < r; ++spins)
        if (spins > 4096) std::this_thread::yield();  // spin first (the race needs both running), then let others run
      if (seen < 0) return;  // the main thread is done
      for (int k = 0; k < (r * 13) % 61; ++k) asm volatile("");
      if (p.free(slot.load(std::memory_order_relaxed))) wins.fetch_add(1);
      done.store(r, std::memory_order_release);
    }
  });
  int doubles = 0, rounds = 0;
  for (int r = 1; r <= max_rounds && std::chrono::steady_clock::now() < deadline; ++r, ++rounds) {
    const auto s = p.try_alloc();
    ASSERT_TRUE(s.has_value()) << "round " << r << ": the slot was not freed by the round before";
    slot.store(*s, std::memory_order_relaxed);
    round.store(r, std::memory_order_release);
    // Vary the overlap over more than the time the racer takes to see the
    // round (a cache line's trip between cores, 50-300 ns on a VM): with a
    // shorter range this thread's free may always come first on some
    // machines, and the race never happens.
    for (int k = 0; k < (r * 7) % 1021; ++k) asm volatile("");
    const bool mine = p.free(*s);
    for (int spins = 0; done.load(std::memory_order_acquire) < r; ++spins)
      if (spins > 4096) std::this_thread::yield();
    if (wins.exchange(0) + (mine ? 1 : 0) != 1) ++doubles;
  }
  round.store(-1, std::memory_order_release);
  racer.join();
  EXPECT_EQ(doubles, 0) << "rounds where both frees succeeded (or neither), of " << rounds;
  EXPECT_TRUE(p.check().empty());
}

TEST(Pool, CheckReportsStaleAndMalformedGroupMarks) {
  auto p = shmpool::pool::memfd("corrupt", 70, 8);
  EXPECT_TRUE(p.check().empty());
  auto l = *shmpool::detail::compute_layout(shmpool::detail::variant_code::raw, 70, 8, 0);
  auto* base = static_cast<std::byte*>(p.data_ptr()) - l.data_offset;
  auto* marks = reinterpret_cast<std::uint64_t*>(base + l.groups_offset);
  marks[0] = shmpool::detail::group_full;  // group 0 marked full over free slots (a killed scanner)
  marks[8] = 7;                           // group 1: a malformed mark
  auto problems = p.check();
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("group 0 is marked full but slot 0 is free"), std::string::npos) << problems[0];
  EXPECT_NE(problems[1].find("group 1 has a malformed mark"), std::string::npos) << problems[1];
  EXPECT_EQ(p.used(), 0u) << "used() counts slot words, never marks";
  // The stale mark hides group 0 from scans (a mark is trusted; only a
  // handle's own hint slot is tried without looking at it); the malformed
  // one hides nothing: group 1's six slots are found.
  const auto six = p.alloc_n(6, std::chrono::seconds(0));
  ASSERT_TRUE(six.has_value());
  for (const auto s : *six) EXPECT_GE(s, 64u);
  EXPECT_FALSE(p.alloc_n(1, std::chrono::seconds(0)).has_value()) << "group 0 is hidden until recovery";
  EXPECT_EQ(p.recover_stale(), 0u) << "no slot is freed: only marks are cleared";
  EXPECT_TRUE(p.check().empty());
  const auto one = p.alloc_n(1, std::chrono::seconds(0));
  ASSERT_TRUE(one.has_value()) << "after recovery group 0 is found again";
  EXPECT_LT(one->front(), 64u);
}

TEST(Pool, AFullGroupIsMarkedAndTheNextFreeClearsTheMark) {
  auto p = shmpool::i64_pool::memfd("marks", 130);
  auto l = *shmpool::detail::compute_layout(shmpool::detail::variant_code::i64, 130, 8, 0);
  auto* base = static_cast<std::byte*>(p.data_ptr()) - l.data_offset;
  const auto* marks = reinterpret_cast<const std::atomic<std::uint64_t>*>(base + l.groups_offset);
  auto mark = [&](int g) { return marks[8 * g].load(); };
  auto all = *p.alloc_n(130);
  EXPECT_EQ(mark(0) | mark(1) | mark(2), 0u) << "alloc_n marks nothing";
  EXPECT_FALSE(p.try_alloc().has_value());
  EXPECT_EQ(mark(0), shmpool::detail::group_full);
  EXPECT_EQ(mark(1), shmpool::detail::group_full);
  EXPECT_EQ(mark(2), shmpool::detail::group_full) << "the partial last group is marked too";
  ASSERT_TRUE(p.free(70));
  EXPECT_EQ(mark(1), 0u) << "a free in a marked group clears its mark before it wakes anyone (G)";
  EXPECT_EQ(mark(0), shmpool::detail::group_full);
  EXPECT_EQ(*p.try_alloc(), 70u);
  EXPECT_TRUE(p.check().empty());
  p.free_n(all);
}

// ---- recovery ---------------------------------------------------------------------

TEST(Pool, RecoverStaleFreesSlotsOfADeadProcess) {
  auto p = shmpool::i64_pool::anonymous(8);
  auto mine = *p.alloc();
  const pid_t child = ::fork();
  if (child == 0) {
    (void)p.alloc_n(3);
    ::_exit(0);
  }
  // Recovered while the child is still an unreaped zombie, then after.
  while (p.used() < 4) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(p.recover_stale(), 3u);
  int st;
  ::waitpid(child, &st, 0);
  EXPECT_EQ(p.recover_stale(), 0u);
  EXPECT_TRUE(p.is_allocated(mine)) << "a live owner's slot is kept";
  EXPECT_EQ(p.stats().recoveries, 3u);
  EXPECT_EQ(p.used(), 1u);
  EXPECT_TRUE(p.check().empty());
}

// An owner whose pid now belongs to another live process is still dead.
TEST(Pool, RecoverStaleIsNotFooledByPidReuse) {
  auto p = shmpool::pool::memfd("reuse", 4, 8);
  auto i = *p.alloc();
  auto l = *shmpool::detail::compute_layout(shmpool::detail::variant_code::raw, 4, 8, 0);
  auto* base = static_cast<std::byte*>(p.data_ptr()) - l.data_offset;
  auto* meta = reinterpret_cast<std::atomic<std::uint64_t>*>(base + l.meta_offset);
  // The parent process is alive; forge an owner with its pid but another start time.
  const std::uint64_t live = shmpool::platform::proc_liveness::identity_of(::getppid());
  ASSERT_NE(live, 0u);
  const std::uint64_t reused = live ^ 0x100;  // same pid, a start time 256 ticks away (one tick is tolerated)
  meta[2 * i].store(shmpool::detail::make_slot_word(shmpool::detail::slot_state::allocated, reused));
  EXPECT_EQ(p.owner(i), ::getppid());
  EXPECT_EQ(p.recover_stale(), 1u);
  EXPECT_FALSE(p.is_allocated(i));
  // The same pid with its real start time is alive and kept.
  auto j = *p.alloc();
  meta[2 * j].store(shmpool::detail::make_slot_word(shmpool::detail::slot_state::allocated, live));
  EXPECT_EQ(p.recover_stale(), 0u);
  EXPECT_TRUE(p.is_allocated(j));
}

TEST(Pool, ResetFreesEverything) {
  auto p = shmpool::pool::anonymous(100, 8);
  (void)p.alloc_n(60);
  p.reset();
  EXPECT_EQ(p.used(), 0u);
  EXPECT_TRUE(p.allocated_slots().empty());
  EXPECT_TRUE(p.check().empty());
}

// Workers alloc/set/free on a tiny pool while the test SIGKILLs them at
// random; after each kill one recover_stale() must leave every slot free or
// owned by a live worker, and in the end the pool must be empty and healthy.
// Each worker reads back the value it wrote before it frees the slot: a
// slot handed to two live workers at once shows as another's pid, and the
// worker exits with two_holders (which the test sees when it reaps it).
constexpr int two_holders = 42;

TEST(Pool, KilledWorkersNeverCostASlot) {
  auto p = shmpool::i64_pool::anonymous(4);
  auto spawn = [&] {
    const pid_t pid = ::fork();
    if (pid == 0) {
      const std::int64_t me = ::getpid();
      std::minstd_rand rng(static_cast<unsigned>(me));
      auto still_mine = [&](shmpool::slot_index i) {
        if (p.get(i) != me || p.owner(i) != me) ::_exit(two_holders);
      };
      try {
        for (;;) {
          if (auto i = p.alloc(std::chrono::milliseconds(5))) {
            p.set(*i, me);
            if (rng() % 4 == 0) {
              std::vector<shmpool::slot_index> two{*i};
              if (auto more = p.alloc_n(1, std::chrono::milliseconds(0))) {
                p.set((*more)[0], me);
                two.push_back((*more)[0]);
              }
              for (const auto s : two) still_mine(s);
              p.free_n(two);
            } else {
              still_mine(*i);
              p.free(*i);
            }
          }
        }
      } catch (...) {  // e.g. "slot is not allocated": someone freed our slot
        ::_exit(two_holders);  // never return into the test framework in the child
      }
    }
    return pid;
  };
  // Reaps a worker; false if it found a slot it held taken over.
  auto reaped_clean = [](pid_t w) {
    int status = 0;
    ::waitpid(w, &status, 0);
    return !(WIFEXITED(status) && WEXITSTATUS(status) == two_holders);
  };
  std::vector<pid_t> workers;
  struct kill_on_exit {  // a failed ASSERT must not leave workers running
    std::vector<pid_t>& pids;
    ~kill_on_exit() {
      for (const pid_t w : pids) {
        ::kill(w, SIGKILL);
        ::waitpid(w, nullptr, 0);
      }
    }
  } left_over{workers};
  constexpr int worker_count = 3;
  for (int k = 0; k < worker_count; ++k) workers.push_back(spawn());
  std::minstd_rand rng(12345);
  const int kills = 300;
  for (int k = 0; k < kills; ++k) {
    std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 800));
    const std::size_t victim = rng() % workers.size();
    ::kill(workers[victim], SIGKILL);
    ASSERT_TRUE(reaped_clean(workers[victim])) << "worker " << workers[victim]
                                               << " found its slot held by another live worker";
    workers[victim] = spawn();
    p.recover_stale();
    std::set<pid_t> live(workers.begin(), workers.end());
    for (shmpool::slot_index i = 0; i < p.capacity(); ++i) {
      const pid_t o = p.owner(i);
      ASSERT_TRUE(o == 0 || live.count(o)) << "slot " << i << " owned by dead pid " << o << " after kill " << k;
    }
  }
  for (pid_t w : workers) {
    ::kill(w, SIGKILL);
    EXPECT_TRUE(reaped_clean(w)) << "worker " << w << " found its slot held by another live worker";
  }
  workers.clear();
  p.recover_stale();
  EXPECT_EQ(p.used(), 0u);
  EXPECT_TRUE(p.allocated_slots().empty());
  const auto problems = p.check();
  EXPECT_TRUE(problems.empty()) << problems.front();
  // A worker killed while asleep in alloc stays registered (slot_protocol.hpp,
  // "asleep, registered"), one count per killed process at most: more, or a
  // count that wrapped below zero, is a leak of the wait protocol.
  EXPECT_LE(p.stats().waiters, static_cast<std::uint64_t>(kills + worker_count));
}

// ---- eventfd ----------------------------------------------------------------------

TEST(Pool, EventfdNotifyAndConsume) {
  auto p = shmpool::pool::anonymous(2, 8);
  EXPECT_EQ(p.fileno(), -1);
  EXPECT_FALSE(p.notify());
  EXPECT_EQ(p.eventfd_consume(), 0u);
  const int fd = p.eventfd();
  ASSERT_GE(fd, 0);
  EXPECT_EQ(p.eventfd(), fd) << "one eventfd per handle";
  EXPECT_EQ(p.fileno(), fd);
  EXPECT_TRUE(p.notify());
  EXPECT_TRUE(p.notify());
  EXPECT_EQ(p.eventfd_consume(), 2u);
  EXPECT_EQ(p.eventfd_consume(), 0u);
  const int mine = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  p.eventfd_set(mine);
  EXPECT_EQ(p.fileno(), mine);
  EXPECT_TRUE(p.notify());
  std::uint64_t v = 0;
  EXPECT_EQ(::read(mine, &v, 8), 8);
  EXPECT_EQ(v, 1u);
  ::close(mine);
}
