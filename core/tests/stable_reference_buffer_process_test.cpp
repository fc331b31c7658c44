// stable_reference_buffer across processes: fork (the child's operations
// never change the parent's counts; inherited buffers keep their counts;
// only the forking thread's scopes stay open; a fork racing a first attach),
// exec (a new image never trusts the old one's registry), a hostile
// environment (read-only, full or foreign-owned /dev/shm, no file
// descriptors left, process_vm_readv denied), a corrupted anchor page, and
// a run under valgrind's memcheck.  Children report through their exit
// status; fresh images are this executable run again
// (srb_process_support.hpp).
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <iterator>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/platform/liveness.hpp"
#include "shmpool/stable_reference_buffer.hpp"
#include "srb_process_support.hpp"

namespace {

using shmpool::stable_reference_buffer;
using delay = stable_reference_buffer::delay_deallocation;
namespace detail = shmpool::detail;
namespace platform = shmpool::platform;

detail::srb_stats stats() { return detail::srb_current_stats(); }

// The file name format 1 gave the registry of a process (the root segment).
std::string legacy_root_name(std::uint64_t identity) {
  char text[64];
  std::snprintf(text, sizeof text, "shmpool-srb-%016llx", static_cast<unsigned long long>(identity));
  return text;
}

// Runs fn in a forked child; returns its exit status (0 = fn returned true).
// The child dies by SIGALRM rather than hang; a child that hangs before it
// can arm its alarm (inside fork's own child handlers) is killed by the
// parent after 30 s (status 100 + SIGKILL).
template <class F>
int in_child(F&& fn) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(20);
    ::_exit(fn() ? 0 : 1);
  }
  int status = 0;
  for (int waited_ms = 0; ::waitpid(pid, &status, WNOHANG) == 0; waited_ms += 10) {
    if (waited_ms >= 30'000) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    ::usleep(10'000);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

// In a child: seccomp answers every process_vm_readv with err, as some
// container profiles do (any errno, EFAULT included).  False if the filter
// cannot be installed here.
bool deny_process_vm_readv(int err) {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_process_vm_readv, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(std::size(filter)), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
    return false;
  iovec probe{nullptr, 0};
  return ::process_vm_readv(::getpid(), &probe, 1, &probe, 1, 0) == -1 && errno == err;
}

// In a child: exactly one descriptor left (the lowest free one; every
// lower one is open, and RLIMIT_NOFILE forbids any higher one).
bool leave_one_descriptor() {
  const int lowest = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (lowest < 0) return false;
  ::close(lowest);
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return false;
  lim.rlim_cur = static_cast<rlim_t>(lowest) + 1;
  if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) return false;
  const int one = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int two = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const bool exactly_one = one == lowest && two < 0 && errno == EMFILE;
  if (one >= 0) ::close(one);
  if (two >= 0) ::close(two);
  return exactly_one;
}

class SrbProcess : public ::testing::Test {
 protected:
  void SetUp() override { (void)detail::srb_current(); }  // attached before any fork
};

// ---- fork ------------------------------------------------------------------------

TEST_F(SrbProcess, ChildOperationsNeverChangeTheParentsCounts) {
  stable_reference_buffer a(64);
  std::memset(a.get(), 0x77, 64);
  stable_reference_buffer b(a);
  const int status = in_child([&] {
    bool ok = a.use_count() == 2;
    {
      const stable_reference_buffer c(a);
      const stable_reference_buffer adopted(static_cast<const void*>(a.get()));
      ok = ok && a.use_count() == 4;
    }
    const auto before = stats();
    a.reset();
    b.reset();  // the child's last reference: frees the child's copy
    ok = ok && stats().frees == before.frees + 1;
    const stable_reference_buffer fresh(128);
    return ok && fresh.use_count() == 1;
  });
  EXPECT_EQ(status, 0);
  EXPECT_EQ(a.use_count(), 2u);
  EXPECT_TRUE(stable_reference_buffer::is_known(a.get()));
  EXPECT_EQ(static_cast<unsigned char*>(a.get())[63], 0x77);
}

TEST_F(SrbProcess, InheritedBuffersKeepCorrectCountsInTheChild) {
  const stable_reference_buffer a(16);
  stable_reference_buffer b(a);
  const stable_reference_buffer lone(8);
  const int status = in_child([&] {
    bool ok = a.use_count() == 2 && lone.use_count() == 1;
    ok = ok && stable_reference_buffer::is_known(a.get()) && stable_reference_buffer::is_known(lone.get());
    b.reset();
    ok = ok && a.use_count() == 1;
    const stable_reference_buffer adopted(static_cast<const void*>(lone.get()));
    return ok && lone.use_count() == 2;
  });
  EXPECT_EQ(status, 0);
  EXPECT_EQ(a.use_count(), 2u);
  EXPECT_EQ(lone.use_count(), 1u);
}

// The child inherits the anchor page (a private mapping) and finds, at the
// same address, its own copy-on-write snapshot of the registry.
TEST_F(SrbProcess, AForkChildFindsItsOwnSnapshotThroughTheInheritedAnchor) {
  const std::uintptr_t anchor = detail::srb_anchor_address();
  ASSERT_NE(anchor, 0u);
  stable_reference_buffer parents(8);
  const void* made_in_child = nullptr;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const int status = in_child([&] {
    const stable_reference_buffer mine(8);
    const void* p = mine.get();
    (void)!::write(fds[1], &p, sizeof p);
    return detail::srb_anchor_address() == anchor &&
           detail::srb_find_registry_as_new_copy() == &detail::srb_current() &&
           stable_reference_buffer::is_known(parents.get());
  });
  ASSERT_EQ(::read(fds[0], &made_in_child, sizeof made_in_child), static_cast<ssize_t>(sizeof made_in_child));
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(parents.use_count(), 1u);
  EXPECT_EQ(detail::srb_anchor_address(), anchor);
  // The child's block never reached the parent's registry (unless malloc
  // happens to give the parent the same address later, which it has not yet).
  EXPECT_FALSE(stable_reference_buffer::is_known(made_in_child));
}

TEST_F(SrbProcess, ForkWhileOtherThreadsUseTheRegistryNeverDeadlocksTheChild) {
#if defined(__SANITIZE_THREAD__)
  // Seen once in 2 runs under load: the child hung in the fork child handler's
  // free(), spinning on a lock of TSan's own allocator that another thread
  // held at the fork (glibc's malloc resets its locks at fork; TSan's runtime
  // does not cover this one).  Not a property of the registry.
  GTEST_SKIP() << "ThreadSanitizer's runtime can deadlock a child forked while other threads allocate";
#endif
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int t = 0; t < 2; ++t)
    busy.emplace_back([&] {
      while (!stop.load()) {
        stable_reference_buffer x(32);
        const stable_reference_buffer y(static_cast<const void*>(x.get()));
        const delay scope;
        x.append("abc", 3);
      }
    });
  for (int i = 0; i < 20; ++i) {
    const int status = in_child([] {
      stable_reference_buffer x(8);
      const stable_reference_buffer copy(x);
      { const delay scope; }
      x.append("z", 1);
      return x.use_count() == 1 && copy.use_count() == 1 && stable_reference_buffer::is_known(x.get());
    });
    EXPECT_EQ(status, 0) << "fork " << i;
  }
  stop.store(true);
  for (auto& t : busy) t.join();
}

TEST_F(SrbProcess, TheForkingThreadsDelayScopeStaysOpenInTheChild) {
  auto scope = std::make_unique<delay>();
  const int status = in_child([&] {
    const auto before = stats();
    stable_reference_buffer x(8);
    x.reset();
    bool ok = stats().pending == before.pending + 1 && stats().frees == before.frees;
    scope.reset();
    return ok && stats().frees == before.frees + 1 && stats().pending == 0;
  });
  EXPECT_EQ(status, 0);
  scope.reset();
}

TEST_F(SrbProcess, DelayScopesOfOtherThreadsDoNotSurviveTheFork) {
  std::promise<void> opened, finish;
  std::thread holder([&] {
    const delay scope;
    opened.set_value();
    finish.get_future().wait();
  });
  opened.get_future().wait();
  const int status = in_child([] {
    const auto before = stats();
    stable_reference_buffer x(8);
    x.reset();
    return before.depth == 0 && stats().frees == before.frees + 1;
  });
  EXPECT_EQ(status, 0);
  EXPECT_EQ(stats().depth, 1);
  finish.set_value();
  holder.join();
}

// Issue 12, item 12: a scope opened on one thread and closed on another
// used to leave the per-thread counts wrong, so a later fork opened the
// child with too few scopes and freed a block while a scope was alive.
TEST_F(SrbProcess, AScopeClosedOnAnotherThreadLeavesTheForkChildsScopesRight) {
  delay* crossing = nullptr;
  std::thread([&] { crossing = new delay; }).join();  // opened there...
  delete crossing;                                     // ...closed here
  auto alive = std::make_unique<delay>();             // this thread's one live scope
  const int status = in_child([] {
    const auto before = stats();
    stable_reference_buffer x(8);
    std::memset(x.get(), 0x3C, 8);
    const void* p = x.get();
    x.reset();
    const bool kept = stats().depth == 1 && stats().pending == before.pending + 1 && stats().frees == before.frees &&
                      static_cast<const unsigned char*>(p)[7] == 0x3C;
    if (!kept) std::fprintf(stderr, "child: depth %lld, a block was freed inside a live scope\n",
                            static_cast<long long>(stats().depth));
    return kept;
  });
  EXPECT_EQ(status, 0);
  alive.reset();
  EXPECT_EQ(stats().depth, 0);
}

// A scope opened by another thread and closed in the child after the fork
// changes nothing there (it was never counted in the child).
TEST_F(SrbProcess, ClosingAnotherThreadsScopeInTheForkChildChangesNothing) {
  std::promise<void> opened, finish;
  delay* theirs = nullptr;
  std::thread holder([&] {
    theirs = new delay;
    opened.set_value();
    finish.get_future().wait();
  });
  opened.get_future().wait();
  const int status = in_child([&] {
    const delay mine;
    delete theirs;  // opened by a thread the fork left behind
    const auto before = stats();
    stable_reference_buffer x(8);
    x.reset();
    return stats().depth == 1 && stats().pending == before.pending + 1;
  });
  EXPECT_EQ(status, 0);
  finish.set_value();
  holder.join();
  delete theirs;
  EXPECT_EQ(stats().depth, 0);
}

// A thread opens a scope and ends with it still open (its object lives on
// the heap); it is joined, and glibc hands its pthread_t (a cached thread
// block) to the next thread, which forks.  The scope is the dead thread's,
// not the forking thread's: in the child no scope is open, a released block
// is freed at once, is_known forgets it and safe_get of a sole reference is
// null.
TEST_F(SrbProcess, AScopeOfAJoinedThreadIsNotInheritedThroughItsReusedThreadId) {
  delay* left_open = nullptr;
  pthread_t dead{};
  std::thread([&] {
    left_open = new delay;
    dead = ::pthread_self();
  }).join();
  bool reused = false;
  int status = -1;
  for (int attempt = 0; attempt < 20 && !reused; ++attempt)
    std::thread([&] {
      if (::pthread_equal(::pthread_self(), dead) == 0) return;
      reused = true;
      status = in_child([] {
        const auto before = stats();
        stable_reference_buffer x(8);
        stable_reference_buffer y(x);
        const void* const p = x.get();
        bool ok = y.safe_get() != nullptr;  // x keeps the block
        x.reset();
        ok = ok && y.safe_get() == nullptr;  // y is the last reference and no scope is open
        y.reset();
        const auto after = stats();
        ok = ok && before.depth == 0 && after.frees == before.frees + 1 && after.pending == before.pending &&
             !stable_reference_buffer::is_known(p);
        if (!ok)
          std::fprintf(stderr, "child: depth %lld, pending %llu: the dead thread's scope was inherited\n",
                       static_cast<long long>(after.depth), static_cast<unsigned long long>(after.pending));
        return ok;
      });
    }).join();
  delete left_open;
  if (!reused) GTEST_SKIP() << "glibc did not hand the joined thread's pthread_t to a new thread";
  EXPECT_EQ(status, 0);
  EXPECT_EQ(stats().depth, 0);
}

// ---- exec and the environment (issue 12, items 7-11) ------------------------------

// What every helper image does: a fresh registry that works.
bool use_a_fresh_registry() {
  stable_reference_buffer a(32);
  std::memset(a.get(), 7, 32);
  const stable_reference_buffer adopted(static_cast<const void*>(a.get()));
  bool ok = a.use_count() == 2 && stable_reference_buffer::is_known(a.get());
  {
    const delay scope;
    stable_reference_buffer b(8);
    b.reset();
    ok = ok && stats().pending == 1;
  }
  return ok && stats().pending == 0 && stats().live == 1 &&
         detail::srb_find_registry_as_new_copy() == &detail::srb_current();
}

// ---- a fork racing another thread's first attach ----------------------------------
// race_prepare is a prepare handler registered before the core's own (a
// priority constructor runs before the static initialisers of the core's
// objects linked into this executable), so it runs after it: prepare
// handlers run in reverse order of registration.  Once armed, it lets a
// second thread make the process's first registry call and waits (about
// 20 ms at most) until that thread loops on calls that take the registry's
// lock, so the fork lands while the thread may hold it.  (With a shared
// libshmpool the core registers first and this widening is lost; the race
// remains, narrower.)
std::atomic<bool> g_race_armed{false}, g_race_go{false}, g_race_looping{false};

void race_prepare() {
  if (!g_race_armed.load()) return;
  g_race_go.store(true);
  for (int i = 0; i < 200 && !g_race_looping.load(); ++i) ::usleep(100);
}

[[gnu::constructor(101)]] void register_race_prepare() { ::pthread_atfork(race_prepare, nullptr, nullptr); }

// In a fresh image (no copy attached): one thread attaches while this one
// forks.  True when the fork child's first buffer operation completes
// within 5 s.
bool fork_child_works_while_a_thread_attaches() {
  static const char unknown = 0;  // an address the registry never knows
  std::atomic<bool> stop{false};
  std::thread attacher([&] {
    while (!g_race_go.load() && !stop.load()) std::this_thread::yield();
    while (!stop.load()) {
      (void)stable_reference_buffer::is_known(&unknown);  // the first attaches; each takes the lock, allocates nothing
      g_race_looping.store(true);
    }
  });
  g_race_armed.store(true);
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child == 0) {
    ::alarm(5);  // the bound: a lock no thread of the child will ever release ends it here
    const stable_reference_buffer b(8);
    ::_exit(stable_reference_buffer::is_known(b.get()) ? 0 : 1);
  }
  g_race_armed.store(false);
  stop.store(true);
  attacher.join();
  int status = 0;
  ::waitpid(child, &status, 0);
  if (WIFSIGNALED(status))
    std::fprintf(stderr, "fork-race: the child's first buffer operation did not complete in 5 s (signal %d)\n",
                 WTERMSIG(status));
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// The helper image.  Modes: "use" (must work), "wait-use" (reads a byte
// on stdin first), "reexec" (uses the registry, then execs itself as "use"),
// "ro-use" (must work or throw registry_error, never std::system_error),
// "emfile" (no descriptor left: registry_error naming memfd_create),
// "fork-race" (a fork racing another thread's first attach).
// Not a test of its own: the helper images above run it by name.  DISABLED_
// so that a normal run neither runs it nor counts it as passed.
TEST(SrbHelper, DISABLED_Run) {
  const char* mode = srb_support::helper_mode();
  ASSERT_NE(mode, nullptr) << "runs only as a helper image of the exec and environment tests";
  const std::string m = mode;
  if (m == "wait-use") {
    char go = 0;
    ASSERT_EQ(::read(0, &go, 1), 1);
  }
  if (m == "use" || m == "wait-use") {
    try {
      EXPECT_TRUE(use_a_fresh_registry());
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the fresh image could not use its registry: " << e.what();
    }
  } else if (m == "reexec") {
    EXPECT_TRUE(use_a_fresh_registry());
    std::fflush(nullptr);
    srb_support::exec_self("SrbHelper.DISABLED_Run", "use");
    ADD_FAILURE() << "exec failed";
  } else if (m == "ro-use") {
    try {
      EXPECT_TRUE(use_a_fresh_registry());
    } catch (const shmpool::registry_error&) {  // allowed, documented
    } catch (const std::system_error& e) {
      ADD_FAILURE() << "std::system_error escaped (the header promises registry_error): " << e.what();
    }
  } else if (m == "all-taken") {
    for (unsigned i = 0; i < detail::srb_anchor_candidates; ++i) {
      void* const at = reinterpret_cast<void*>(detail::srb_anchor_candidate(i));
      ASSERT_EQ(::mmap(at, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0), at);
    }
    try {
      stable_reference_buffer b(8);
      ADD_FAILURE() << "attached although every candidate is foreign memory";
    } catch (const shmpool::registry_error& e) {
      EXPECT_NE(std::string(e.what()).find("are mapped by other code"), std::string::npos) << e.what();
    }
  } else if (m == "emfile") {
    const rlimit none{3, 3};  // stdin, stdout, stderr: nothing else
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &none), 0);
    try {
      stable_reference_buffer b(8);
      ADD_FAILURE() << "attached without a file descriptor to spare";
    } catch (const shmpool::registry_error& e) {
      EXPECT_NE(std::string(e.what()).find("memfd_create (EMFILE)"), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a registry_error: " << e.what();
    }
  } else if (m == "fork-race") {
    EXPECT_TRUE(fork_child_works_while_a_thread_attaches());
  } else {
    ADD_FAILURE() << "unknown helper mode " << m;
  }
}

// Item 7: a fork child that execs keeps its pid and start time; the new
// image must not trust anything the old one left.
TEST_F(SrbProcess, AForkExecChildGetsAWorkingFreshRegistry) {
  EXPECT_EQ(srb_support::run_helper("SrbHelper.DISABLED_Run", "use"), 0);
}

// Item 7: a process that used the registry and re-execs itself (same pid,
// same start time), twice over.
TEST_F(SrbProcess, AProcessThatReExecsItselfGetsAWorkingFreshRegistry) {
  EXPECT_EQ(srb_support::run_helper("SrbHelper.DISABLED_Run", "reexec"), 0);
}

// A thread makes the process's first registry call while another thread
// forks; each trial is a fresh image, so the attach really is the first.
// The child's first buffer operation completes: the fork never leaves the
// registry's lock held by a thread the child does not have.
TEST_F(SrbProcess, AForkRacingAnotherThreadsFirstAttachNeverDeadlocksTheChild) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer's runtime can deadlock a child forked while other threads run";
#endif
  for (int trial = 0; trial < 24; ++trial)
    ASSERT_EQ(srb_support::run_helper("SrbHelper.DISABLED_Run", "fork-race"), 0) << "trial " << trial;
}

// Runs the helper image in `mode` under `launcher` (a command and its
// options); returns its exit status, or 100 + signal if it was killed.
int run_helper_under(std::vector<std::string> launcher, const char* mode) {
  char exe[4096] = {};
  if (::readlink("/proc/self/exe", exe, sizeof exe - 1) <= 0) return 91;
  launcher.insert(launcher.end(), {exe, "--gtest_filter=SrbHelper.DISABLED_Run", "--gtest_also_run_disabled_tests"});
  std::vector<char*> argv;
  for (auto& a : launcher) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string env_kv = std::string(srb_support::helper_env) + "=" + mode;
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e)  // as exec_self: not the caller's mode or report file
    if (std::string(*e).rfind(std::string(srb_support::helper_env) + "=", 0) != 0 &&
        std::string(*e).rfind("GTEST_OUTPUT=", 0) != 0)
      envp.push_back(*e);
  envp.push_back(env_kv.data());
  envp.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(180);
    ::execvpe(argv[0], argv.data(), envp.data());
    ::_exit(91);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

// A program that uses buffers (the helper image's "use": create, adopt, a
// delay scope, a new copy's look-up) runs under valgrind's memcheck with no
// error.  The anchor probe reads addresses where nothing may be mapped: it
// must never hand one to a system call whose buffer memcheck checks.
TEST_F(SrbProcess, AProgramUsingBuffersRunsUnderMemcheckWithoutErrors) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "a sanitizer's runtime cannot run under valgrind";
#endif
  if (std::system("valgrind --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "valgrind is not installed";
  char log[] = "/tmp/srb-memcheck-XXXXXX";
  const int log_fd = ::mkstemp(log);
  ASSERT_GE(log_fd, 0);
  ::close(log_fd);
  constexpr int memcheck_found_errors = 99;  // not a status the helper's own failure gives
  const int status = run_helper_under({"valgrind", "--tool=memcheck", "--error-exitcode=99",
                                       std::string("--log-file=") + log},
                                      "use");
  std::ifstream in(log);
  const std::string report((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ::unlink(log);
  EXPECT_EQ(status, 0) << (status == memcheck_found_errors ? "memcheck reported errors:\n" : "the helper failed:\n")
                       << report;
}

// Items 8 and 11: /dev/shm read-only or full: a constructor works (the
// rendezvous needs no file) and never throws std::system_error.
TEST_F(SrbProcess, AReadOnlyDevShmNeverYieldsSystemError) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a private mount namespace";
  EXPECT_EQ(srb_support::run_helper("SrbHelper.DISABLED_Run", "ro-use", [] { return srb_support::private_dev_shm("ro"); }), 0);
  EXPECT_EQ(srb_support::run_helper("SrbHelper.DISABLED_Run", "use", [] { return srb_support::private_dev_shm("ro"); }), 0);
}

TEST_F(SrbProcess, AFullDevShmStillGivesAWorkingRegistry) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a private mount namespace";
  EXPECT_EQ(srb_support::run_helper("SrbHelper.DISABLED_Run", "use", [] {
              return srb_support::private_dev_shm("size=4k") && srb_support::fill_up("/dev/shm");
            }),
            0);
}

// Item 11 and the rendezvous's failure mode: with no file descriptor to
// spare, every copy fails with a registry_error naming the cause.
TEST_F(SrbProcess, NoFileDescriptorLeftGivesARegistryErrorNamingMemfd) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "at the fd limit the sanitizer runtime cannot check types (UBSan vptr false positive); "
                  "the release build runs this test";
#endif
  EXPECT_EQ(srb_support::run_helper("SrbHelper.DISABLED_Run", "emfile"), 0);
}

// Every candidate address taken by memory that is not ours: a clear
// registry_error, never a registry somewhere else.
TEST_F(SrbProcess, EveryCandidateTakenGivesARegistryErrorNamingIt) {
  EXPECT_EQ(srb_support::run_helper("SrbHelper.DISABLED_Run", "all-taken"), 0);
}

// Item 9: another user creates, first, the file the old design named after
// the victim's identity (computable from /proc/<pid>/stat).  The victim is
// started with posix_spawn (no fork handlers run) and waits on stdin until
// the file exists.
TEST_F(SrbProcess, AnotherUserCannotDenyTheRegistryToAVictim) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another user";
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  char exe[4096] = {};
  ASSERT_GT(::readlink("/proc/self/exe", exe, sizeof exe - 1), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, go[0], 0);
  posix_spawn_file_actions_addclose(&actions, go[1]);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e)  // not the caller's report file (as exec_self)
    if (std::string(*e).rfind("GTEST_OUTPUT=", 0) != 0) envp.push_back(*e);
  std::string mode = std::string(srb_support::helper_env) + "=wait-use";
  envp.push_back(mode.data());
  envp.push_back(nullptr);
  // The helper test is DISABLED_: name it exactly and ask for disabled
  // tests, or the victim runs nothing, exits 0 and proves nothing (it did,
  // until a mutation run saw this test die of SIGPIPE: the victim had
  // exited before the go byte was written).
  char filter[] = "--gtest_filter=SrbHelper.DISABLED_Run";
  char also_disabled[] = "--gtest_also_run_disabled_tests";
  char* argv[] = {exe, filter, also_disabled, nullptr};
  pid_t victim = 0;
  ASSERT_EQ(::posix_spawn(&victim, exe, &actions, nullptr, argv, envp.data()), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(go[0]);
  const std::string path = "/dev/shm/" + legacy_root_name(platform::proc_liveness::identity_of(victim));
  const int attacker = in_child([&] {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) return false;
    const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    const bool made = fd >= 0 && ::write(fd, "mine", 4) == 4;
    if (fd >= 0) ::close(fd);
    return made;
  });
  EXPECT_EQ(attacker, 0) << "the other user could not create " << path;
  ::signal(SIGPIPE, SIG_IGN);  // a victim that died early is reported below, not by killing this test
  EXPECT_EQ(::write(go[1], "g", 1), 1) << "the victim exited before it was told to use its registry";
  ::close(go[1]);
  int status = 0;
  ::waitpid(victim, &status, 0);
  ::unlink(path.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the victim could not use its registry";
}

// Item 10: nothing a process creates outlives it.  500 short-lived children
// of a process whose /dev/shm is a private, empty tmpfs leave it empty.
TEST_F(SrbProcess, ShortLivedForkChildrenLeaveNothingInDevShm) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a private mount namespace";
  const int status = in_child([] {
    if (!srb_support::private_dev_shm("size=1m")) return false;
    const stable_reference_buffer shared(16);
    for (int i = 0; i < 500; ++i) {
      const pid_t pid = ::fork();
      if (pid == 0) {
        const stable_reference_buffer mine(8), adopted(static_cast<const void*>(shared.get()));
        ::_exit(adopted.use_count() == 2 ? 0 : 1);
      }
      int st = 0;
      ::waitpid(pid, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return false;
    }
    const auto left = srb_support::dev_shm_entries("");
    for (const auto& name : left) std::fprintf(stderr, "left in /dev/shm: %s\n", name.c_str());
    return left.empty();
  });
  EXPECT_EQ(status, 0);
}

// ---- a corrupted anchor page -------------------------------------------------------------

struct corruption {
  const char* name;
  std::string expected;  // part of the error message
  detail::srb_anchor_record record;
};

std::vector<corruption> corruptions(const detail::srb_anchor_record& good) {
  std::vector<corruption> all;
  auto variant = [&](const char* name, const char* expected, auto&& change) {
    detail::srb_anchor_record r = good;
    change(r);
    all.push_back({name, expected, r});
  };
  variant("format", "another version or layout", [](auto& r) { r.format += 1; });
  variant("self", "names another address", [](auto& r) { r.self += 4096; });
  variant("check", "check word", [](auto& r) { r.check ^= 1; });
  variant("address", "check word", [](auto& r) { r.registry += 4096; });  // without fixing the check word
  return all;
}

// Well-formed records that name something other than the registry.
std::vector<corruption> wrong_targets(std::uintptr_t at, const void* registry, std::uint64_t nonce) {
  void* zeros = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* guard = ::mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  // Heap a sanitizer poisons once freed.  Only its address is kept (the asm
  // hides it from g++'s use-after-free analysis: it is never dereferenced).
  void* heap = std::aligned_alloc(4096, 4096);
  auto address = reinterpret_cast<std::uintptr_t>(heap);
  asm volatile("" : "+r"(address));
  std::free(heap);
  const auto* freed = reinterpret_cast<const void*>(address);
  // Below vm.mmap_min_addr: nothing is ever mapped there.
  const void* unmapped = reinterpret_cast<const void*>(std::uintptr_t{4096});
  return {
      {"unmapped", "not mapped", detail::srb_make_anchor_record(at, unmapped, nonce)},
      {"not-a-registry", "does not hold", detail::srb_make_anchor_record(at, zeros, nonce)},
      {"prot-none", "not mapped", detail::srb_make_anchor_record(at, guard, nonce)},
      {"freed-heap", "anchor page", detail::srb_make_anchor_record(at, freed, nonce)},
      {"wrong-nonce", "does not hold", detail::srb_make_anchor_record(at, registry, nonce + 1)},
      {"null", "out of range", detail::srb_make_anchor_record(at, nullptr, nonce)},
      {"unaligned", "out of range",
       detail::srb_make_anchor_record(at, static_cast<const char*>(registry) + 8, nonce)},
  };
}

// Makes the anchor page writable (it is mapped read-only: only a deliberate
// mprotect can change it), writes each case, and checks that a new copy's
// attach throws registry_error with the expected reason.  Returns the
// number of cases that went wrong; restores the page.
int run_corruption_cases() {
  const std::uintptr_t at = detail::srb_anchor_address();
  const void* registry = detail::srb_find_registry_as_new_copy();
  const auto& reg = *static_cast<const detail::srb_process_registry*>(registry);
  auto* page = reinterpret_cast<detail::srb_anchor_record*>(at);
  if (at == 0 || ::mprotect(page, 4096, PROT_READ | PROT_WRITE) != 0) return 100;
  const auto good = *page;
  auto cases = corruptions(good);
  for (auto& c : wrong_targets(at, registry, reg.id().nonce)) cases.push_back(std::move(c));
  int failures = 0;
  for (const auto& c : cases) {
    *page = c.record;
    try {
      detail::srb_find_registry_as_new_copy();
      std::fprintf(stderr, "corruption '%s' was accepted\n", c.name);
      ++failures;
    } catch (const shmpool::registry_error& e) {
      if (std::string(e.what()).find(c.expected) == std::string::npos) {
        std::fprintf(stderr, "corruption '%s': unexpected message: %s\n", c.name, e.what());
        ++failures;
      }
    }
  }
  *page = good;
  if (detail::srb_find_registry_as_new_copy() != registry) ++failures;
  return failures;
}

// In a child (so the parent's page is never touched): every corruption of
// the anchor makes a new copy's attach throw a clear registry_error; the
// copies already attached keep working.
TEST_F(SrbProcess, Misuse_ACorruptedAnchorPageYieldsAClearErrorNeverACrash) {
  const int status = in_child([] {
    const int failures = run_corruption_cases();
    stable_reference_buffer still_works(8);  // attached copies never re-read the anchor
    const stable_reference_buffer copy(still_works);
    return failures == 0 && copy.use_count() == 2;
  });
  EXPECT_EQ(status, 0);
}

// The same where seccomp forbids process_vm_readv (as some container
// profiles do): the address probe falls back to a pipe and still never
// crashes.
TEST_F(SrbProcess, Misuse_ACorruptedAnchorPageIsCaughtWithoutProcessVmReadv) {
  const int status = in_child([] {
    if (!deny_process_vm_readv(EPERM)) ::_exit(77);
    return run_corruption_cases() == 0;
  });
  if (status == 77) GTEST_SKIP() << "cannot install a seccomp filter here";
  EXPECT_EQ(status, 0);
}

// The same filter answering EFAULT, "nothing readable there", for every
// address, with exactly one descriptor left (pipe2 needs two, memfd_create
// one).  A copy loaded now finds the published registry or fails with
// registry_error; it never takes the filter's word and publishes a second
// anchor, whose copy would know none of the first one's blocks.
TEST_F(SrbProcess, Misuse_ProcessVmReadvDeniedWithOneDescriptorLeftNeverMakesASecondRegistry) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "at the fd limit the sanitizer runtime cannot check types (UBSan vptr false positive); "
                  "the release build runs this test";
#endif
  const int status = in_child([] {
    const detail::srb_process_registry* const home = &detail::srb_current();
    if (!deny_process_vm_readv(EFAULT)) ::_exit(77);
    if (!leave_one_descriptor()) ::_exit(78);
    bool ok = true;
    try {  // what a newly loaded copy does first
      const detail::srb_process_registry* found = detail::srb_find_anchor();
      if (found != home) {
        std::fprintf(stderr, "child: a new copy found %s\n",
                     found == nullptr ? "no anchor (it publishes a second one next)" : "another registry");
        ok = false;
      }
    } catch (const shmpool::registry_error&) {  // allowed: every copy agrees or fails
    }
    // What a copy that found nothing does next: publish.  It must end at the
    // published anchor or fail, never at a free candidate further on.
    void* const mem = detail::srb_pages::map(sizeof(detail::srb_process_registry));
    auto* const fresh = new (mem) detail::srb_process_registry(0x5EC0'0FD1);
    try {
      if (detail::srb_publish_anchor(fresh) != home) {
        std::fprintf(stderr, "child: a second anchor was published\n");
        ok = false;
      }
    } catch (const shmpool::registry_error&) {
    }
    return ok;
  });
  if (status == 77) GTEST_SKIP() << "cannot install a seccomp filter here";
  EXPECT_NE(status, 78) << "could not leave exactly one descriptor free";
  EXPECT_EQ(status, 0);
}

// An anchor page removed from under the process (only a deliberate munmap
// can): a new copy reports that there is none, by name.
TEST_F(SrbProcess, Misuse_AMissingAnchorPageYieldsAClearError) {
  const int status = in_child([] {
    ::munmap(reinterpret_cast<void*>(detail::srb_anchor_address()), 4096);
    try {
      detail::srb_find_registry_as_new_copy();
      return false;
    } catch (const shmpool::registry_error& e) {
      return std::string(e.what()).find("no anchor page") != std::string::npos;
    }
  });
  EXPECT_EQ(status, 0);
}

}  // namespace
