// The registry half of the crash-point sweep (registry_sweep.hpp has the
// checks S1..S5).
#include "registry_sweep.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
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

struct named_files {
  bool root = false;
  int temporaries = 0;
  std::vector<std::string> others;  // anything else carrying the identity's name
};

named_files files_naming(std::uint64_t identity) {
  named_files f;
  const std::string root = detail::srb_root_name(identity);
  const std::string temporary = root + ".tmp.";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(shm_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name == root) f.root = true;
    else if (name.starts_with(temporary)) ++f.temporaries;
    else if (name.starts_with(root)) f.others.push_back(name);
  }
  return f;
}

bool names_nothing(const named_files& f) { return !f.root && f.temporaries == 0 && f.others.empty(); }

std::optional<std::string> file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// S1: a root segment is exactly one record, naming its owner, whose check
// word matches the other fields (what srb_make_root_record writes).
std::optional<std::string> root_record_problem(std::uint64_t identity) {
  const auto bytes = file_bytes(detail::srb_root_path(identity));
  if (!bytes) return std::nullopt;  // removed meanwhile (a concurrent sweeper)
  if (bytes->size() != sizeof(detail::srb_root_record))
    return "root segment of a dead process holds " + std::to_string(bytes->size()) + " bytes, not one record";
  detail::srb_root_record rec{};
  std::memcpy(&rec, bytes->data(), sizeof rec);
  const detail::srb_root_record expected =
      detail::srb_make_root_record(identity, reinterpret_cast<const void*>(rec.registry), rec.nonce);
  if (std::memcmp(&rec, &expected, sizeof rec) != 0)
    return "root segment of a dead process is not a complete record (magic, owner or check wrong)";
  return std::nullopt;
}

// S1 (died) and S2 (ran to the end).
problems check_left_by_victim(std::uint64_t victim, bool died) {
  problems out;
  const named_files f = files_naming(victim);
  for (const auto& name : f.others) out.push_back("unexpected file /dev/shm/" + name);
  if (!died) {
    if (f.root) out.push_back("a process that exited normally left its root segment");
    if (f.temporaries > 0) out.push_back("a process that exited normally left a temporary");
    return out;
  }
  if (f.temporaries > 1) out.push_back("a dead process left " + std::to_string(f.temporaries) + " temporaries");
  if (f.root)
    if (auto p = root_record_problem(victim)) out.push_back(*p);
  return out;
}

// S3: one sweep while the victim is a zombie removes everything naming it.
problems check_swept(std::uint64_t victim, std::uint64_t planted) {
  problems out;
  detail::srb_sweep_dead_registries();
  if (!names_nothing(files_naming(victim))) out.push_back("the sweep left files of the dead process");
  if (planted != 0 && !names_nothing(files_naming(planted)))
    out.push_back("the sweep left the segment of an earlier dead process");
  return out;
}

// ---- what a victim does -----------------------------------------------------------

bool bytes_are(const void* p, std::size_t n, char c) {
  const auto* b = static_cast<const char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != c) return false;
  return true;
}

// Every registry path with a crash site: insert, last release outside and
// inside a delay scope, exclusive append, and (at exit) the last copy's
// detach.  True if every result was right and this process's own segment
// still leads to its registry.
bool use_the_registry() {
  bool ok = true;
  stable_reference_buffer a(64);
  std::memset(a.get(), 'v', 64);
  stable_reference_buffer b = a;
  {
    stable_reference_buffer::delay_deallocation scope;
    stable_reference_buffer c(32);
    std::memset(c.get(), 'c', 32);
    const void* kept = c.get();
    c.reset();                               // last reference inside a scope: parked
    ok &= bytes_are(kept, 32, 'c');          // still readable until the scope ends
    a.reset();
    ok &= b.use_count() == 1;
  }
  b.append("tail", 4);
  ok &= b.size() == 68 && bytes_are(b.get(), 64, 'v');
  b.reset();
  ok &= detail::srb_open_root(my_identity()) == &detail::srb_current();
  return ok;
}

[[noreturn]] void exit_normally(bool ok) {
  std::exit(ok ? 0 : 1);  // runs the static destructors: the last copy detaches (crash site 66)
}

// A process that created its registry and was SIGKILLed: its segment stays.
std::uint64_t plant_dead_segment() {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    stable_reference_buffer held(8);
    ::kill(::getpid(), SIGKILL);
    ::_exit(1);
  }
  wait_until_zombie(pid);
  const std::uint64_t id = identity_of_process(pid);
  reap(pid);
  return id;
}

pid_t start_looping_sweeper() {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0)
    for (;;) detail::srb_sweep_dead_registries();
  return pid;
}

void stop(pid_t pid) {
  ::kill(pid, SIGKILL);
  reap(pid);
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
    segment_ = file_bytes(detail::srb_root_path(identity_)).value_or("");
  }
  bystander(const bystander&) = delete;
  bystander& operator=(const bystander&) = delete;

  problems check() const {
    problems out;
    char verdict = 0;
    if (::write(request_, "c", 1) != 1 || ::read(reply_, &verdict, 1) != 1 || verdict != 'y')
      out.push_back("the live bystander's counts, bytes or delay scope changed");
    if (file_bytes(detail::srb_root_path(identity_)).value_or("gone") != segment_)
      out.push_back("the live bystander's root segment was removed or changed");
    return out;
  }

  problems finish() {
    ::close(request_);
    ::close(reply_);
    problems out;
    int code = 0;
    if (died_at_crash_point(pid_, code) || code != 0) out.push_back("the bystander did not exit cleanly");
    reap(pid_);
    if (!names_nothing(files_naming(identity_))) out.push_back("the bystander's normal exit left its files");
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
                          detail::srb_open_root(my_identity()) == &detail::srb_current();
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
  std::string segment_;
};

// ---- the sweep ------------------------------------------------------------------

class registry_sweeper {
 public:
  registry_sweep_figures run() {
    bystander by;
    bystander_ = &by;
    for (std::uint64_t n = 1; n <= max_points; ++n) {
      const bool died = run_attach(n, false);
      run_attach(n, true);
      if (!died) break;
      ++f_.attach_points;
    }
    for (std::uint64_t n = 1; n <= max_points; ++n) {
      const bool died = run_fork(n, false);
      run_fork(n, true);
      if (!died) break;
      ++f_.fork_points;
    }
    report("bystander exit", by.finish());
    bystander_ = nullptr;
    return f_;
  }

 private:
  // A fresh process armed at n creates its registry and uses it.
  bool run_attach(std::uint64_t n, bool concurrent) {
    ++f_.runs;
    const std::string where = describe("registry attach", n, concurrent);
    const std::uint64_t planted = plant_dead_segment();
    const pid_t sweeper = concurrent ? start_looping_sweeper() : 0;
    std::fflush(nullptr);
    const pid_t victim = ::fork();
    if (victim == 0) {
      shmpool::platform::arm_crash_point(n);
      exit_normally(use_the_registry());
    }
    int code = 0;
    const bool died = died_at_crash_point(victim, code);
    const std::uint64_t id = identity_of_process(victim);  // a zombie still has one
    if (sweeper != 0) stop(sweeper);
    if (!died && code != 0) fail(where, "the process completed with a wrong result");
    report(where, check_left_by_victim(id, died));
    report(where, check_swept(id, planted));
    report(where, bystander_->check());
    reap(victim);
    return died;
  }

  // A process with a registry forks a child armed at n (its fork handler
  // publishes the child's segment), which uses the registry it inherited.
  // The parent checks the child's leftovers and its own state (S5).
  bool run_fork(std::uint64_t n, bool concurrent) {
    ++f_.runs;
    const std::string where = describe("registry fork child", n, concurrent);
    const pid_t sweeper = concurrent ? start_looping_sweeper() : 0;
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
    if (sweeper != 0) stop(sweeper);
    bool child_died = false;
    std::size_t start = 0;
    for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
      const std::string line = text.substr(start, end - start);
      if (line == "died") child_died = true;
      else if (line != "done") fail(where, line);
    }
    if (parent_died || code != 0) fail(where, "the forking parent did not exit cleanly");
    report(where, check_left_by_victim(parent_id, false));
    report(where, bystander_->check());
    return child_died;
  }

  [[noreturn]] static void fork_parent(std::uint64_t n, int verdict) {
    problems out;
    stable_reference_buffer mine(16), shared(16);
    std::memset(mine.get(), 'm', 16);
    std::memset(shared.get(), 'h', 16);
    stable_reference_buffer shared_copy = shared;
    const auto own_segment = file_bytes(detail::srb_root_path(my_identity()));
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
    for (auto& p : check_left_by_victim(id, died)) out.push_back(std::move(p));
    for (auto& p : check_swept(id, 0)) out.push_back(std::move(p));
    reap(child);
    // S5: nothing the child did or left reaches the parent.
    if (mine.use_count() != 1 || shared.use_count() != 2 || !bytes_are(mine.get(), 16, 'm') ||
        !bytes_are(shared.get(), 16, 'h'))
      out.push_back("the forking parent's counts or bytes changed");
    if (file_bytes(detail::srb_root_path(my_identity())) != own_segment)
      out.push_back("the forking parent's root segment changed");
    if (detail::srb_open_root(my_identity()) != &detail::srb_current())
      out.push_back("the forking parent's segment no longer leads to its registry");
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

  static std::string describe(const char* what, std::uint64_t n, bool concurrent) {
    std::string s = std::string(what) + " killed at crash point " + std::to_string(n);
    if (concurrent) s += " with a concurrent sweep loop";
    return s;
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

}  // namespace stress
