// The pool's lifecycle with real processes, namespaces and limits: creation
// and opening (PROTOCOL.md "Creation and opening"), what a failed or killed
// creator leaves, fork during initialisation, the backing-size check, and
// the error messages of the factories.  The crash-point sweep (stress/,
// init scenarios) kills a creator at every step; these tests cover what a
// single run can prove.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "shmpool/detail/format.hpp"
#include "shmpool/platform/sys.hpp"
#include "shmpool/pool.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr int skipped = 77;  // a child that could not set up its namespace

using shmpool_test::temp_dir;

// Runs fn in a forked child, killed after `limit`; returns its exit status
// (fn's value), or 100 + the signal that ended it (SIGALRM: it hung).
template <class F>
int in_child(F&& fn, unsigned limit_s = 30) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(limit_s);
    int rc = 1;
    try {
      rc = fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
    }
    ::_exit(rc);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

// In a child: a private mount namespace with a tmpfs of `size` at `dir`.
bool private_tmpfs(const fs::path& dir, const char* size) {
  if (::unshare(CLONE_NEWNS) != 0) return false;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return false;
  return ::mount("tmpfs", dir.c_str(), "tmpfs", 0, size) == 0;
}

template <class F>
shmpool::error error_of(F&& fn) {
  try {
    fn();
  } catch (const shmpool::error& e) {
    return e;
  }
  ADD_FAILURE() << "expected shmpool::error";
  return shmpool::error(std::error_code(), "none");
}

shmpool::errc errc_of(const shmpool::error& e) {
  EXPECT_EQ(e.code().category(), shmpool::error_category()) << e.what();
  return static_cast<shmpool::errc>(e.code().value());
}

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

std::uint64_t meminfo_kib(const char* key) {
  std::ifstream in("/proc/meminfo");
  std::string k;
  std::uint64_t v = 0;
  std::string unit;
  while (in >> k >> v) {
    if (k == key) return v;
    std::getline(in, unit);
  }
  return 0;
}

// A value no other process writes: proves which pool a process is on.
constexpr std::int64_t waiter_mark = 4242;

bool holds_mark(const shmpool::i64_pool& p) {
  for (const auto s : p.allocated_slots())
    if (p.get(s) == waiter_mark) return true;
  return false;
}

}  // namespace

// ---- item 15: a failed creator never splits one name into two pools ----------

// Creator A asks for more than the tiny tmpfs holds and fails; opener B
// starts while A is at work.  Before the fix A created the file in place,
// B waited on its lock, and A's failure unlinked the path: B initialised
// the nameless file and the next opener C created a second pool.  Now A
// never names an incomplete pool and never removes a path, so B and C
// are on one pool.
TEST(PoolLifecycle, FailedCreatorNeverSplitsOnePathIntoTwoPools) {
  temp_dir d;
  const int rc = in_child([&] {
    if (!private_tmpfs(d.path(), "size=32m")) return skipped;
    auto* a_done = static_cast<std::atomic<int>*>(
        ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    for (int round = 0; round < 20; ++round) {
      const fs::path path = d.file("pool" + std::to_string(round));
      a_done->store(0);
      const pid_t a = ::fork();
      if (a == 0) {
        try {
          // ~80 MiB: more than the tmpfs holds.
          shmpool::i64_pool::open(path, std::uint64_t{1} << 22);
        } catch (const shmpool::error&) {
        }
        a_done->store(1);
        ::_exit(0);
      }
      const pid_t b = ::fork();
      if (b == 0) {
        // Open as soon as A's file appears (or once A is done).
        while (!fs::exists(path) && a_done->load() == 0) {
        }
        auto p = shmpool::i64_pool::open(path, 64);
        ::_exit(p.alloc_set(waiter_mark) ? 0 : 1);
      }
      int st = 0;
      ::waitpid(a, &st, 0);
      ::waitpid(b, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        std::fprintf(stderr, "round %d: opener B failed\n", round);
        return 2;
      }
      auto c = shmpool::i64_pool::open(path, 64);
      if (!holds_mark(c)) {
        std::fprintf(stderr, "round %d: B and C are on two different pools under one name\n", round);
        return 3;
      }
    }
    return 0;
  });
  if (rc == skipped) GTEST_SKIP() << "needs a private mount namespace (root)";
  EXPECT_EQ(rc, 0);
}

// The same with a placeholder: an empty file made beforehand.  A failed
// creator leaves the placeholder as it found it.
TEST(PoolLifecycle, FailedCreatorLeavesThePlaceholderForTheNextOpener) {
  temp_dir d;
  const int rc = in_child([&] {
    if (!private_tmpfs(d.path(), "size=32m")) return skipped;
    const fs::path path = d.file("pool");
    { std::ofstream touch(path); }
    const auto e = error_of([&] { shmpool::i64_pool::open(path, std::uint64_t{1} << 22); });
    if (errc_of(e) != shmpool::errc::exceeds_backing || fs::file_size(path) != 0) return 2;
    if (names_in(d.path()) != std::vector<std::string>{"pool"}) return 3;  // no temporary left
    auto p = shmpool::i64_pool::open(path, 64);
    return p.alloc_set(1) ? 0 : 4;
  });
  if (rc == skipped) GTEST_SKIP() << "needs a private mount namespace (root)";
  EXPECT_EQ(rc, 0);
}

// Fault build (-DSHMPOOL_FAULTS=ON): posix_fallocate fails after the size
// check passed (the space went meanwhile).  The failed creator leaves
// nothing at a fresh name and the placeholder as it was, and the next
// opener creates the pool.
TEST(PoolLifecycle, FallocateFailingLeavesTheNameAsItWas) {
  namespace sys = shmpool::platform::sys;
  if constexpr (!sys::faults_compiled_in) {
    GTEST_SKIP() << "needs the fault build (-DSHMPOOL_FAULTS=ON)";
  } else {
#if defined(SHMPOOL_FAULTS)
    temp_dir d;
    { std::ofstream touch(d.file("placeholder")); }
    for (const char* name : {"fresh", "placeholder"}) {
      sys::fault_plan plan;
      plan.nth = 1;
      plan.error = ENOSPC;
      plan.only_one_kind = true;
      plan.kind = sys::call::fallocate;
      sys::arm_fault(plan);
      const auto e = error_of([&] { shmpool::pool::open(d.file(name), 8, 8); });
      sys::arm_fault(sys::fault_plan{});
      EXPECT_EQ(e.code(), std::error_code(ENOSPC, std::system_category())) << e.what();
      auto names = names_in(d.path());
      std::sort(names.begin(), names.end());
      EXPECT_EQ(names, std::vector<std::string>{"placeholder"}) << "after failing on " << name;
      EXPECT_EQ(fs::file_size(d.file("placeholder")), 0u);
      EXPECT_TRUE(shmpool::pool::open(d.file(name), 8, 8).alloc());
      if (std::string(name) == "fresh") fs::remove(d.file(name));
    }
#endif
  }
}

// Fault build: every system call open makes fails in turn (SQLite's I/O
// error loop), in both temporary modes.  After each failure the name is as
// it was (absent, or the placeholder unchanged) or names a complete pool,
// the error is a shmpool::error, and no temporary is left in the directory.
int sweep_failing_calls(const fs::path& dir, int err) {
#if defined(SHMPOOL_FAULTS)
  namespace sys = shmpool::platform::sys;
  for (const bool placeholder : {false, true}) {
    for (std::uint64_t n = 1; n < 500; ++n) {
      const fs::path path = dir / "pool";
      fs::remove(path);
      if (placeholder) std::ofstream touch(path);
      sys::fault_plan plan;
      plan.nth = n;
      plan.error = err;
      sys::arm_fault(plan);
      bool opened = false;
      try {
        opened = shmpool::pool::open(path, 8, 8).capacity() == 8;
      } catch (const shmpool::error&) {
      } catch (const std::exception& e) {
        std::fprintf(stderr, "call %llu: not a shmpool::error: %s\n", static_cast<unsigned long long>(n), e.what());
        return 2;
      }
      const bool fired = sys::faults_injected() > 0;
      sys::arm_fault(sys::fault_plan{});
      for (const auto& name : names_in(dir)) {
        // A second name of the published pool is tolerated: its creator
        // linked it at the final name and then failed to remove the
        // temporary name (the pool is complete under both).
        if (name == "pool" || (fs::exists(path) && fs::equivalent(dir / name, path))) continue;
        std::fprintf(stderr, "call %llu (%s): a temporary is left: %s\n", static_cast<unsigned long long>(n),
                     placeholder ? "placeholder" : "fresh", name.c_str());
        return 3;
      }
      for (const auto& name : names_in(dir))
        if (name != "pool") fs::remove(dir / name);
      const bool as_it_was = placeholder ? fs::exists(path) && fs::file_size(path) == 0 : !fs::exists(path);
      if (!as_it_was) {
        try {
          shmpool::pool::open(path, 8, 8);  // must be a complete pool
        } catch (const std::exception& e) {
          std::fprintf(stderr, "call %llu: the name holds an incomplete pool: %s\n",
                       static_cast<unsigned long long>(n), e.what());
          return 4;
        }
      } else if (opened) {
        return 5;  // opened, yet nothing at the name
      }
      if (!fired) break;  // open made fewer than n calls: every one has failed once
    }
  }
#else
  (void)dir;
  (void)err;
#endif
  return 0;
}

TEST(PoolLifecycle, EveryFailingCallOfOpenLeavesTheNameCompleteOrAsItWas) {
  if constexpr (!shmpool::platform::sys::faults_compiled_in) GTEST_SKIP() << "needs the fault build (-DSHMPOOL_FAULTS=ON)";
  for (const int err : {EIO, ENOSPC, EACCES, EINTR}) {
    temp_dir d;
    EXPECT_EQ(sweep_failing_calls(d.path(), err), 0) << "unnamed temporaries, errno " << err;
    temp_dir n;
    const int rc = in_child([&] {  // without /proc: named temporaries
      if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
          ::mount("tmpfs", "/proc", "tmpfs", 0, "size=1m") != 0)
        return skipped;
      return sweep_failing_calls(n.path(), err);
    });
    if (rc != skipped) EXPECT_EQ(rc, 0) << "named temporaries, errno " << err;
  }
}

// ---- item 16: fork during initialisation -------------------------------------

// A creator K is replacing a placeholder (it holds the placeholder's flock)
// when another of its threads forks a long-lived child G; then K is killed.
// flock belongs to the open file description, which G shares: before the
// fix G held the lock for good and every later open blocked.  Now the fork
// child handler closes G's copies of the init fds.
TEST(PoolLifecycle, ForkChildOfAKilledCreatorDoesNotHoldTheInitLock) {
  temp_dir d("/dev/shm");  // tmpfs: reserving 128 MiB takes long enough to fork and kill
  const fs::path path = d.file("pool");
  bool tested = false;
  for (int attempt = 0; attempt < 5 && !tested; ++attempt) {
    fs::remove(path);
    { std::ofstream touch(path); }
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    const pid_t k = ::fork();
    if (k == 0) {
      std::thread forker([&] {
        // Wait until the placeholder is locked (by K's open), then fork.
        const int probe = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        while (::flock(probe, LOCK_EX | LOCK_NB) == 0) ::flock(probe, LOCK_UN);
        const pid_t g = ::fork();
        if (g == 0) {
          for (;;) ::pause();  // a daemon that outlives the creator
        }
        (void)!::write(pipe_fds[1], &g, sizeof g);
      });
      try {
        shmpool::pool::open(path, 1 << 17, 1024);  // 128 MiB
      } catch (...) {
      }
      forker.join();
      ::pause();  // killed by the test
      ::_exit(0);
    }
    pid_t g = 0;
    ASSERT_EQ(::read(pipe_fds[0], &g, sizeof g), static_cast<ssize_t>(sizeof g));
    ::kill(k, SIGKILL);
    ::waitpid(k, nullptr, 0);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    // Valid only if K died before its pool was published.
    std::uint64_t first = 0;
    {
      std::ifstream in(path, std::ios::binary);
      in.read(reinterpret_cast<char*>(&first), sizeof first);
    }
    tested = first != shmpool::detail::pool_magic;
    const int rc = in_child([&] { return shmpool::pool::open(path, 16, 8).alloc() ? 0 : 1; }, 10);
    ::kill(g, SIGKILL);
    ::waitpid(g, nullptr, 0);  // not our child: reaped by init; waitpid just fails
    EXPECT_EQ(rc, 0) << (rc == 100 + SIGALRM ? "open blocked on a lock the fork child inherited" : "open failed");
    if (rc != 0) break;
  }
  EXPECT_TRUE(tested) << "the creator finished before it could be killed in 5 attempts";
}

// ---- item 17: one corrupted word never costs a live pool ------------------------

TEST(PoolLifecycle, MagicCorruptedToTheInitMarkerIsRefusedAndThePoolKept) {
  temp_dir d;
  const fs::path path = d.file("pool");
  std::vector<shmpool::slot_index> held;
  {
    auto p = shmpool::i64_pool::open(path, 64);
    for (std::int64_t v = 1; v <= 3; ++v) held.push_back(*p.alloc_set(v * 111));
  }
  {
    const int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_EQ(::pwrite(fd, &shmpool::detail::pool_init_magic, 8, 0), 8);
    ::close(fd);
  }
  const std::string before = file_bytes(path);
  const auto e = error_of([&] { shmpool::i64_pool::open(path, 64); });
  EXPECT_EQ(errc_of(e), shmpool::errc::corrupt_header);
  EXPECT_NE(std::string(e.what()).find("init marker"), std::string::npos) << e.what();
  EXPECT_TRUE(file_bytes(path) == before) << "open must not touch a file it refuses";
  // Repair the one word: every slot and value is still there.
  {
    const int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_EQ(::pwrite(fd, &shmpool::detail::pool_magic, 8, 0), 8);
    ::close(fd);
  }
  auto p = shmpool::i64_pool::open(path, 64);
  EXPECT_EQ(p.used(), 3u);
  for (std::size_t k = 0; k < held.size(); ++k) EXPECT_EQ(p.get(held[k]), static_cast<std::int64_t>((k + 1) * 111));
}

// An earlier version's creator that died before writing the header left the
// init marker and zeros: nothing was ever allocated there, so it is a
// placeholder, replaced by a complete pool (never written in place).
TEST(PoolLifecycle, InterruptedInitialisationOfAnEarlierVersionIsReplaced) {
  temp_dir d;
  const fs::path path = d.file("pool");
  {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0640);
    ASSERT_EQ(::pwrite(fd, &shmpool::detail::pool_init_magic, 8, 0), 8);
    ASSERT_EQ(::ftruncate(fd, 8192), 0);
    ::close(fd);
  }
  struct stat old {};
  ASSERT_EQ(::stat(path.c_str(), &old), 0);
  auto p = shmpool::pool::open(path, 4, 8);
  EXPECT_TRUE(p.alloc());
  struct stat now {};
  ASSERT_EQ(::stat(path.c_str(), &now), 0);
  EXPECT_NE(now.st_ino, old.st_ino) << "replaced by rename, not re-initialised in place";
  EXPECT_EQ(now.st_mode & 0777, 0640u) << "the placeholder's permissions are kept";
  EXPECT_EQ(names_in(d.path()), std::vector<std::string>{"pool"});
}

// ---- item 14 (single run): nothing incomplete is ever at the final name ---------

TEST(PoolLifecycle, OpenersRacingOnAPlaceholderEndOnOnePool) {
  temp_dir d;
  const fs::path path = d.file("pool");
  { std::ofstream touch(path); }
  std::vector<pid_t> kids;
  for (int k = 0; k < 4; ++k) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      auto p = shmpool::i64_pool::open(path, 64);
      ::_exit(p.alloc_set(k) ? 0 : 1);
    }
    kids.push_back(pid);
  }
  for (const pid_t pid : kids) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  auto p = shmpool::i64_pool::open(path, 64);
  EXPECT_EQ(p.stats().allocs, 4u) << "every opener on the one pool";
  EXPECT_EQ(names_in(d.path()), std::vector<std::string>{"pool"});
}

// Without /proc an O_TMPFILE cannot be named: the named-temporary fallback
// creates, replaces a placeholder, and leaves no temporary behind.
TEST(PoolLifecycle, NamedTemporaryFallbackWithoutProc) {
  temp_dir d;
  const int rc = in_child([&] {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", "/proc", "tmpfs", 0, "size=1m") != 0)
      return skipped;
    auto fresh = shmpool::pool::open(d.file("fresh"), 8, 8);
    { std::ofstream touch(d.file("placeholder")); }
    auto replaced = shmpool::pool::open(d.file("placeholder"), 8, 8);
    auto again = shmpool::pool::open(d.file("fresh"), 8, 8);
    auto names = names_in(d.path());
    std::sort(names.begin(), names.end());
    if (names != std::vector<std::string>{"fresh", "placeholder"}) return 2;
    return fresh.check().empty() && replaced.check().empty() && again.capacity() == 8 ? 0 : 3;
  });
  if (rc == skipped) GTEST_SKIP() << "needs a private mount namespace (root)";
  EXPECT_EQ(rc, 0);
}

TEST(PoolLifecycle, FifoAtThePathIsRefusedWithoutBlocking) {
  temp_dir d;
  ASSERT_EQ(::mkfifo(d.file("fifo").c_str(), 0600), 0);
  const int rc = in_child(
      [&] {
        const auto e = error_of([&] { shmpool::pool::open(d.file("fifo"), 4, 8); });
        return std::string(e.what()).find("not a regular file") != std::string::npos ? 0 : 1;
      },
      10);
  EXPECT_EQ(rc, 0);
}

// ---- item 28: the backing is checked before anything is reserved -------------

TEST(PoolLifecycle, AnonymousPoolLargerThanMemoryIsRefusedBeforeReserving) {
  const std::uint64_t memory = (meminfo_kib("MemTotal:") + meminfo_kib("SwapTotal:")) * 1024;
  // capacity 2^32 x 160 bytes: about 708 GiB, within the format's 1 TiB limit.
  const std::uint64_t capacity = std::uint64_t{1} << 32, elem_size = 160;
  const auto asked = shmpool::detail::compute_layout(shmpool::detail::variant_code::raw, capacity, elem_size, 0);
  ASSERT_TRUE(asked);
  if (asked->total_size <= memory) GTEST_SKIP() << "this machine has more memory than the pool";
  const auto started = std::chrono::steady_clock::now();
  for (const bool memfd : {false, true}) {
    const auto e = error_of([&] {
      if (memfd) shmpool::pool::memfd("huge", capacity, elem_size);
      else shmpool::pool::anonymous(capacity, elem_size);
    });
    EXPECT_EQ(errc_of(e), shmpool::errc::exceeds_backing);
    const std::string what = e.what();
    EXPECT_NE(what.find(std::to_string(asked->total_size)), std::string::npos) << what;
    EXPECT_NE(what.find("available memory"), std::string::npos) << what;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s) << "refused before reserving, not after";
}

TEST(PoolLifecycle, PoolLargerThanItsTmpfsIsRefusedBeforeReserving) {
  temp_dir d;
  const int rc = in_child([&] {
    if (!private_tmpfs(d.path(), "size=1m")) return skipped;
    const auto e = error_of([&] { shmpool::pool::open(d.file("pool"), 1024, 4096); });  // 4 MiB
    const std::string what = e.what();
    if (errc_of(e) != shmpool::errc::exceeds_backing) return 2;
    if (what.find("free space") == std::string::npos || what.find("bytes") == std::string::npos) return 3;
    if (!names_in(d.path()).empty()) return 4;  // nothing left behind
    return shmpool::pool::open(d.file("small"), 16, 64).alloc() ? 0 : 5;
  });
  if (rc == skipped) GTEST_SKIP() << "needs a private mount namespace (root)";
  EXPECT_EQ(rc, 0);
}

// A child memory cgroup with a limit, made by the test (root, a writable
// cgroup tree); ok() is false where the machine does not allow one.
class memory_cgroup {
 public:
  explicit memory_cgroup(std::uint64_t limit) {
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
      const auto first = line.find(':'), second = line.find(':', first + 1);
      if (first == std::string::npos || second == std::string::npos) continue;
      const std::string controllers = "," + line.substr(first + 1, second - first - 1) + ",";
      const std::string path = line.substr(second + 1);
      const std::string name = "/shmpool-lifecycle-" + std::to_string(::getpid());
      if (controllers.find(",memory,") != std::string::npos) {
        if (try_make("/sys/fs/cgroup/memory" + path + name, "memory.limit_in_bytes", limit)) return;
      } else if (controllers == ",,") {
        if (try_make("/sys/fs/cgroup" + path + name, "memory.max", limit)) return;
      }
    }
  }
  ~memory_cgroup() {
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  bool ok() const { return !dir_.empty(); }
  bool join() const {
    std::ofstream procs(dir_ + "/cgroup.procs");
    procs << ::getpid() << std::flush;
    return static_cast<bool>(procs);
  }

 private:
  bool try_make(const std::string& dir, const char* limit_file, std::uint64_t limit) {
    if (::mkdir(dir.c_str(), 0755) != 0) return false;
    std::ofstream out(dir + "/" + limit_file);
    out << limit << std::flush;
    if (!out) {
      ::rmdir(dir.c_str());
      return false;
    }
    dir_ = dir;
    return true;
  }
  std::string dir_;
};

// In a container the cgroup's limit, not the host's memory, is what a
// memory-backed pool must fit: beyond it the container's OOM killer runs.
TEST(PoolLifecycle, PoolLargerThanItsCgroupMemoryLimitIsRefused) {
  const memory_cgroup cg(64 << 20);
  if (!cg.ok()) GTEST_SKIP() << "needs a writable memory cgroup (root)";
  const int rc = in_child([&] {
    if (!cg.join()) return skipped;
    for (const bool memfd : {false, true}) {
      const auto e = error_of([&] {
        if (memfd) shmpool::pool::memfd("cgroup", 1 << 17, 1024);  // 128 MiB
        else shmpool::pool::anonymous(1 << 17, 1024);
      });
      if (errc_of(e) != shmpool::errc::exceeds_backing) return 2;
      if (std::string(e.what()).find("cgroup") == std::string::npos) return 3;
    }
    return shmpool::pool::anonymous(16, 64).alloc() ? 0 : 4;
  });
  if (rc == skipped) GTEST_SKIP() << "could not join the cgroup";
  EXPECT_EQ(rc, 0) << (rc == 100 + SIGKILL ? "OOM-killed: the limit was not checked" : "");
}

// Beyond RLIMIT_FSIZE, ftruncate raises SIGXFSZ (the process dies): the
// limit is checked first, for files and memfds alike.
TEST(PoolLifecycle, PoolLargerThanRlimitFsizeIsRefused) {
  temp_dir d;
  const int rc = in_child([&] {
    const rlimit one_mib{1 << 20, 1 << 20};
    if (::setrlimit(RLIMIT_FSIZE, &one_mib) != 0) return 9;
    for (int backing = 0; backing < 3; ++backing) {
      const auto e = error_of([&] {
        if (backing == 0) shmpool::pool::open(d.file("pool"), 1024, 4096);
        else if (backing == 1) shmpool::pool::memfd("fsize", 1024, 4096);
        else shmpool::pool::anonymous(1024, 4096);
      });
      if (errc_of(e) != shmpool::errc::exceeds_backing) return 2 + backing;
      if (std::string(e.what()).find("RLIMIT_FSIZE") == std::string::npos) return 5;
    }
    return names_in(d.path()).empty() ? 0 : 6;
  });
  EXPECT_EQ(rc, 0) << (rc == 100 + SIGXFSZ ? "killed by SIGXFSZ: the limit was not checked" : "");
}

// ---- item 31: every error names the parameter and its limit -------------------

TEST(PoolLifecycle, StrMaxLenMismatchNamesMaxLen) {
  temp_dir d;
  { auto p = shmpool::str_pool::open(d.file("s"), 10, 32); }
  const auto e = error_of([&] { shmpool::str_pool::open(d.file("s"), 10, 33); });  // same elem_size 40
  EXPECT_EQ(errc_of(e), shmpool::errc::parameter_mismatch);
  const std::string what = e.what();
  EXPECT_NE(what.find("max_len 32"), std::string::npos) << what;
  EXPECT_NE(what.find("max_len 33"), std::string::npos) << what;
}

TEST(PoolLifecycle, TotalSizeOverTheLimitSaysTheTotalSizeLimit) {
  const auto e = error_of([] { shmpool::pool::anonymous(std::uint64_t{1} << 32, std::uint64_t{1} << 30); });
  EXPECT_EQ(errc_of(e), shmpool::errc::bad_argument);
  const std::string what = e.what();
  EXPECT_NE(what.find("total size"), std::string::npos) << what;
  EXPECT_NE(what.find(std::to_string(shmpool::detail::max_total_size)), std::string::npos) << what;
  EXPECT_EQ(what.find("capacity must be"), std::string::npos) << what;
}

TEST(PoolLifecycle, HugeMaxLenDoesNotWrap) {
  const std::uint64_t huge = ~std::uint64_t{0} - 3;
  const auto e = error_of([&] { shmpool::str_pool::anonymous(8, huge); });
  EXPECT_EQ(errc_of(e), shmpool::errc::bad_argument);
  const std::string what = e.what();
  EXPECT_NE(what.find("max_len " + std::to_string(huge)), std::string::npos) << what;
  EXPECT_NE(what.find(std::to_string(shmpool::detail::max_str_len)), std::string::npos) << what;
  EXPECT_EQ(what.find("elem_size 0"), std::string::npos) << what;
}

TEST(PoolLifecycle, MemfdNameWithANulIsReportedWhole) {
  const std::string name("ab\0cd", 5);
  const auto e = error_of([&] { shmpool::pool::memfd(name, 8, 8); });
  EXPECT_EQ(errc_of(e), shmpool::errc::bad_argument);
  const std::string what = e.what();
  EXPECT_NE(what.find("ab\\x00cd"), std::string::npos) << what;
  EXPECT_NE(what.find("NUL byte at offset 2"), std::string::npos) << what;
  const auto long_name = error_of([] { shmpool::pool::memfd(std::string(300, 'x'), 8, 8); });
  EXPECT_NE(std::string(long_name.what()).find("300 bytes; the limit is 249"), std::string::npos)
      << long_name.what();
}

TEST(PoolLifecycle, EveryOutOfRangeParameterIsNamedWithItsLimit) {
  const auto what_of = [](auto fn) { return std::string(error_of(fn).what()); };
  EXPECT_NE(what_of([] { shmpool::pool::anonymous(0, 8); }).find("capacity 0 is out of range (1..4294967296)"),
            std::string::npos);
  EXPECT_NE(what_of([] { shmpool::pool::anonymous(8, 0); }).find("elem_size 0 is out of range (1..1073741824)"),
            std::string::npos);
  EXPECT_NE(what_of([] { shmpool::str_pool::anonymous(8, 0); }).find("max_len 0 is out of range"), std::string::npos);
}
