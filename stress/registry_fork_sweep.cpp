// A fork while another thread stands at each registry crash point
// (registry_fork_sweep.hpp has the checks K1..K4).
#include "registry_fork_sweep.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include "registry_sweep.hpp"
#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/platform/linux.hpp"
#include "shmpool/stable_reference_buffer.hpp"
#include "stress_util.hpp"

namespace stress {
namespace {

namespace platform = shmpool::platform;
namespace detail = shmpool::detail;
using shmpool::stable_reference_buffer;

constexpr std::uint64_t max_points = 200;  // a bound, never reached: A passes about 10 points
constexpr unsigned child_bound_s = 3;      // K1: the fork child's registry operations, all of them
constexpr unsigned subject_bound_s = 30;   // the whole subject process (a hang fails, never blocks the sweep)

enum class scenario { first_attach, attached };
const char* name_of(scenario s) { return s == scenario::first_attach ? "first_attach" : "attached"; }

bool bytes_are(const void* p, std::size_t n, char c) {
  const auto* b = static_cast<const char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != c) return false;
  return true;
}

std::string site_name(platform::crash_site s) {
  switch (s) {
    case platform::crash_site::registry_inserted: return "60 registry_inserted";
    case platform::crash_site::registry_decremented: return "61 registry_decremented";
    case platform::crash_site::registry_anchor_written: return "67 registry_anchor_written";
    case platform::crash_site::registry_anchor_mapped: return "68 registry_anchor_mapped";
    case platform::crash_site::registry_revived: return "69 registry_revived";
    default: return std::to_string(static_cast<unsigned>(s));
  }
}

// What thread B holds in the `attached` scenario, made on B's own thread
// before A is armed: a buffer, an open delay scope (B's token opened it),
// and a block released inside that scope (pending).
struct b_state {
  stable_reference_buffer kept;
  stable_reference_buffer::delay_deallocation* scope = nullptr;
  const void* parked = nullptr;
};

// The subject's line protocol to the sweeper (one pipe):
//   "parked <site>"   A stood at its Nth point
//   "waited"          B's fork waited for A (B asleep in fork while A stood)
//   "forked"          B's fork completed while A stood at its point
//   "ran-through"     A ran to its end without an Nth point
//   "FAIL <text>"     a check failed
class subject {
 public:
  subject(scenario sc, std::uint64_t n, int out) : sc_(sc), n_(n), out_(out) {}

  [[noreturn]] void run() {
    ::alarm(subject_bound_s);  // a subject that hangs dies; the sweeper reports it
    std::thread b([this] { thread_b(); });
    wait_for(b_ready_);
    platform::arm_crash_point(n_, platform::crash_action::park_thread);
    std::thread a([this] { thread_a(); });
    // A parks at its Nth point, or runs to its end.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!platform::crash_point_parked() && !a_done_.load() && std::chrono::steady_clock::now() < deadline)
      ::usleep(100);
    const bool parked = platform::crash_point_parked();
    if (parked) {
      say("parked " + site_name(platform::last_crash_site()));
      order_.store(1);  // B: fork now
      let_a_go_when_fork_is_done_or_waits();
    } else {
      if (!a_done_.load()) say("FAIL thread A neither parked nor finished within 10 s");
      say("ran-through");
      order_.store(2);  // B: no fork
    }
    a.join();
    b.join();
    platform::arm_crash_point(0);  // the checks below use the registry too: none of them may park
    if (!a_ok_.load()) say("FAIL thread A's registry operations gave a wrong result (K4)");
    finish_b();
    ::close(out_);
    std::exit(0);  // static destructors: the copy detaches (one more operation under L)
  }

 private:
  void thread_a() {
    bool ok = false;
    try {
      ok = use_the_registry();
    } catch (const std::exception& e) {
      say(std::string("FAIL thread A threw: ") + e.what());
    }
    a_ok_.store(ok);
    a_done_.store(true);
  }

  void thread_b() {
    if (sc_ == scenario::attached) {
      st_.kept = stable_reference_buffer(32);
      std::memset(st_.kept.get(), 'k', 32);
      st_.scope = new stable_reference_buffer::delay_deallocation;
      stable_reference_buffer p(24);
      std::memset(p.get(), 'p', 24);
      st_.parked = p.get();
      p.reset();  // inside B's scope: pending
    }
    b_tid_.store(static_cast<pid_t>(::syscall(SYS_gettid)));
    b_ready_.store(true);
    int o = 0;
    while ((o = order_.load()) == 0) ::usleep(50);
    if (o != 1) return;
    std::fflush(nullptr);
    b_forking_.store(true);
    const pid_t child = ::fork();
    if (child == 0) fork_child();
    fork_returned_.store(true);
    if (child < 0) {
      say(std::string("FAIL fork failed: ") + std::strerror(errno));
      return;
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
      say("FAIL the fork child did not complete its registry operations within " + std::to_string(child_bound_s) +
          " s (K1: it waits for a lock no thread of it will release)");
    else if (WIFSIGNALED(status))
      say(std::string("FAIL the fork child died of ") + strsignal(WTERMSIG(status)));
    else if (WEXITSTATUS(status) != 0)
      say("FAIL the fork child's registry operations gave a wrong result (K1-K3, exit " +
          std::to_string(WEXITSTATUS(status)) + ")");
  }

  // The main thread, while A stands at its point and B forks: once the
  // fork has returned in B, or B sleeps in it (its prepare handler waits
  // for the gate or L that A holds), A may run on.
  void let_a_go_when_fork_is_done_or_waits() {
    wait_for(b_forking_);
    const pid_t tid = b_tid_.load();
    int asleep = 0;
    bool waited = false;
    for (int i = 0; i < 3000 && !fork_returned_.load(); ++i) {
      // 30 consecutive readings of 'S' (about 30 ms): B is blocked in its
      // prepare handler, not on its way into it.
      asleep = process_state(tid) == 'S' ? asleep + 1 : 0;
      if (asleep >= 30) {
        waited = true;
        break;
      }
      ::usleep(1000);
    }
    if (fork_returned_.load()) say("forked");
    else if (waited) say("waited");
    else say("FAIL B's fork neither returned nor slept within 3 s while A stood at its point");
    platform::release_parked_thread();
  }

  // The fork child: one thread (B's), B's stack.
  [[noreturn]] void fork_child() {
    platform::arm_crash_point(0);
    ::alarm(child_bound_s);  // K1: no lock a thread of this child does not have may block it
    bool ok = true;
    auto bad = [&](const char* what) {
      std::fprintf(stderr, "[fork-sweep] fork child: %s\n", what);
      ok = false;
    };
    try {
      if (sc_ == scenario::attached) {
        // K2: B's scope stays open, A's (if A stood inside one) does not.
        if (detail::srb_current_stats().depth != 1) bad("the delay-scope depth is not the forking thread's one scope");
        if (!stable_reference_buffer::is_known(st_.parked)) bad("a block released in the forking thread's scope is gone");
        // K3: counts and bytes are the snapshot's.
        if (st_.kept.use_count() != 1 || !bytes_are(st_.kept.get(), 32, 'k')) bad("B's buffer changed");
      }
      if (!use_the_registry()) bad("the registry operations gave a wrong result");
      stable_reference_buffer late(16);
      const void* late_block = late.get();
      late.reset();
      if (sc_ == scenario::attached) {
        if (!stable_reference_buffer::is_known(late_block)) bad("a block released inside B's scope was freed at once");
        delete st_.scope;  // the child closes the forking thread's scope: every pending block goes
        st_.scope = nullptr;
        if (stable_reference_buffer::is_known(st_.parked) || stable_reference_buffer::is_known(late_block))
          bad("a pending block survives the end of the child's last delay scope (a scope of another thread counts)");
        st_.kept.reset();
      } else if (stable_reference_buffer::is_known(late_block)) {
        bad("a released block is still known with no delay scope of this thread open");
      }
      const detail::srb_stats s = detail::srb_current_stats();
      if (s.depth != 0 || s.pending != 0) bad("delay scopes or pending blocks left in the child");
      stable_reference_buffer sole(8);
      if (sole.safe_get() != nullptr) bad("safe_get() of a sole holder with no scope open is not nullptr");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "[fork-sweep] fork child threw: %s\n", e.what());
      ok = false;
    }
    std::exit(ok ? 0 : 1);  // static destructors: the copy detaches (under L)
  }

  // K4 for B's state, after A and B are joined.
  void finish_b() {
    try {
      if (sc_ == scenario::attached) {
        if (st_.kept.use_count() != 1 || !bytes_are(st_.kept.get(), 32, 'k')) say("FAIL B's buffer changed in the parent");
        if (!stable_reference_buffer::is_known(st_.parked)) say("FAIL B's parked block vanished while its scope is open");
        delete st_.scope;
        st_.scope = nullptr;
        if (stable_reference_buffer::is_known(st_.parked)) say("FAIL B's parked block outlived its scope");
        st_.kept.reset();
      }
      const detail::srb_stats s = detail::srb_current_stats();
      if (s.live != 0 || s.pending != 0 || s.depth != 0)
        say("FAIL the registry is not quiescent after A and B finished: live " + std::to_string(s.live) + ", pending " +
            std::to_string(s.pending) + ", depth " + std::to_string(s.depth));
      if (!anchor_leads_home()) say("FAIL the subject's anchor no longer leads to its registry");
    } catch (const std::exception& e) {
      say(std::string("FAIL the subject threw: ") + e.what());
    }
  }

  static void wait_for(const std::atomic<bool>& flag) {
    while (!flag.load()) ::usleep(50);
  }
  void say(const std::string& line) {
    const std::string l = line + "\n";
    (void)!::write(out_, l.data(), l.size());  // one write per line: lines of two threads never mix
  }

  scenario sc_;
  std::uint64_t n_;
  int out_;
  b_state st_;
  std::atomic<bool> b_ready_{false}, b_forking_{false}, fork_returned_{false}, a_done_{false}, a_ok_{false};
  std::atomic<int> order_{0};
  std::atomic<pid_t> b_tid_{0};
};

class fork_sweeper {
 public:
  registry_fork_figures run() {
    for (std::uint64_t n = 1; n <= max_points; ++n) {
      if (!run_point(scenario::first_attach, n)) break;
      ++f_.first_attach_points;
    }
    for (std::uint64_t n = 1; n <= max_points; ++n) {
      if (!run_point(scenario::attached, n)) break;
      ++f_.attached_points;
    }
    return f_;
  }

 private:
  // One subject armed at n.  True if A stood at its nth point.
  bool run_point(scenario sc, std::uint64_t n) {
    ++f_.runs;
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("fork sweep: pipe failed");
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      subject(sc, n, fds[1]).run();
    }
    ::close(fds[1]);
    const std::string text = read_until_eof(fds[0], subject_bound_s + 5);
    ::close(fds[0]);
    int code = 0;
    const bool killed = kill_if_running(pid);
    const int status = reap(pid);
    std::string where = std::string(name_of(sc)) + ": thread A parked at crash point " + std::to_string(n);
    bool parked = false;
    std::size_t start = 0;
    for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
      const std::string line = text.substr(start, end - start);
      if (line.rfind("parked ", 0) == 0) {
        parked = true;
        where += " (" + line.substr(7) + ")";
      } else if (line == "waited") {
        ++f_.forks_waited;
      } else if (line == "forked") {
        ++f_.forks_while_parked;
      } else if (line.rfind("FAIL ", 0) == 0) {
        fail(where, line.substr(5));
      }
    }
    if (verbose_) std::printf("[fork-sweep] %s: %s\n", where.c_str(), text.empty() ? "(nothing)" : flat(text).c_str());
    if (killed) fail(where, "the subject did not finish within " + std::to_string(subject_bound_s + 5) + " s");
    else if (WIFSIGNALED(status))
      fail(where, std::string("the subject died of ") + strsignal(WTERMSIG(status)) +
                      (WTERMSIG(status) == SIGALRM ? " (it hung: A or B never finished)" : ""));
    else if ((code = WEXITSTATUS(status)) != 0)
      fail(where, "the subject exited with " + std::to_string(code));
    return parked;
  }

  static bool kill_if_running(pid_t pid) {
    if (!process_is_running(pid)) return false;
    // Give it a moment to exit after closing its pipe.
    for (int i = 0; i < 2000 && process_is_running(pid); ++i) ::usleep(1000);
    if (!process_is_running(pid)) return false;
    ::kill(pid, SIGKILL);
    return true;
  }

  static std::string flat(std::string t) {
    for (char& c : t)
      if (c == '\n') c = ';';
    return t;
  }

  void fail(const std::string& where, const std::string& what) {
    ++f_.failures;
    if (f_.failures <= 20) std::printf("[fork-sweep] FAIL %s: %s\n", where.c_str(), what.c_str());
  }

  registry_fork_figures f_;
  bool verbose_ = std::getenv("SHMPOOL_SWEEP_VERBOSE") != nullptr;  // every run's lines
};

}  // namespace

registry_fork_figures run_registry_fork_sweep() { return fork_sweeper().run(); }

}  // namespace stress
