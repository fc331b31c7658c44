// Pool-level regressions of the liveness rule (core/PROTOCOL.md, "Owner
// identity and liveness"): recovery must never free a live owner's slot,
// whatever the recoverer's environment, and an owner's identity must never
// be recorded wrong.  Real processes, namespaces and limits; a case skips
// (naming the refusal) only where the kernel refuses a setup.
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "liveness_helpers.hpp"
#include "shmpool/platform/liveness.hpp"
#include "shmpool/pool.hpp"

namespace {

using namespace liveness_test;

// Runs fn in a forked child and returns its report; the child is reaped.
template <class Fn>
report in_child(Fn&& fn) {
  report r;
  pid_t child = 0;
  const bool ok = fork_reporting(fn, r, child);
  wait_for(child);
  if (!ok) ADD_FAILURE() << "the child died before it reported";
  return r;
}

#define SKIP_IF_REFUSED(r) \
  if ((r).refused != 0) GTEST_SKIP() << (r).what << ": " << std::strerror((r).refused)

// A child recovers; the report's value is the number of slots it freed.
template <class Setup>
report recover_in_child(shmpool::i64_pool& p, Setup setup, const char* what) {
  return in_child([&](int fd) {
    if (const int err = setup()) return send_refused(fd, err, what);
    report r;
    r.value = static_cast<std::int64_t>(p.recover_stale());
    send(fd, r);
  });
}

// Item 1: a failure to read /proc is not evidence of death.
TEST(PoolLiveness, RecoveryAtTheRecoverersFdLimitKeepsALiveOwnersSlot) {
  auto p = shmpool::i64_pool::anonymous(8);
  const auto slot = p.try_alloc();
  ASSERT_TRUE(slot);
  const report r = recover_in_child(p, [] {
    (void)shmpool::platform::proc_liveness::self();  // the recoverer knows itself; only judging fails
    return exhaust_fds();
  }, "RLIMIT_NOFILE");
  SKIP_IF_REFUSED(r);
  EXPECT_EQ(r.value, 0);
  EXPECT_TRUE(p.is_allocated(*slot));
}

TEST(PoolLiveness, RecoveryBehindHidepidKeepsALiveOwnersSlot) {
  auto p = shmpool::i64_pool::anonymous(8);
  const auto slot = p.try_alloc();
  ASSERT_TRUE(slot);
  const report r = recover_in_child(p, hide_other_processes, "hidepid=2 as nobody");
  SKIP_IF_REFUSED(r);
  EXPECT_EQ(r.value, 0);
  EXPECT_TRUE(p.is_allocated(*slot));
}

TEST(PoolLiveness, RecoveryWithProcUnmountedKeepsALiveOwnersSlot) {
  auto p = shmpool::i64_pool::anonymous(8);
  const auto slot = p.try_alloc();
  ASSERT_TRUE(slot);
  const report r = recover_in_child(p, [] {
    (void)shmpool::platform::proc_liveness::self();
    return unmount_proc();
  }, "unmounting /proc");
  SKIP_IF_REFUSED(r);
  EXPECT_EQ(r.value, 0);
  EXPECT_TRUE(p.is_allocated(*slot));
}

// Item 2: a recoverer that cannot know itself must not act at all.
TEST(PoolLiveness, RecovererWithoutAnIdentityThrowsIdentityUnavailableAndFreesNothing) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "at the fd limit the sanitizer runtime cannot check types (UBSan vptr false positive); "
                  "the release build runs this test";
#endif
  auto p = shmpool::i64_pool::anonymous(8);
  const auto slot = p.try_alloc();
  ASSERT_TRUE(slot);
  const report r = in_child([&](int fd) {
    if (const int err = exhaust_fds()) return send_refused(fd, err, "RLIMIT_NOFILE");
    report out;
    try {
      out.value = 100 + static_cast<std::int64_t>(p.recover_stale());
    } catch (const shmpool::error& e) {
      out.value = e.code() == shmpool::errc::identity_unavailable &&
                  std::string(e.what()).find("Too many open files") != std::string::npos;
    }
    send(fd, out);
  });
  SKIP_IF_REFUSED(r);
  EXPECT_EQ(r.value, 1) << "1: threw identity_unavailable naming EMFILE; 100+n: recovered n slots";
  EXPECT_TRUE(p.is_allocated(*slot));
}

// Item 2: an identity first computed at the fd limit is never recorded (nor
// cached) with a start time of 0; once the limit is lifted, the real one is.
TEST(PoolLiveness, IdentityFirstComputedAtTheFdLimitIsNeverCachedAsZero) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "at the fd limit the sanitizer runtime cannot check types (UBSan vptr false positive); "
                  "the release build runs this test";
#endif
  auto p = shmpool::i64_pool::anonymous(8);
  pid_t child = 0;
  report r;
  ASSERT_TRUE(fork_reporting(
      [&](int fd) {
        std::vector<int> taken;
        if (const int err = exhaust_fds(&taken)) return send_refused(fd, err, "RLIMIT_NOFILE");
        report out;
        try {
          out.value = p.try_alloc() ? 1 : 2;  // must not succeed under a made-up identity
        } catch (const shmpool::error& e) {
          out.value = e.code() == shmpool::errc::identity_unavailable ? 0 : 3;
        }
        release_fds(taken);
        if (out.value == 0 && !p.try_alloc()) out.value = 4;
        send(fd, out);
        block_forever();
      },
      r, child));
  SKIP_IF_REFUSED(r);
  EXPECT_EQ(p.used(), 1u);
  EXPECT_EQ(p.recover_stale(), 0u) << "a live owner's slot was recovered";
  EXPECT_EQ(p.used(), 1u);
  kill_and_wait(child);
  EXPECT_EQ(r.value, 0) << "0: threw identity_unavailable; 1: allocated at the fd limit";
  EXPECT_EQ(p.recover_stale(), 1u);
}

// Item 3: a leader that called pthread_exit shows Z while its threads run.
TEST(PoolLiveness, OwnerWhoseLeaderCalledPthreadExitKeepsItsSlot) {
  auto p = shmpool::i64_pool::anonymous(8);
  pid_t child = 0;
  report r;
  ASSERT_TRUE(fork_reporting(
      [&](int fd) {
        report out;
        out.value = p.try_alloc() ? 1 : 0;
        std::thread([] { block_forever(); }).detach();
        send(fd, out);
        ::syscall(SYS_exit, 0);  // pthread_exit of the leader, without unwinding the test's frames
      },
      r, child));
  ASSERT_EQ(r.value, 1);
  ASSERT_TRUE(await_state(child, 'Z'));
  EXPECT_EQ(p.recover_stale(), 0u) << "the live threads' slot was recovered";
  EXPECT_EQ(p.used(), 1u);
  kill_and_wait(child);
  EXPECT_EQ(p.recover_stale(), 1u);
}

// Item 4: owner and recoverer in different time namespaces.
TEST(PoolLiveness, OwnerInAnotherTimeNamespaceKeepsItsSlotUntilItDies) {
  auto p = shmpool::i64_pool::anonymous(8);
  pid_t child = 0;
  report r;
  ASSERT_TRUE(fork_reporting(
      [&](int fd) {
        if (const int err = enter_time_namespace_for_children()) return send_refused(fd, err, "a time namespace");
        const pid_t g = ::fork();
        if (g == 0) {
          report out;
          out.value = p.try_alloc() ? 1 : 0;
          out.holder = ::getpid();
          send(fd, out);
          block_forever();
        }
        wait_for(g);
      },
      r, child));
  SKIP_IF_REFUSED(r);
  ASSERT_EQ(r.value, 1);
  EXPECT_EQ(p.recover_stale(), 0u) << "a live owner of another time namespace was judged dead";
  EXPECT_EQ(p.used(), 1u);
  ::kill(r.holder, SIGKILL);
  wait_for(child);  // which reaps the owner first
  EXPECT_EQ(p.recover_stale(), 1u) << "a dead owner of another time namespace was not recovered";
}

TEST(PoolLiveness, RecovererInAnotherTimeNamespaceKeepsALiveOwnersSlot) {
  auto p = shmpool::i64_pool::anonymous(8);
  const auto slot = p.try_alloc();
  ASSERT_TRUE(slot);
  const report r = in_child([&](int fd) {
    if (const int err = enter_time_namespace_for_children()) return send_refused(fd, err, "a time namespace");
    const pid_t g = ::fork();
    if (g == 0) {
      report out;
      out.value = static_cast<std::int64_t>(p.recover_stale());
      send(fd, out);
      ::_exit(0);
    }
    wait_for(g);
  });
  SKIP_IF_REFUSED(r);
  EXPECT_EQ(r.value, 0);
  EXPECT_TRUE(p.is_allocated(*slot));
}

// Issue 20 item 5: a recoverer that judged once (its offset cached), then
// joined another time namespace by setns, with a live owner in each
// namespace.  Judging with the offset of the namespace it left, it would
// take both owners for reused pids and hand their slots on.
TEST(PoolLiveness, RecovererThatJoinedAnotherTimeNamespaceAfterLoadKeepsLiveOwnersSlots) {
  auto p = shmpool::i64_pool::anonymous(8);
  struct processes {
    pid_t here = 0, middle = 0, shifted = 0;
    ~processes() {
      if (shifted > 0) ::kill(shifted, SIGKILL);  // the middle reaps it
      if (middle > 0) kill_and_wait(middle);
      if (here > 0) kill_and_wait(here);
    }
  } owners;
  report here;
  ASSERT_TRUE(fork_reporting(
      [&](int fd) {
        ::alarm(120);
        report out;
        out.value = p.try_alloc() ? 1 : 0;
        send(fd, out);
        block_forever();
      },
      here, owners.here));
  report shifted;
  const bool started = fork_reporting(
      [&](int fd) {
        ::alarm(120);
        if (const int err = enter_time_namespace_for_children()) return send_refused(fd, err, "a time namespace");
        const pid_t g = ::fork();
        if (g == 0) {
          ::alarm(120);
          report out;
          out.value = p.try_alloc() ? 1 : 0;
          out.holder = ::getpid();
          send(fd, out);
          block_forever();
        }
        wait_for(g);
      },
      shifted, owners.middle);
  ASSERT_TRUE(started) << "the owner in the shifted namespace died before it reported";
  owners.shifted = shifted.holder;
  SKIP_IF_REFUSED(shifted);
  ASSERT_EQ(here.value, 1);
  ASSERT_EQ(shifted.value, 1);
  const std::string target = "/proc/" + std::to_string(shifted.holder) + "/ns/time";
  const report r = in_child([&](int fd) {
    ::alarm(30);
    report out;
    out.id = p.recover_stale();  // judges both owners: whatever the oracle caches, it has now
    if (const int err = join_time_namespace(target.c_str()))
      return send_setns_refused(fd, err, "setns into the owner's time namespace");
    out.value = static_cast<std::int64_t>(p.recover_stale());
    send(fd, out);
  });
  SKIP_IF_REFUSED(r);
  EXPECT_EQ(r.id, 0u) << "before setns, recovery freed live owners' slots";
  EXPECT_EQ(r.value, 0) << "after setns into another time namespace, recovery freed live owners' slots";
  EXPECT_EQ(p.used(), 2u);
  ::kill(owners.shifted, SIGKILL);
  kill_and_wait(owners.middle);
  kill_and_wait(owners.here);
  owners.here = owners.middle = owners.shifted = 0;
  EXPECT_EQ(p.recover_stale(), 2u) << "the dead owners' slots were not recovered";
}

// Issue 20 item 5: a process that unshared the time namespace for its
// children before its first allocation still lives in ours (only its
// children move), though /proc/self/timens_offsets already shows the
// children's offset: the identity it records must be the one others judge.
TEST(PoolLiveness, OwnerThatUnsharedTheTimeNamespaceBeforeItsFirstAllocationKeepsItsSlot) {
  auto p = shmpool::i64_pool::anonymous(8);
  pid_t child = 0;
  report r;
  ASSERT_TRUE(fork_reporting(
      [&](int fd) {
        ::alarm(120);
        if (const int err = enter_time_namespace_for_children()) return send_refused(fd, err, "a time namespace");
        report out;
        out.value = p.try_alloc() ? 1 : 0;  // the first use of its identity in this process
        send(fd, out);
        block_forever();
      },
      r, child));
  if (r.refused != 0) kill_and_wait(child);
  SKIP_IF_REFUSED(r);
  ASSERT_EQ(r.value, 1);
  const std::size_t recovered = p.recover_stale();
  const pid_t owner = p.allocated_slots().size() == 1 ? p.owner(p.allocated_slots()[0]) : 0;
  kill_and_wait(child);
  EXPECT_EQ(recovered, 0u) << "the live owner's slot was recovered: it recorded a wrongly normalised start time";
  EXPECT_EQ(owner, child);
  EXPECT_EQ(p.recover_stale(), recovered == 0 ? 1u : 0u);
}

// Item 24: a fork handler registered before the library's first use runs
// in the child before any handler the library could register; an
// allocation made there must name the child.  Runs in a fresh process
// (this test, re-executed), as the scenario needs a first use.
constexpr const char* atfork_env = "SHMPOOL_TEST_ATFORK_POOL";
shmpool::i64_pool* g_atfork_pool = nullptr;

[[noreturn]] void atfork_scenario(const char* path) {
  static auto p = shmpool::i64_pool::open(path, 4);
  g_atfork_pool = &p;
  ::pthread_atfork(nullptr, nullptr, [] { (void)g_atfork_pool->try_alloc(); });  // the user's handler, first
  if (auto first = p.try_alloc()) p.free(*first);  // the library's first use
  int ready[2];
  if (::pipe(ready) != 0) std::_Exit(1);
  const pid_t c = ::fork();
  if (c == 0) {  // holds the slot its handler allocated; the runner kills it
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 1);
    ::dup2(null, 2);
    if (::write(ready[1], "x", 1) != 1) std::_Exit(1);  // the handler has run
    block_forever();
  }
  char x = 0;
  if (::read(ready[0], &x, 1) != 1) std::_Exit(1);
  std::ofstream(std::string(path) + ".child") << c << '\n';
  std::_Exit(0);  // the parent dies: only the child is left alive
}

TEST(PoolLiveness, AllocationInAForkHandlerRegisteredFirstNamesTheChild) {
  if (const char* path = std::getenv(atfork_env)) atfork_scenario(path);
  const std::string path = "/dev/shm/shmpool-atfork-test-" + std::to_string(::getpid());
  ::unlink(path.c_str());
  auto p = shmpool::i64_pool::open(path, 4);
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);  // the orphaned child comes to us
  const pid_t scenario = ::fork();
  if (scenario == 0) {
    ::setenv(atfork_env, path.c_str(), 1);
    ::execl("/proc/self/exe", "pool_liveness_test",
            "--gtest_filter=PoolLiveness.AllocationInAForkHandlerRegisteredFirstNamesTheChild", nullptr);
    ::_exit(127);
  }
  wait_for(scenario);  // the slot's recorded owner, if it were the parent, is now dead
  pid_t child = 0;
  std::ifstream(path + ".child") >> child;
  ::unlink((path + ".child").c_str());
  ASSERT_GT(child, 0);
  const std::size_t recovered = p.recover_stale();
  const auto held = p.allocated_slots();
  const pid_t owner = held.size() == 1 ? p.owner(held[0]) : 0;
  kill_and_wait(child);
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  p.unlink();
  EXPECT_EQ(recovered, 0u) << "the live child's slot was recovered: it was recorded under its parent's identity";
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(owner, child);
}

// Item 5: exec keeps pid and start time; the slots stay held until an
// operator releases them by pid.
TEST(PoolLiveness, SlotsHeldBeforeExecStayHeldUntilReleasedByPid) {
  auto p = shmpool::i64_pool::anonymous(8);
  const auto mine = p.try_alloc();
  ASSERT_TRUE(mine);
  pid_t child = 0;
  report r;
  ASSERT_TRUE(fork_reporting(
      [&](int fd) {
        report out;
        out.value = (p.try_alloc() ? 1 : 0) + (p.try_alloc() ? 1 : 0);
        send(fd, out);
        ::execl("/bin/sleep", "sleep", "60", nullptr);
        ::_exit(127);
      },
      r, child));
  ASSERT_EQ(r.value, 2);
  // Wait for the exec (the image that allocated is gone; the process is not).
  for (int i = 0; i < 5000; ++i) {
    std::ifstream comm("/proc/" + std::to_string(child) + "/comm");
    std::string name;
    if (std::getline(comm, name) && name == "sleep") break;
    ::usleep(1000);
  }
  EXPECT_EQ(p.recover_stale(), 0u) << "exec keeps the identity: the slots stay held";
  EXPECT_EQ(p.used(), 3u);
  EXPECT_EQ(p.release_owner(child), 2u);
  EXPECT_EQ(p.used(), 1u);
  EXPECT_TRUE(p.is_allocated(*mine));
  EXPECT_EQ(p.release_owner(child), 0u);
  EXPECT_EQ(p.stats().recoveries, 2u);
  kill_and_wait(child);
}

TEST(PoolLiveness, ReleaseOwnerOfNoPidIsRejected) {
  auto p = shmpool::i64_pool::anonymous(2);
  EXPECT_THROW(p.release_owner(0), std::invalid_argument);
  EXPECT_THROW(p.release_owner(-5), std::invalid_argument);
}

TEST(PoolLiveness, ReleaseOwnerFreesOwnSlotsToo) {
  auto p = shmpool::i64_pool::anonymous(4);
  ASSERT_TRUE(p.try_alloc());
  ASSERT_TRUE(p.try_alloc());
  EXPECT_EQ(p.release_owner(::getpid()), 2u);
  EXPECT_EQ(p.used(), 0u);
  EXPECT_TRUE(p.check().empty());
}

}  // namespace
