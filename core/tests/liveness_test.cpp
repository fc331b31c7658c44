// The liveness conformance suite (platform/liveness.hpp): one set of cases,
// run against both oracles.  Each world can *produce* every situation: the
// real one with real processes, namespaces and mounts (as root; a case
// skips, naming the refusal, only where the kernel refuses), the fake one
// in its table.  The rule under test: "dead" only on positive evidence.
#include <sys/syscall.h>
#include <linux/sched.h>

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "liveness_helpers.hpp"
#include "shmpool/platform/liveness.hpp"

namespace {

using shmpool::platform::fake_liveness;
using shmpool::platform::proc_liveness;
using shmpool::platform::verdict;
using namespace liveness_test;

// ---- the real world ----------------------------------------------------------------

class real_world {
 public:
  std::string refused;  // non-empty: the kernel refused a setup; the case skips

  ~real_world() {
    for (const pid_t p : foreign_) ::kill(p, SIGKILL);
    for (const pid_t p : children_) kill_and_wait(p);
  }

  verdict judge(std::uint64_t id) { return proc_liveness::judge(id); }

  std::uint64_t live() {
    return produce([](int fd) {
      report r;
      r.id = proc_liveness::self();
      send(fd, r);
      block_forever();
    });
  }
  std::uint64_t dead() {
    const std::uint64_t id = produce([](int fd) {
      report r;
      r.id = proc_liveness::self();
      send(fd, r);
    });
    wait_for(children_.back());  // reaped: its pid names nobody
    children_.pop_back();
    return id;
  }
  std::uint64_t zombie() {
    const std::uint64_t id = dead_unreaped();
    siginfo_t si{};
    ::waitid(P_PID, static_cast<id_t>(children_.back()), &si, WEXITED | WNOWAIT);  // exited, still unreaped
    return id;
  }
  std::uint64_t zombie_leader_with_live_threads() {
    const std::uint64_t id = produce([](int fd) {
      report r;
      r.id = proc_liveness::self();
      std::thread([] { block_forever(); }).detach();
      send(fd, r);
      // The leader goes and its thread runs on: pthread_exit without the
      // unwinding through the test framework's frames.
      ::syscall(SYS_exit, 0);
    });
    char state = '?';
    long threads = 0;
    if (!await_state(children_.back(), 'Z') || !stat_state(children_.back(), state, threads) || threads < 2)
      refused = "could not produce a pthread_exit'ed leader with a live thread";
    return id;
  }
  // The owner is reaped and its pid handed to a new process (clone3 with
  // set_tid), started more than one tick later.
  std::uint64_t reused_pid() {
    const std::uint64_t id = dead();
    const pid_t pid = shmpool::platform::identity_pid(id);
    ::usleep(50'000);  // the new start time must differ by more than one tick (10 ms)
    clone_args args{};
    pid_t tid = pid;
    args.exit_signal = SIGCHLD;
    args.set_tid = reinterpret_cast<std::uintptr_t>(&tid);
    args.set_tid_size = 1;
    const long got = ::syscall(SYS_clone3, &args, sizeof args);
    if (got == 0) block_forever();
    if (got < 0) {
      if (errno != EEXIST) refused = std::string("clone3 with set_tid: ") + std::strerror(errno);
      return id;  // EEXIST: someone else reused it already, which serves as well
    }
    children_.push_back(static_cast<pid_t>(got));
    return id;
  }
  // Recorded by pid 1 of a fresh pid namespace (with its own /proc).
  std::uint64_t in_other_pid_namespace(bool stays_alive) {
    return finished_unless(stays_alive, produce([stays_alive](int fd) {
      if (::unshare(CLONE_NEWPID | CLONE_NEWNS) != 0) return send_refused(fd, errno, "unshare(CLONE_NEWPID)");
      int inner[2];
      if (::pipe(inner) != 0) ::_exit(1);
      const pid_t g = ::fork();
      if (g == 0) {
        report r;
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
            ::mount("proc", "/proc", "proc", 0, nullptr) != 0) {
          send_refused(inner[1], errno, "mounting /proc in a new pid namespace");
          ::_exit(0);
        }
        r.id = proc_liveness::self();
        send(inner[1], r);
        if (stays_alive) block_forever();
        ::_exit(0);
      }
      report r;
      if (!receive(inner[0], r)) ::_exit(1);
      r.holder = g;
      send(fd, r);
      wait_for(g);
    }, /*foreign=*/true));
  }
  // Recorded by a process whose boot time is shifted (unshare -T --boottime).
  std::uint64_t in_other_time_namespace(bool stays_alive) {
    return finished_unless(stays_alive, produce([stays_alive](int fd) {
      if (const int err = enter_time_namespace_for_children()) return send_refused(fd, err, "a time namespace");
      const pid_t g = ::fork();
      if (g == 0) {
        report r;
        r.id = proc_liveness::self();
        r.holder = ::getpid();
        send(fd, r);
        if (stays_alive) block_forever();
        ::_exit(0);
      }
      wait_for(g);
    }, /*foreign=*/true));
  }

  verdict judge_from_other_time_namespace(std::uint64_t id) {
    return judge_in_child([id](int fd) {
      if (const int err = enter_time_namespace_for_children()) return send_refused(fd, err, "a time namespace");
      const pid_t g = ::fork();
      if (g == 0) {
        report r;
        r.value = static_cast<std::int64_t>(proc_liveness::judge(id));
        send(fd, r);
        ::_exit(0);
      }
      wait_for(g);
    });
  }
  // One single-threaded process judges twice: where it started (which fills
  // whatever the oracle caches), then after it moved itself by setns into a
  // time namespace whose boot time is shifted.  The verdict after; the one
  // before must be `expected_before`.
  verdict judge_after_joining_other_time_namespace(std::uint64_t id, verdict expected_before) {
    report r;
    pid_t child = 0;
    const bool ok = fork_reporting(
        [id](int fd) {
          ::alarm(30);
          report out;
          out.id = static_cast<std::uint64_t>(proc_liveness::judge(id));
          if (const int err = move_into_shifted_time_namespace())
            return send_setns_refused(fd, err, "setns into a new time namespace");
          out.value = static_cast<std::int64_t>(proc_liveness::judge(id));
          send(fd, out);
        },
        r, child);
    wait_for(child);
    if (!ok) refused = "the judging child died before it reported";
    if (r.refused != 0) refused = std::string(r.what) + ": " + std::strerror(r.refused);
    if (ok && r.refused == 0)
      EXPECT_STREQ(shmpool::platform::verdict_name(static_cast<verdict>(r.id)),
                   shmpool::platform::verdict_name(expected_before))
          << "the verdict before setns";
    return static_cast<verdict>(r.value);
  }
  // Judged by a fresh fork child (nothing of its own computed yet) that
  // first unshared the time namespace for its children: it still lives in
  // ours, while /proc/self/timens_offsets already shows the children's
  // shifted offsets.
  verdict judge_after_unsharing_time_namespace(std::uint64_t id) {
    return judge_after(enter_time_namespace_for_children, "a time namespace", id);
  }
  verdict judge_with_proc_hidden(std::uint64_t id) { return judge_after(hide_other_processes, "hidepid=2", id); }
  verdict judge_with_proc_unmounted(std::uint64_t id) { return judge_after(unmount_proc, "unmounting /proc", id); }
  verdict judge_at_fd_limit(std::uint64_t id) {
    return judge_after([] { return exhaust_fds(); }, "RLIMIT_NOFILE", id);
  }

 private:
  template <class Fn>
  std::uint64_t produce(Fn&& fn, bool foreign = false) {
    report r;
    pid_t child = 0;
    const bool ok = fork_reporting(fn, r, child);
    children_.push_back(child);
    if (!ok) {
      refused = "the child died before it reported";
      return 0;
    }
    if (r.refused != 0) refused = std::string(r.what) + ": " + std::strerror(r.refused);
    if (foreign && r.holder != 0) foreign_.push_back(r.holder);
    return r.id;
  }
  // The producer's child exits once its own child has; wait for both.
  std::uint64_t finished_unless(bool stays_alive, std::uint64_t id) {
    if (!stays_alive && !children_.empty()) {
      wait_for(children_.back());
      children_.pop_back();
      if (!foreign_.empty()) foreign_.pop_back();  // reaped: its pid may soon name another process
    }
    return id;
  }
  std::uint64_t dead_unreaped() {
    return produce([](int fd) {
      report r;
      r.id = proc_liveness::self();
      send(fd, r);
    });
  }
  template <class Fn>
  verdict judge_in_child(Fn&& fn) {
    report r;
    pid_t child = 0;
    const bool ok = fork_reporting(fn, r, child);
    wait_for(child);
    if (!ok) refused = "the judging child died before it reported";
    if (r.refused != 0) refused = std::string(r.what) + ": " + std::strerror(r.refused);
    return static_cast<verdict>(r.value);
  }
  template <class Setup>
  verdict judge_after(Setup setup, const char* what, std::uint64_t id) {
    return judge_in_child([&](int fd) {
      if (const int err = setup()) return send_refused(fd, err, what);
      report r;
      r.value = static_cast<std::int64_t>(proc_liveness::judge(id));
      send(fd, r);
    });
  }

  std::vector<pid_t> children_;  // ours: killed and reaped
  std::vector<pid_t> foreign_;   // grandchildren: killed (their parent reaps them)
};

// ---- the fake world -----------------------------------------------------------------

class fake_world {
 public:
  std::string refused;  // never set: the fake can produce everything

  verdict judge(std::uint64_t id) { return f_.judge(id); }
  std::uint64_t live() { return f_.spawn(); }
  std::uint64_t dead() {
    const std::uint64_t id = f_.spawn();
    f_.kill(id);
    return id;
  }
  std::uint64_t zombie() {
    const std::uint64_t id = f_.spawn();
    f_.exit_unreaped(id);
    return id;
  }
  std::uint64_t zombie_leader_with_live_threads() {
    const std::uint64_t id = f_.spawn();
    f_.leader_exit(id, 1);
    return id;
  }
  std::uint64_t reused_pid() {
    const std::uint64_t id = f_.spawn();
    f_.reuse_pid(id);
    return id;
  }
  std::uint64_t in_other_pid_namespace(bool stays_alive) {
    const std::uint64_t id = f_.spawn(fake_liveness::observer_ns + 1);
    if (!stays_alive) f_.kill(id);
    return id;
  }
  std::uint64_t in_other_time_namespace(bool stays_alive) {
    const std::uint64_t id = f_.spawn(fake_liveness::observer_ns, boottime_shift_s * 100);
    if (!stays_alive) f_.kill(id);
    return id;
  }
  verdict judge_from_other_time_namespace(std::uint64_t id) {
    f_.set_observer_time_offset(boottime_shift_s * 100);
    const verdict v = f_.judge(id);
    f_.set_observer_time_offset(0);
    return v;
  }
  // The fake caches nothing: each judgement uses the observer's offset as it
  // is at that moment.
  verdict judge_after_joining_other_time_namespace(std::uint64_t id, verdict expected_before) {
    EXPECT_STREQ(shmpool::platform::verdict_name(f_.judge(id)), shmpool::platform::verdict_name(expected_before))
        << "the verdict before setns";
    return judge_from_other_time_namespace(id);
  }
  // The children's namespace is not the observer's: nothing changes here.
  verdict judge_after_unsharing_time_namespace(std::uint64_t id) { return f_.judge(id); }
  verdict judge_with_proc_hidden(std::uint64_t id) { return judge_with(&fake_liveness::set_proc_hides_others, id); }
  verdict judge_with_proc_unmounted(std::uint64_t id) { return judge_with(&fake_liveness::set_proc_unmounted, id); }
  verdict judge_at_fd_limit(std::uint64_t id) { return judge_with(&fake_liveness::set_fds_exhausted, id); }

 private:
  verdict judge_with(void (fake_liveness::*set)(bool), std::uint64_t id) {
    (f_.*set)(true);
    const verdict v = f_.judge(id);
    (f_.*set)(false);
    return v;
  }
  fake_liveness f_;
};

// ---- the cases ----------------------------------------------------------------------

template <class World>
class LivenessConformance : public ::testing::Test {
 protected:
  World world;
};
using worlds = ::testing::Types<real_world, fake_world>;
TYPED_TEST_SUITE(LivenessConformance, worlds);

// Produces a situation, or skips naming what the kernel refused.
#define PRODUCE(var, expr)                                         \
  const std::uint64_t var = (expr);                                \
  if (!this->world.refused.empty()) GTEST_SKIP() << this->world.refused; \
  ASSERT_NE(var, 0u)
#define EXPECT_VERDICT(expr, want)                                        \
  do {                                                                    \
    const verdict got_ = (expr);                                          \
    if (!this->world.refused.empty()) GTEST_SKIP() << this->world.refused; \
    EXPECT_EQ(shmpool::platform::verdict_name(got_), std::string(shmpool::platform::verdict_name(want))); \
  } while (false)

TYPED_TEST(LivenessConformance, ReapedOwnerIsCertainlyDead) {
  PRODUCE(id, this->world.dead());
  EXPECT_VERDICT(this->world.judge(id), verdict::dead);
}

TYPED_TEST(LivenessConformance, RunningOwnerIsAlive) {
  PRODUCE(id, this->world.live());
  EXPECT_VERDICT(this->world.judge(id), verdict::alive);
}

TYPED_TEST(LivenessConformance, UnreapedZombieIsCertainlyDead) {
  PRODUCE(id, this->world.zombie());
  EXPECT_VERDICT(this->world.judge(id), verdict::dead);
}

TYPED_TEST(LivenessConformance, LeaderInStateZWithLiveThreadsIsAlive) {
  PRODUCE(id, this->world.zombie_leader_with_live_threads());
  EXPECT_VERDICT(this->world.judge(id), verdict::alive);
}

TYPED_TEST(LivenessConformance, OwnerWhosePidWasReusedIsCertainlyDead) {
  PRODUCE(id, this->world.reused_pid());
  EXPECT_VERDICT(this->world.judge(id), verdict::dead);
}

TYPED_TEST(LivenessConformance, OwnerInAnotherPidNamespaceIsMaybeAliveEvenWhenGone) {
  PRODUCE(live, this->world.in_other_pid_namespace(true));
  EXPECT_VERDICT(this->world.judge(live), verdict::other_namespace);
  PRODUCE(gone, this->world.in_other_pid_namespace(false));
  EXPECT_VERDICT(this->world.judge(gone), verdict::other_namespace);
}

TYPED_TEST(LivenessConformance, RunningOwnerInAnotherTimeNamespaceIsAlive) {
  PRODUCE(id, this->world.in_other_time_namespace(true));
  EXPECT_VERDICT(this->world.judge(id), verdict::alive);
}

TYPED_TEST(LivenessConformance, RunningOwnerJudgedFromAnotherTimeNamespaceIsAlive) {
  PRODUCE(id, this->world.live());
  EXPECT_VERDICT(this->world.judge_from_other_time_namespace(id), verdict::alive);
}

TYPED_TEST(LivenessConformance, ReapedOwnerOfAnotherTimeNamespaceIsCertainlyDead) {
  PRODUCE(id, this->world.in_other_time_namespace(false));
  EXPECT_VERDICT(this->world.judge(id), verdict::dead);
  PRODUCE(zombie, this->world.zombie());
  EXPECT_VERDICT(this->world.judge_from_other_time_namespace(zombie), verdict::dead);
}

// Issue 20 item 5: setns(CLONE_NEWTIME) moves a running process into
// another time namespace; an offset read before must never be used after.
TYPED_TEST(LivenessConformance, RunningOwnerJudgedAfterJoiningAnotherTimeNamespaceIsAlive) {
  PRODUCE(id, this->world.live());
  EXPECT_VERDICT(this->world.judge_after_joining_other_time_namespace(id, verdict::alive), verdict::alive);
}

// ... while the evidence of a reused pid still counts there (an oracle that
// answered "maybe alive" to everything after setns would be safe but blind).
TYPED_TEST(LivenessConformance, OwnerWhosePidWasReusedIsCertainlyDeadAfterJoiningAnotherTimeNamespace) {
  PRODUCE(id, this->world.reused_pid());
  EXPECT_VERDICT(this->world.judge_after_joining_other_time_namespace(id, verdict::dead), verdict::dead);
}

// /proc/self/timens_offsets describes the namespace of the reader's future
// children: after unshare(CLONE_NEWTIME) it is not the reader's own offset.
TYPED_TEST(LivenessConformance, RunningOwnerJudgedAfterUnsharingTheTimeNamespaceForChildrenIsAlive) {
  PRODUCE(id, this->world.live());
  EXPECT_VERDICT(this->world.judge_after_unsharing_time_namespace(id), verdict::alive);
}

TYPED_TEST(LivenessConformance, RunningOwnerHiddenByHidepidIsMaybeAlive) {
  PRODUCE(id, this->world.live());
  EXPECT_VERDICT(this->world.judge_with_proc_hidden(id), verdict::unknown);
}

TYPED_TEST(LivenessConformance, ReapedOwnerIsCertainlyDeadEvenBehindHidepid) {
  PRODUCE(id, this->world.dead());
  EXPECT_VERDICT(this->world.judge_with_proc_hidden(id), verdict::dead);  // ESRCH needs no /proc
}

TYPED_TEST(LivenessConformance, EveryOwnerIsMaybeAliveWithProcUnmounted) {
  PRODUCE(live, this->world.live());
  EXPECT_VERDICT(this->world.judge_with_proc_unmounted(live), verdict::unknown);
  PRODUCE(gone, this->world.dead());  // our own namespace is unknowable: a pid alone proves nothing
  EXPECT_VERDICT(this->world.judge_with_proc_unmounted(gone), verdict::unknown);
}

TYPED_TEST(LivenessConformance, RunningOwnerJudgedAtTheFdLimitIsMaybeAlive) {
  PRODUCE(id, this->world.live());
  EXPECT_VERDICT(this->world.judge_at_fd_limit(id), verdict::unknown);
}

TYPED_TEST(LivenessConformance, ReapedOwnerJudgedAtTheFdLimitIsCertainlyDead) {
  PRODUCE(id, this->world.dead());
  EXPECT_VERDICT(this->world.judge_at_fd_limit(id), verdict::dead);
}

// ---- the real oracle only ---------------------------------------------------------------

TEST(ProcLiveness, OwnIdentityIsAliveAndStable) {
  const std::uint64_t me = proc_liveness::self();
  EXPECT_NE(me, 0u);
  EXPECT_EQ(me, proc_liveness::identity_of(::getpid()));
  EXPECT_EQ(proc_liveness::judge(me), verdict::alive);
}

// Item 24: whatever fork handlers run first, a fork child starts with no
// cached identity (the page is wiped by the kernel at fork).
TEST(ProcLiveness, ForkChildStartsWithNoCachedIdentity) {
  ASSERT_TRUE(proc_liveness::cache_wiped_on_fork()) << "MADV_WIPEONFORK refused: the fork-handler fallback is in use";
  ASSERT_NE(proc_liveness::self(), 0u);
  report r;
  pid_t child = 0;
  ASSERT_TRUE(fork_reporting(
      [](int fd) {
        report out;
        out.value = static_cast<std::int64_t>(proc_liveness::cache_.identity.load());  // before anything else
        out.id = proc_liveness::self();
        out.holder = ::getpid();
        send(fd, out);
      },
      r, child));
  wait_for(child);
  EXPECT_EQ(r.value, 0);
  EXPECT_NE(r.id, proc_liveness::self());
  EXPECT_EQ(shmpool::platform::identity_pid(r.id), child);
}

TEST(ProcLiveness, IdentityOfAnotherTimeNamespaceEqualsTheOneSeenFromHere) {
  real_world w;
  const std::uint64_t id = w.in_other_time_namespace(true);
  if (!w.refused.empty()) GTEST_SKIP() << w.refused;
  const pid_t pid = shmpool::platform::identity_pid(id);
  EXPECT_TRUE(shmpool::platform::same_start(shmpool::platform::identity_start(id),
                                            shmpool::platform::identity_start(proc_liveness::identity_of(pid))));
}

// Issue 20 item 5: the own identity is normalised when it is computed, so
// it stays valid in any time namespace: after setns, the cached identity,
// one computed afresh there, and the oracle agree.
TEST(ProcLiveness, OwnIdentityStaysValidAfterJoiningAnotherTimeNamespace) {
  report r;
  pid_t child = 0;
  ASSERT_TRUE(fork_reporting(
      [](int fd) {
        ::alarm(30);
        const std::uint64_t before = proc_liveness::self();  // computed and cached where the child started
        if (const int err = move_into_shifted_time_namespace())
          return send_setns_refused(fd, err, "setns into a new time namespace");
        report out;
        std::string problems;
        if (proc_liveness::self() != before) problems += "self() changed; ";
        const std::uint64_t fresh = proc_liveness::identity_of(::getpid());
        if (!shmpool::platform::same_start(shmpool::platform::identity_start(fresh),
                                           shmpool::platform::identity_start(before)))
          problems += "identity_of(getpid()) has another start time; ";
        if (proc_liveness::judge(before) != verdict::alive)
          problems += std::string("judge(self()) says ") + shmpool::platform::verdict_name(proc_liveness::judge(before));
        std::snprintf(out.what, sizeof out.what, "%s", problems.c_str());
        send(fd, out);
      },
      r, child));
  wait_for(child);
  if (r.refused != 0) GTEST_SKIP() << r.what << ": " << std::strerror(r.refused);
  EXPECT_STREQ(r.what, "");
}

// Issue 20 item 5: after setns, a process whose leader then called
// pthread_exit cannot read its new namespace's offset (timens_offsets
// reads empty): it must answer "maybe alive", never compare with the offset
// of the namespace it left.
TEST(ProcLiveness, OwnerJudgedAfterJoiningAnotherTimeNamespaceWithTheLeaderGoneIsNeverDead) {
  real_world w;
  const std::uint64_t id = w.live();
  ASSERT_NE(id, 0u);
  report r;
  pid_t child = 0;
  ASSERT_TRUE(fork_reporting(
      [id](int fd) {
        ::alarm(30);
        if (proc_liveness::judge(id) != verdict::alive) {
          report out;
          out.value = -1;
          send(fd, out);
          return;
        }
        if (const int err = move_into_shifted_time_namespace())
          return send_setns_refused(fd, err, "setns into a new time namespace");
        std::thread([fd, id] {
          report out;
          out.holder = await_state(::getpid(), 'Z') ? 1 : 0;
          out.value = static_cast<std::int64_t>(proc_liveness::judge(id));
          send(fd, out);
          ::_exit(0);
        }).detach();
        ::syscall(SYS_exit, 0);  // the leader goes; its thread judges
      },
      r, child));
  wait_for(child);
  if (r.refused != 0) GTEST_SKIP() << r.what << ": " << std::strerror(r.refused);
  ASSERT_NE(r.value, -1) << "the live owner was not alive before setns";
  EXPECT_EQ(r.holder, 1) << "the leader never showed state Z";
  const std::string got = shmpool::platform::verdict_name(static_cast<verdict>(r.value));
  EXPECT_TRUE(got == "unknown" || got == "alive") << got;
}

// A process in a new pid namespace that still sees its parent's /proc: the
// pid in an identity names another process there, so /proc proves nothing
// (only ESRCH from kill, which uses our namespace, still does).
TEST(ProcLiveness, JudgingThroughAProcOfAnotherPidNamespaceIsMaybeAlive) {
  report r;
  pid_t child = 0;
  ASSERT_TRUE(fork_reporting(
      [](int fd) {
        if (::unshare(CLONE_NEWPID) != 0) return send_refused(fd, errno, "unshare(CLONE_NEWPID)");
        const pid_t g = ::fork();
        if (g == 0) {  // pid 1 of the new namespace, /proc still the parent's
          report out;
          out.id = proc_liveness::self();
          out.value = static_cast<std::int64_t>(proc_liveness::judge(out.id));
          send(fd, out);
          ::_exit(0);
        }
        wait_for(g);
      },
      r, child));
  wait_for(child);
  if (r.refused != 0) GTEST_SKIP() << r.what << ": " << std::strerror(r.refused);
  EXPECT_EQ(shmpool::platform::identity_pid(r.id), 1);
  EXPECT_STREQ(shmpool::platform::verdict_name(static_cast<verdict>(r.value)), "unknown");
}

TEST(ProcLiveness, StartTimesOneTickApartAreTheSameProcess) {
  using shmpool::platform::same_start;
  EXPECT_TRUE(same_start(100, 100));
  EXPECT_TRUE(same_start(100, 101));
  EXPECT_TRUE(same_start(101, 100));
  EXPECT_TRUE(same_start(0, shmpool::platform::identity_start_mask));  // wraps
  EXPECT_FALSE(same_start(100, 102));
  EXPECT_FALSE(same_start(102, 100));
}

}  // namespace
