// Progress and transitions: the handle code that races with this process's
// own threads (guards, checked frees, counters), waiter entries across exec,
// and the fairness of the eventfd lock.  Each test reproduces a defect a
// review proved against the earlier protocol; PROTOCOL.md "Progress" and
// slot_protocol.hpp (C1, C2, C3, I7) state the rules they check.
//
// The races are real threads on the real library, swept over a range of
// delays so that the two sides overlap on a machine of any speed; each test
// stops after a few seconds on a loaded machine.  Relacy explores the same
// schedules exhaustively (model/slot_protocol_relacy.cpp, "same process").
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "shmpool/pool.hpp"
#include "temp_dir.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using shmpool_test::temp_dir;

void spin(unsigned turns) {
  for (unsigned k = 0; k < turns; ++k) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

using clock_type = std::chrono::steady_clock;

// Waits for a phase: spins first (the two threads must overlap within a few
// instructions), then yields, so a loaded two-core machine still runs both.
template <class Pred>
void await(Pred&& done) {
  const auto spin_until = clock_type::now() + 200us;
  for (unsigned k = 0; !done(); ++k)
    if ((k & 255) == 0 && clock_type::now() > spin_until) std::this_thread::yield();
}

// ---- C2: a guard carries the generation of its own claim ----------------------
//
// Each round: the main thread takes a guard of the pool's only slot; the
// racer, released at a delay swept over the rounds, frees that allocation
// with the plain free and allocates the slot again (this process's next
// claim: the same identity).  The guard must then hold the generation of the
// main thread's claim, so that its destructor leaves the racer's allocation
// alone.  Before C2 the guard read the generation after its claim returned
// and could record the racer's: its destructor freed the racer's slot.
TEST(PoolProgress, AGuardCarriesTheGenerationOfItsOwnClaim) {
  auto p = shmpool::i64_pool::anonymous(1);
  std::atomic<int> phase{0};  // 1: guard being taken; 2: racer done; 0: round over
  std::atomic<unsigned> delay{0};
  std::atomic<bool> racer_holds{false}, stop{false};
  std::thread racer([&] {
    while (!stop.load()) {
      await([&] { return stop.load() || phase.load(std::memory_order_acquire) == 1; });
      if (stop.load()) break;
      phase.store(4, std::memory_order_release);  // armed: both sides start together
      spin(delay.load(std::memory_order_relaxed));
      // Retry the free for a while: the take-over lands right after the
      // guard's claim publishes, where the guard's generation is decided.
      bool holds = false;
      for (int k = 0; k < 2000 && !holds; ++k)
        if (p.free(0)) holds = p.try_alloc().has_value();
      racer_holds.store(holds);
      phase.store(2, std::memory_order_release);
      await([&] { return stop.load() || phase.load(std::memory_order_acquire) != 2; });
    }
  });
  std::uint64_t rounds = 0, lost = 0, overlapped = 0;
  // At least 3 s and 1,000 take-overs (a loaded machine may need longer), at most 20 s.
  const auto start = clock_type::now();
  for (; clock_type::now() < start + 20s && (clock_type::now() < start + 3s || overlapped < 1000); ++rounds) {
    delay.store(static_cast<unsigned>(rounds % 400), std::memory_order_relaxed);
    racer_holds.store(false);
    phase.store(1, std::memory_order_release);
    await([&] { return phase.load(std::memory_order_acquire) != 1; });  // armed (4), or already done (2)
    spin(static_cast<unsigned>((rounds * 13) % 64));
    {
      auto g = p.try_alloc_guard();
      await([&] { return phase.load(std::memory_order_acquire) == 2; });
      if (racer_holds.load()) {
        ++overlapped;
        // The racer freed our allocation and claimed the slot again: the
        // guard's destructor must free nothing.
      }
    }
    if (racer_holds.load() && !p.is_allocated(0)) ++lost;  // our stale guard freed the racer's slot
    if (p.is_allocated(0)) p.free(0);
    phase.store(0, std::memory_order_release);
  }
  stop.store(true);
  racer.join();
  EXPECT_EQ(lost, 0u) << "a guard freed an allocation made after its own, in " << lost << " of " << rounds
                      << " rounds (" << overlapped << " where the racer took the slot over)";
  EXPECT_GT(overlapped, 0u) << "the racer never took the slot over: the test did not exercise the race";
}

// ---- C1: a checked free that frees nothing never changes the word ---------------
//
// The holder thread allocates the slot this process just freed (plain free
// of a guard's allocation) and, for as long as it holds it, checks that it
// is allocated.  Meanwhile the main thread destroys the stale guard, whose
// checked free must find another allocation and change nothing.  Before C1
// the checked free marked the word RELEASING, found the generation changed
// and restored it: inside that window the holder's slot read as not
// allocated (its free() returned false, get/set threw logic_error).
TEST(PoolProgress, AStaleGuardNeverChangesTheHoldersWordEvenForAMoment) {
  auto p = shmpool::i64_pool::anonymous(1);
  std::atomic<int> phase{0};  // 1: holder may free and re-claim; 2: holder holds; 3: guard gone
  std::atomic<unsigned> delay{0};
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> unseen{0}, threw{0}, held_rounds{0};
  std::thread holder([&] {
    while (!stop.load()) {
      await([&] { return stop.load() || phase.load(std::memory_order_acquire) == 1; });
      if (stop.load()) break;
      phase.store(4, std::memory_order_release);  // armed: both sides start together
      spin(delay.load(std::memory_order_relaxed));
      const bool holds = p.free(0) && p.try_alloc().has_value();
      phase.store(2, std::memory_order_release);
      if (holds) {
        held_rounds.fetch_add(1);
        // Hold and look until the main thread's guard is gone.
        for (unsigned k = 0; phase.load(std::memory_order_acquire) == 2; ++k) {
          if (k > 4000) std::this_thread::yield();
          if (!p.is_allocated(0)) unseen.fetch_add(1);
          try {
            p.set(0, 7);
          } catch (const std::logic_error&) {
            threw.fetch_add(1);
          }
        }
        if (!p.free(0)) unseen.fetch_add(1);  // our allocation must still be ours to free
      } else {
        await([&] { return stop.load() || phase.load(std::memory_order_acquire) != 2; });
      }
    }
  });
  std::uint64_t rounds = 0;
  const auto start = clock_type::now();
  for (; clock_type::now() < start + 20s && (clock_type::now() < start + 3s || held_rounds.load() < 1000); ++rounds) {
    delay.store(static_cast<unsigned>(rounds % 300), std::memory_order_relaxed);
    auto g = p.try_alloc_guard();
    ASSERT_TRUE(g.has_value());
    phase.store(1, std::memory_order_release);
    await([&] { return phase.load(std::memory_order_acquire) != 1; });  // armed (4), or already done (2)
    spin(static_cast<unsigned>((rounds * 7) % 300));
    g.reset();  // the checked free races the holder's free and re-claim
    await([&] { return phase.load(std::memory_order_acquire) == 2; });
    spin(200);
    phase.store(3, std::memory_order_release);
    // The round is over once the holder has freed (or never held).
    while (p.is_allocated(0)) std::this_thread::yield();
  }
  stop.store(true);
  phase.store(0);
  holder.join();
  EXPECT_EQ(unseen.load(), 0u) << "the holder's slot read as not allocated while it held it (" << rounds
                               << " rounds, " << held_rounds.load() << " held)";
  EXPECT_EQ(threw.load(), 0u) << "set() on the holder's own slot threw logic_error";
  EXPECT_GT(held_rounds.load(), 0u) << "the holder never re-claimed the slot: the race was not exercised";
}

// ---- C3: stats() racing a claimant never puts frees ahead -----------------------
//
// A claimant allocates the only slot while another thread calls stats() in
// a loop; once the claimant holds the slot and the stats thread has
// stopped, the pool is quiescent and allocs - frees must equal used.
// Before C3 a stats() that read the slot between the claimant's count and
// its publish raised the shared frees mark one too high, and the quiescent
// pool reported frees = allocs - used + 1 until the next free.
TEST(PoolProgress, QuiescentCountersBalanceAfterStatsRacedAClaimant) {
  auto p = shmpool::i64_pool::anonymous(1);
  std::atomic<int> phase{0};  // 1: start the stats loop; 4: it runs; 2: stop it; 3: stopped
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop.load()) {
      await([&] { return stop.load() || phase.load(std::memory_order_acquire) == 1; });
      if (stop.load()) break;
      std::uint64_t last_frees = 0;
      phase.store(4, std::memory_order_release);
      while (phase.load(std::memory_order_acquire) == 4) {
        const auto s = p.stats();
        if (s.frees < last_frees) std::abort();  // monotonic (also checked below)
        last_frees = s.frees;
      }
      phase.store(3, std::memory_order_release);
    }
  });
  std::uint64_t rounds = 0, unbalanced = 0;
  std::string first;
  const auto until = clock_type::now() + 3s;
  for (; rounds < 300'000 && clock_type::now() < until; ++rounds) {
    phase.store(1, std::memory_order_release);
    await([&] { return phase.load(std::memory_order_acquire) == 4; });
    spin(static_cast<unsigned>(rounds % 64));
    const auto i = p.try_alloc();
    ASSERT_TRUE(i.has_value());
    phase.store(2, std::memory_order_release);
    await([&] { return phase.load(std::memory_order_acquire) == 3; });
    const auto s = p.stats();
    if (s.allocs - s.frees != s.used) {
      if (unbalanced++ == 0)
        first = "allocs " + std::to_string(s.allocs) + ", frees " + std::to_string(s.frees) + ", used " +
                std::to_string(s.used);
    }
    ASSERT_TRUE(p.free(*i));
  }
  stop.store(true);
  phase.store(0);
  reader.join();
  EXPECT_EQ(unbalanced, 0u) << "quiescent counters out of balance in " << unbalanced << " of " << rounds
                            << " rounds; first: " << first;
  const auto s = p.stats();
  EXPECT_EQ(s.allocs - s.frees, s.used);
}

// ---- the eventfd lock: a writer's wait is bounded ---------------------------------
//
// Ten threads call notify() and eventfd_consume() in a loop (the shared
// side of the eventfd lock); eventfd_set() (the exclusive side) must still
// return.  glibc's default rwlock prefers readers and starved it forever.
TEST(PoolProgress, EventfdSetReturnsWhileTenThreadsNotifyInALoop) {
  auto p = shmpool::i64_pool::anonymous(4);
  (void)p.eventfd();
  std::atomic<bool> stop{false};
  std::vector<std::thread> loopers;
  for (int t = 0; t < 10; ++t)
    loopers.emplace_back([&, t] {
      while (!stop.load(std::memory_order_relaxed)) {
        if (t % 2 == 0) (void)p.notify();
        else (void)p.eventfd_consume();
      }
    });
  std::this_thread::sleep_for(50ms);  // the loopers hold the shared side in turn
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  const auto started = clock_type::now();
  std::thread writer([&] {
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    p.eventfd_set(fd);
    (void)p.eventfd();
    std::lock_guard lock(m);
    done = true;
    cv.notify_all();
  });
  bool returned = false;
  {
    std::unique_lock lock(m);
    returned = cv.wait_for(lock, 5s, [&] { return done; });
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
  stop.store(true);  // lets a starved writer through, so the test ends either way
  writer.join();
  for (auto& t : loopers) t.join();
  EXPECT_TRUE(returned) << "eventfd_set()/eventfd() did not return within 5 s while ten threads looped on "
                           "notify/eventfd_consume";
  RecordProperty("writer_seconds", std::to_string(seconds));
}

// ---- I7: waiter entries do not survive exec -----------------------------------
//
// A process whose threads are asleep in alloc() on a full pool re-executes
// itself (exec keeps pid and start time: the same identity).  The new image
// must be able to release what the old one left: recover_stale() clears the
// entries no thread of it holds, check() names them first, and
// release_owner(pid) and reset() clear them from another process.  The new
// image is this test binary again, running PoolExecHelper.AfterExec.
constexpr const char* after_exec_env = "SHMPOOL_TEST_AFTER_EXEC";

// Forks a child that fills the pool, parks `sleepers` threads in alloc(),
// and execs this binary's AfterExec helper with `mode`.  Returns the child's
// exit status (0: every check in the new image passed).
int exec_with_waiters_asleep(const fs::path& path, int sleepers, const std::string& mode, pid_t* child_out,
                             int* ready_fd = nullptr) {
  int ready[2];
  if (::pipe(ready) != 0) return 90;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    ::alarm(60);
    auto p = shmpool::i64_pool::open(path, 2);
    while (p.try_alloc()) {
    }
    for (int t = 0; t < sleepers; ++t) std::thread([&p] { (void)p.alloc(); }).detach();
    const auto until = clock_type::now() + 10s;
    while (p.stats().waiters < static_cast<std::uint64_t>(sleepers) && clock_type::now() < until)
      std::this_thread::sleep_for(1ms);
    ::setenv(after_exec_env, (path.string() + "|" + mode + "|" + std::to_string(ready[1])).c_str(), 1);
    ::setenv("GTEST_OUTPUT", "", 1);
    ::unsetenv("GTEST_OUTPUT");
    char self[] = "/proc/self/exe";
    char filter[] = "--gtest_filter=PoolExecHelper.AfterExec";
    char* argv[] = {self, filter, nullptr};
    ::execv(self, argv);
    ::_exit(91);
  }
  ::close(ready[1]);
  if (child_out != nullptr) *child_out = pid;
  if (ready_fd != nullptr) {
    *ready_fd = ready[0];
    return 0;
  }
  ::close(ready[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

TEST(PoolProgress, RecoverStaleInTheNewImageClearsWaiterEntriesLeftBeforeExec) {
  temp_dir d;
  const fs::path path = d.file("exec-waiters.shm");
  { auto p = shmpool::i64_pool::open(path, 2); }
  pid_t child = 0;
  EXPECT_EQ(exec_with_waiters_asleep(path, 8, "recover", &child), 0)
      << "the new image's checks failed (its output above names which)";
  auto p = shmpool::i64_pool::open(path, 2);
  EXPECT_EQ(p.stats().waiters, 0u);
}

TEST(PoolProgress, RecoveryBesideALiveWaiterOfTheNewImageStillClearsTheOldImagesEntries) {
  temp_dir d;
  const fs::path path = d.file("exec-waiters.shm");
  { auto p = shmpool::i64_pool::open(path, 2); }
  pid_t child = 0;
  EXPECT_EQ(exec_with_waiters_asleep(path, 8, "recover_beside_a_waiter", &child), 0)
      << "the new image's checks failed (its output above names which)";
}

// From another process: release_owner(pid) and reset() take the entries too.
TEST(PoolProgress, ReleaseOwnerAndResetTakeWaiterEntriesLeftBeforeExec) {
  for (const std::string how : {"release_owner", "reset"}) {
    SCOPED_TRACE(how);
    temp_dir d;
    const fs::path path = d.file("exec-waiters.shm");
    { auto p = shmpool::i64_pool::open(path, 2); }
    pid_t child = 0;
    int ready = -1;
    ASSERT_EQ(exec_with_waiters_asleep(path, 8, "hold", &child, &ready), 0);
    char c = 0;
    ASSERT_EQ(::read(ready, &c, 1), 1) << "the new image did not start";
    auto p = shmpool::i64_pool::open(path, 2);
    EXPECT_EQ(p.stats().waiters, 8u) << "the old image's sleepers were not all registered";
    if (how == "reset") p.reset();
    else p.release_owner(child);
    EXPECT_EQ(p.stats().waiters, 0u) << how << " left waiter entries of the image before exec";
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ::close(ready);
  }
}

// The new image (not a test of its own: skipped unless exec'd by the tests above).
TEST(PoolExecHelper, AfterExec) {
  const char* arg = std::getenv(after_exec_env);
  if (arg == nullptr) GTEST_SKIP() << "helper image: runs only when exec'd by PoolProgress tests";
  const std::string s = arg;
  const auto bar1 = s.find('|'), bar2 = s.rfind('|');
  const fs::path path = s.substr(0, bar1);
  const std::string mode = s.substr(bar1 + 1, bar2 - bar1 - 1);
  const int ready = std::atoi(s.substr(bar2 + 1).c_str());
  auto p = shmpool::i64_pool::open(path, 2);
  if (mode == "hold") {
    (void)::write(ready, "r", 1);
    for (;;) ::pause();  // the parent checks, then kills us
  }
  ASSERT_EQ(p.stats().waiters, 8u) << "the old image's sleepers were not all registered";
  if (mode == "recover_beside_a_waiter") {
    // A thread of this image cannot register (every entry is the old
    // image's); recovery must clear them although this image now waits.
    std::atomic<bool> got{false};
    std::thread t([&] { got = p.alloc(5s).has_value(); });
    std::this_thread::sleep_for(50ms);
    p.recover_stale();
    const auto until = clock_type::now() + 2s;
    while (p.stats().waiters != 1 && clock_type::now() < until) std::this_thread::sleep_for(1ms);
    EXPECT_EQ(p.stats().waiters, 1u) << "the old image's entries survived a recovery beside a live waiter";
    p.free(0);
    t.join();
    EXPECT_TRUE(got.load());
    return;
  }
  bool named = false;
  for (const auto& problem : p.check()) named |= problem.find("waiter entry") != std::string::npos;
  EXPECT_TRUE(named) << "check() did not report the waiter entries no thread of this image holds";
  p.recover_stale();
  EXPECT_EQ(p.stats().waiters, 0u) << "recover_stale() left the waiter entries of the image before exec";
  // And a blocking alloc now sleeps instead of polling: it registers.
  std::thread t([&] { (void)p.alloc(2s); });
  const auto until = clock_type::now() + 2s;
  while (p.stats().waiters == 0 && clock_type::now() < until) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(p.stats().waiters, 1u);
  p.free(0);
  t.join();
}

// ---- I7: a revoked entry is never shared by two threads of one process ----------
//
// Thread A sleeps registered; release_owner(own pid) revokes its entry and
// wakes it; thread B, of the same process, registers at once, often into
// A's old entry (the same value: this process's identity).  Both must still
// be woken by the frees that follow.  Before the revocation counts, A could
// keep B's entry as its own, and the first of them to leave unregistered the
// other: a blocking alloc slept beside a free slot.
TEST(PoolProgress, ARevokedWaiterEntryIsNeverSharedByTwoThreadsOfOneProcess) {
  const auto start = clock_type::now();
  int trials = 0, shared_entry_rounds = 0;
  for (; trials < 40 && clock_type::now() < start + 15s; ++trials) {
    auto p = shmpool::i64_pool::anonymous(2);
    const auto a = p.try_alloc(), b = p.try_alloc();
    ASSERT_TRUE(a && b);
    std::atomic<int> done{0};
    std::atomic<bool> go{false};
    std::thread ta([&] { done += p.alloc(5s).has_value(); });
    while (p.stats().waiters != 1) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(5ms);  // A asleep
    std::thread tb([&] {
      await([&] { return go.load(); });
      done += p.alloc(5s).has_value();
    });
    p.release_owner(::getpid());  // revokes A's entry (an operator's release, e.g. after exec) and wakes A
    go = true;                    // B races A back into the entries
    std::this_thread::sleep_for(30ms);
    shared_entry_rounds += p.stats().waiters < 2;
    p.free(*a);
    std::this_thread::sleep_for(20ms);
    p.free(*b);
    const auto until = clock_type::now() + 3s;
    while (done.load() < 2 && clock_type::now() < until) std::this_thread::sleep_for(1ms);
    const int got = done.load();
    ta.join();
    tb.join();
    ASSERT_EQ(got, 2) << "trial " << trials << ": a blocking alloc slept beside a free slot (lost wake-up) after "
                      << "its entry was revoked and taken by a thread of its own process";
  }
  RecordProperty("trials", trials);
  RecordProperty("rounds_with_one_entry_for_two_threads", shared_entry_rounds);
}

// ---- C1: a claimant never waits for the checked-free gate -------------------------
//
// A signal handler allocates while its own thread may stand inside a guard's
// checked free (the gate raised).  The claim must give the slot back and
// go elsewhere, never wait for the gate: the thread under the handler can
// not lower it.
std::atomic<shmpool::i64_pool*> g_signal_pool{nullptr};
std::atomic<std::uint64_t> g_signal_allocs{0};
void allocate_in_handler(int) {
  if (auto* p = g_signal_pool.load()) {
    if (const auto i = p->try_alloc()) {
      p->free(*i);
      g_signal_allocs.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

TEST(PoolProgress, ASignalHandlerThatAllocatesDuringItsThreadsCheckedFreeNeverHangs) {
  const int rc = [] {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::alarm(20);  // a hang ends as SIGALRM, not at ctest's timeout
      auto p = shmpool::i64_pool::anonymous(4);
      g_signal_pool = &p;
      struct sigaction sa {};
      sa.sa_handler = allocate_in_handler;
      ::sigaction(SIGPROF, &sa, nullptr);
      itimerval every{{0, 50}, {0, 50}};
      ::setitimer(ITIMER_PROF, &every, nullptr);
      const auto until = clock_type::now() + 2s;
      std::uint64_t guards = 0;
      while (clock_type::now() < until) {
        auto g = p.try_alloc_guard();
        ++guards;
      }
      itimerval off{};
      ::setitimer(ITIMER_PROF, &off, nullptr);
      ::_exit(guards > 0 && g_signal_allocs.load() > 0 ? 0 : 2);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
  }();
  EXPECT_EQ(rc, 0) << (rc == 100 + SIGALRM ? "hung: a claim in the signal handler waited for its own thread's gate"
                                           : "the handler never allocated (rc " + std::to_string(rc) + ")");
}

// ---- the eventfd: no call waits for another's system call -----------------------
//
// A consumer blocks in eventfd_consume() on the caller's blocking eventfd;
// eventfd_set() then swaps the fd; notify() must still get through (it is
// what wakes the consumer).  A lock held across the consumer's read made
// the three wait on each other.
TEST(PoolProgress, NotifyGetsThroughWhileAConsumerBlocksAndEventfdSetSwaps) {
  auto p = shmpool::i64_pool::anonymous(1);
  const int fd = ::eventfd(0, EFD_CLOEXEC);  // blocking mode: the caller's
  ASSERT_GE(fd, 0);
  p.eventfd_set(fd);
  EXPECT_EQ(p.eventfd(), fd) << "eventfd() must name the caller's fd, not the pool's duplicate of it";
  EXPECT_EQ(p.fileno(), fd);
  std::atomic<bool> consumed{false}, set_done{false}, notified{false};
  std::thread consumer([&] {
    (void)p.eventfd_consume();  // blocks: the counter is 0
    consumed = true;
  });
  std::this_thread::sleep_for(50ms);
  const int other = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::thread setter([&] {
    p.eventfd_set(other);
    set_done = true;
  });
  const auto until = clock_type::now() + 3s;
  while (!set_done && clock_type::now() < until) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(set_done.load()) << "eventfd_set() waited for a consumer blocked on the old fd";
  p.eventfd_set(fd);
  std::thread notifier([&] { notified = p.notify(); });
  const auto until2 = clock_type::now() + 3s;
  while (!(notified && consumed) && clock_type::now() < until2) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(notified.load()) << "notify() waited behind eventfd_set() and the blocked consumer";
  EXPECT_TRUE(consumed.load()) << "the consumer was not woken through the fd it blocked on";
  ::eventfd_write(fd, 1);  // whatever happened, let every thread finish
  setter.join();
  notifier.join();
  consumer.join();
  p.eventfd_set(-1);
  ::close(fd);
  ::close(other);
}

// A fork while other threads notify and swap fds: the child's first notify
// returns (no lock is inherited held).
TEST(PoolProgress, AForkWhileThreadsNotifyAndSwapLeavesTheChildsEventfdUsable) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer's runtime may hang a fork child on a lock of its own allocator held by another "
                  "thread at the fork (see SrbProcess.ForkWhileOtherThreadsUseTheRegistry...): runs in release and asan";
#endif
  auto p = shmpool::i64_pool::anonymous(1);
  (void)p.eventfd();
  std::atomic<bool> stop{false};
  std::thread notifier([&] {
    while (!stop) (void)p.notify();
  });
  std::thread swapper([&] {
    while (!stop) {
      const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      p.eventfd_set(fd);
      p.eventfd_set(-1);
      ::close(fd);
    }
  });
  int hung = 0, forks = 0;
  const auto until = clock_type::now() + 2s;
  for (; forks < 200 && clock_type::now() < until; ++forks) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::alarm(2);
      (void)p.notify();
      (void)p.eventfd_consume();
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    hung += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  stop = true;
  notifier.join();
  swapper.join();
  EXPECT_EQ(hung, 0) << hung << " of " << forks << " fork children hung in their first notify/consume";
}

}  // namespace
