// The registry half of the crash-point sweep (registry_sweep.hpp has the
// checks S1..S4).
#include "registry_sweep.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/platform/linux.hpp"
#include "shmpool/stable_reference_buffer.hpp"
#include "stress_util.hpp"

namespace stress {
namespace {

namespace fs = std::filesystem;
namespace detail = shmpool::detail;
using shmpool::stable_reference_buffer;
using problems = std::vector<std::string>;

constexpr std::uint64_t max_points = 500;  // a bound, never reached: a run passes < 20 points
const fs::path shm_dir = "/dev/shm";

// ---- what a process left in /dev/shm ------------------------------------------

// S1: files carrying the victim's identity, as format 1 named its root
// segment and temporaries ("shmpool-srb-<16 hex>..."): there must be none.
std::vector<std::string> files_naming(std::uint64_t identity) {
  char prefix[64];
  std::snprintf(prefix, sizeof prefix, "shmpool-srb-%016llx", static_cast<unsigned long long>(identity));
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(shm_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with(prefix)) out.push_back(name);
  }
  return out;
}

problems check_left_by_victim(std::uint64_t victim) {
  problems out;
  for (const auto& name : files_naming(victim)) out.push_back("the process left /dev/shm/" + name);
  return out;
}

}  // namespace

// S3: this process's anchor still leads to its own registry.
bool anchor_leads_home() {
  try {
    return detail::srb_find_registry_as_new_copy() == &detail::srb_current();
  } catch (const shmpool::registry_error&) {
    return false;
  }
}

namespace {

// ---- what a victim does -----------------------------------------------------------

bool bytes_are(const void* p, std::size_t n, char c) {
  const auto* b = static_cast<const char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != c) return false;
  return true;
}

}  // namespace

// Every registry path with a crash site: the anchor's publication (first
// use), insert, last release outside and inside a delay scope, re-adoption
// of a parked block, exclusive append.  True if every result was right and
// this process's anchor still leads to its registry.
bool use_the_registry() {
  bool ok = true;
  stable_reference_buffer a(64);
  std::memset(a.get(), 'v', 64);
  stable_reference_buffer b = a;
  stable_reference_buffer revived;
  {
    stable_reference_buffer::delay_deallocation scope;
    stable_reference_buffer c(32);
    std::memset(c.get(), 'c', 32);
    const void* kept = c.get();
    c.reset();                               // last reference inside a scope: parked
    ok &= bytes_are(kept, 32, 'c');          // still readable until the scope ends
    stable_reference_buffer d(16);
    std::memset(d.get(), 'd', 16);
    const void* again = d.get();
    d.reset();
    revived = stable_reference_buffer(again);  // parked, then adopted again: lives on
    a.reset();
    ok &= b.use_count() == 1;
  }
  ok &= revived.use_count() == 1 && bytes_are(revived.get(), 16, 'd');
  revived.reset();
  b.append("tail", 4);
  ok &= b.size() == 68 && bytes_are(b.get(), 64, 'v');
  b.reset();
  ok &= anchor_leads_home();
  return ok;
}

namespace {

[[noreturn]] void exit_normally(bool ok) {
  std::exit(ok ? 0 : 1);  // runs the static destructors: the copy detaches
}

// ---- the bystander (S4) ---------------------------------------------------------

// A live process with its own registry: two references to one block, one
// sole reference, and a block parked in an open delay scope.  Each request
// on the pipe makes it check all of them; end of input makes it exit
// normally, which must remove its segment.
class bystander {
 public:
  bystander() {
    int req[2], rep[2];
    if (::pipe(req) != 0 || ::pipe(rep) != 0) throw std::runtime_error("registry sweep: pipe failed");
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(req[1]);
      ::close(rep[0]);
      serve(req[0], rep[1]);
    }
    ::close(req[0]);
    ::close(rep[1]);
    request_ = req[1];
    reply_ = rep[0];
    char ready = 0;
    if (::read(reply_, &ready, 1) != 1 || ready != 'r') throw std::runtime_error("registry sweep: bystander failed");
    identity_ = identity_of_process(pid_);
  }
  bystander(const bystander&) = delete;
  bystander& operator=(const bystander&) = delete;

  problems check() const {
    problems out;
    char verdict = 0;
    if (::write(request_, "c", 1) != 1 || ::read(reply_, &verdict, 1) != 1 || verdict != 'y')
      out.push_back("the live bystander's counts, bytes, delay scope or anchor changed");
    return out;
  }

  problems finish() {
    ::close(request_);
    ::close(reply_);
    problems out;
    int code = 0;
    if (died_at_crash_point(pid_, code) || code != 0) out.push_back("the bystander did not exit cleanly");
    reap(pid_);
    for (auto& p : check_left_by_victim(identity_)) out.push_back("bystander: " + p);
    return out;
  }

 private:
  [[noreturn]] static void serve(int request, int reply) {
    stable_reference_buffer shared(48), copy;
    std::memset(shared.get(), 's', 48);
    copy = shared;
    stable_reference_buffer sole(16);
    std::memset(sole.get(), 'k', 16);
    auto* scope = new stable_reference_buffer::delay_deallocation;
    stable_reference_buffer parked(24);
    std::memset(parked.get(), 'p', 24);
    const void* kept = parked.get();
    parked.reset();
    bool ok = ::write(reply, "r", 1) == 1;
    char c = 0;
    while (ok && ::read(request, &c, 1) == 1) {
      const bool intact = shared.use_count() == 2 && sole.use_count() == 1 && bytes_are(copy.get(), 48, 's') &&
                          bytes_are(sole.get(), 16, 'k') && bytes_are(kept, 24, 'p') &&
                          stable_reference_buffer::is_known(shared.get()) &&
                          anchor_leads_home();
      ok = ::write(reply, intact ? "y" : "n", 1) == 1;
    }
    delete scope;
    shared.reset();
    copy.reset();
    sole.reset();
    exit_normally(ok);
  }

  pid_t pid_ = 0;
  int request_ = -1, reply_ = -1;
  std::uint64_t identity_ = 0;
};

// ---- the sweep ------------------------------------------------------------------

class registry_sweeper {
 public:
  registry_sweep_figures run() {
    bystander by;
    bystander_ = &by;
    for (std::uint64_t n = 1; n <= max_points; ++n) {
      if (!run_attach(n)) break;
      ++f_.attach_points;
    }
    for (std::uint64_t n = 1; n <= max_points; ++n) {
      if (!run_fork(n)) break;
      ++f_.fork_points;
    }
    for (std::uint64_t n = 1; n <= max_points; ++n) {
      if (!run_exec(n)) break;
      ++f_.exec_points;
    }
    report("bystander exit", by.finish());
    bystander_ = nullptr;
    return f_;
  }

 private:
  // A fresh process armed at n creates its registry (publishes its anchor)
  // and uses it.  True if it died at the crash point.
  bool run_attach(std::uint64_t n) {
    ++f_.runs;
    const std::string where = describe("registry attach", n);
    std::fflush(nullptr);
    const pid_t victim = ::fork();
    if (victim == 0) {
      shmpool::platform::arm_crash_point(n);
      exit_normally(use_the_registry());
    }
    return judge_victim(where, victim);
  }

  // S1, S2 and S4 for a victim that died at its crash point or ran to its
  // end; reaps it.  True if it died at the crash point.
  bool judge_victim(const std::string& where, pid_t victim) {
    int code = 0;
    const bool died = died_at_crash_point(victim, code);
    const std::uint64_t id = identity_of_process(victim);  // a zombie still has one
    if (!died && code == exec_failed) fail(where, "exec of /proc/self/exe failed");
    else if (!died && code != 0) fail(where, "the process completed with a wrong result");  // S2
    report(where, check_left_by_victim(id));
    report(where, bystander_->check());
    reap(victim);
    return died;
  }
  static constexpr int exec_failed = 3;  // exit status of a victim whose exec failed

  // A process with a registry forks a child armed at n, which uses the
  // registry it inherited.  The parent checks its own state (S3).
  bool run_fork(std::uint64_t n) {
    ++f_.runs;
    const std::string where = describe("registry fork child", n);
    std::fflush(nullptr);
    int verdict[2];
    if (::pipe(verdict) != 0) throw std::runtime_error("registry sweep: pipe failed");
    const pid_t parent = ::fork();
    if (parent == 0) {
      ::close(verdict[0]);
      fork_parent(n, verdict[1]);
    }
    ::close(verdict[1]);
    // The parent writes its problems, one per line, then a last line "died" or "done".
    std::string text;
    char buf[512];
    for (ssize_t got; (got = ::read(verdict[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(got));
    ::close(verdict[0]);
    int code = 0;
    const bool parent_died = died_at_crash_point(parent, code);
    const std::uint64_t parent_id = identity_of_process(parent);
    reap(parent);
    bool child_died = false;
    std::size_t start = 0;
    for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
      const std::string line = text.substr(start, end - start);
      if (line == "died") child_died = true;
      else if (line != "done") fail(where, line);
    }
    if (parent_died || code != 0) fail(where, "the forking parent did not exit cleanly");
    report(where, check_left_by_victim(parent_id));
    report(where, bystander_->check());
    return child_died;
  }

  // A process whose registry holds blocks (one parked in an open delay
  // scope) re-executes itself; the new image, armed at n, makes its own
  // registry and uses it.  The old image's registry and anchor vanish with
  // its address space, and its destructors never run: nothing of it may be
  // trusted or left behind (same pid, same start time: the same identity).
  bool run_exec(std::uint64_t n) {
    ++f_.runs;
    const std::string where = describe("registry after exec", n);
    std::fflush(nullptr);
    const pid_t victim = ::fork();
    if (victim == 0) {
      stable_reference_buffer held(40);
      std::memset(held.get(), 'x', 40);
      stable_reference_buffer copy = held;
      auto* scope = new stable_reference_buffer::delay_deallocation;  // never closed: exec ends the image
      stable_reference_buffer parked(8);
      parked.reset();
      (void)scope;
      const std::string nth = std::to_string(n);
      ::execl("/proc/self/exe", "pool_crash_sweep", "--registry-exec-stage", nth.c_str(), static_cast<char*>(nullptr));
      std::_Exit(exec_failed);
    }
    return judge_victim(where, victim);
  }

  [[noreturn]] static void fork_parent(std::uint64_t n, int verdict) {
    problems out;
    stable_reference_buffer mine(16), shared(16);
    std::memset(mine.get(), 'm', 16);
    std::memset(shared.get(), 'h', 16);
    stable_reference_buffer shared_copy = shared;
    std::fflush(nullptr);
    shmpool::platform::arm_crash_point(n);  // the child inherits the armed count
    const pid_t child = ::fork();
    if (child == 0) {
      bool ok = use_the_registry();
      stable_reference_buffer again = shared;  // an inherited block: counts are the snapshot's
      ok &= shared.use_count() == 3 && mine.use_count() == 1 && bytes_are(mine.get(), 16, 'm');
      again.reset();
      shared.reset();
      shared_copy.reset();
      exit_normally(ok);
    }
    shmpool::platform::arm_crash_point(0);
    int code = 0;
    const bool died = died_at_crash_point(child, code);
    const std::uint64_t id = identity_of_process(child);
    if (!died && code != 0) out.push_back("the fork child completed with a wrong result");
    for (auto& p : check_left_by_victim(id)) out.push_back(std::move(p));
    reap(child);
    // S3: nothing the child did reaches the parent.
    if (mine.use_count() != 1 || shared.use_count() != 2 || !bytes_are(mine.get(), 16, 'm') ||
        !bytes_are(shared.get(), 16, 'h'))
      out.push_back("the forking parent's counts or bytes changed");
    if (!anchor_leads_home()) out.push_back("the forking parent's anchor no longer leads to its registry");
    std::string text;
    for (const auto& p : out) text += p + "\n";
    text += died ? "died\n" : "done\n";
    const bool written = ::write(verdict, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(verdict);
    mine.reset();
    shared.reset();
    shared_copy.reset();
    exit_normally(written);
  }

  static std::string describe(const char* what, std::uint64_t n) {
    return std::string(what) + " killed at crash point " + std::to_string(n);
  }
  void report(const std::string& where, const problems& ps) {
    for (const auto& p : ps) fail(where, p);
  }
  void fail(const std::string& where, const std::string& what) {
    ++f_.failures;
    if (f_.failures <= 20) std::printf("[sweep] FAIL %s: %s\n", where.c_str(), what.c_str());
  }

  registry_sweep_figures f_;
  bystander* bystander_ = nullptr;
};

}  // namespace

registry_sweep_figures run_registry_sweep() { return registry_sweeper().run(); }

void registry_exec_stage(std::uint64_t n) {
  shmpool::platform::arm_crash_point(n);
  exit_normally(use_the_registry());
}

}  // namespace stress
