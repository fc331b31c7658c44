// The pool-initialisation half of the crash-point sweep (crash_sweep_init.hpp
// has the checks P1..P5).
#include "crash_sweep_init.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "shmpool/detail/format.hpp"
#include "shmpool/platform/linux.hpp"
#include "shmpool/pool.hpp"
#include "stress_util.hpp"

namespace stress {
namespace {

namespace fs = std::filesystem;
using problems = std::vector<std::string>;

constexpr std::uint64_t max_points = 200;   // a bound, never reached: a run passes < 15 points
constexpr std::uint64_t capacity = 70;      // two groups, the second partial, as the pool sweep
constexpr std::int64_t victim_mark = 1111;  // the value a completed victim writes
constexpr std::int64_t racer_mark = 2222;   // the value the racing opener writes
constexpr int racer_limit_s = 20;           // P2: longer means it hung

// How the victim finds the path.
enum class start { nothing, empty_file, interrupted_init, nothing_refused, empty_file_refused };
bool refused(start how) { return how == start::nothing_refused || how == start::empty_file_refused; }
struct scenario {
  start how;
  const char* name;
};
constexpr scenario scenarios[] = {
    {start::nothing, "create"},
    {start::empty_file, "replace_empty_placeholder"},
    {start::interrupted_init, "replace_interrupted_init"},
    {start::nothing_refused, "create_refused_by_backing"},
    {start::empty_file_refused, "replace_refused_by_backing"},
};

// What an earlier version's creator left when it died before the header.
void write_interrupted_init(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) throw std::runtime_error("init sweep: cannot create " + path.string());
  const bool ok = ::pwrite(fd, &shmpool::detail::pool_init_magic, 8, 0) == 8 && ::ftruncate(fd, 8192) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("init sweep: cannot write " + path.string());
}

void prepare(const fs::path& path, start how) {
  if (how == start::empty_file || how == start::empty_file_refused) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) throw std::runtime_error("init sweep: cannot create " + path.string());
    ::close(fd);
  } else if (how == start::interrupted_init) {
    write_interrupted_init(path);
  }
}

bool holds(const shmpool::i64_pool& p, std::int64_t mark) {
  for (const auto s : p.allocated_slots())
    if (p.get(s) == mark) return true;
  return false;
}

// The victim: armed at n for its open only, opens (or is refused), writes
// its mark.
pid_t start_victim(const fs::path& path, start how, std::uint64_t n) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  bool ok = false;
  try {
    if (refused(how)) {
      const rlimit small{1024, 1024};  // less than the pool's one page
      ::setrlimit(RLIMIT_FSIZE, &small);
    }
    shmpool::platform::arm_crash_point(n);
    try {
      auto p = shmpool::i64_pool::open(path, capacity);
      shmpool::platform::arm_crash_point(0);  // the alloc's own points are the pool sweep's
      // A refused victim may still find a pool the racer made: opening it reserves nothing.
      ok = refused(how) || p.alloc_set(victim_mark).has_value();
    } catch (const shmpool::error& e) {
      ok = refused(how) && e.code() == make_error_code(shmpool::errc::exceeds_backing);
    }
  } catch (...) {
  }
  shmpool::platform::arm_crash_point(0);
  ::_exit(ok ? 0 : 1);
}

// The racing opener: never armed; must end on a pool within its limit.
pid_t start_racer(const fs::path& path) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::alarm(racer_limit_s);
  bool ok = false;
  try {
    auto p = shmpool::i64_pool::open(path, capacity);
    ok = p.alloc_set(racer_mark).has_value();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[sweep] racer: %s\n", e.what());
  }
  ::_exit(ok ? 0 : 1);
}

// P4: every file but the final name must be a complete pool.
problems check_directory(const fs::path& dir, const fs::path& final, std::uint64_t& leftovers) {
  problems out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path() == final) continue;
    const int fd = ::open(e.path().c_str(), O_RDWR | O_CLOEXEC);
    try {
      auto p = shmpool::i64_pool::from_fd(fd);
      ++leftovers;  // complete: the victim died between naming and publishing it
    } catch (const std::exception& ex) {
      out.push_back("an incomplete file is left in the directory: " + e.path().filename().string() + " (" +
                    ex.what() + ")");
    }
    if (fd >= 0) ::close(fd);
    fs::remove(e.path());
  }
  return out;
}

// P3 and P5, from the surviving parent.
problems check_pool(const fs::path& path, bool racer_ran, bool victim_completed, start how) {
  problems out;
  try {
    auto p = shmpool::i64_pool::open(path, capacity);
    for (const auto& problem : p.check()) out.push_back("check(): " + problem);
    if (racer_ran && !holds(p, racer_mark)) out.push_back("the racing opener wrote to another pool than this name's");
    if (victim_completed && !refused(how) && !holds(p, victim_mark))
      out.push_back("the victim completed on another pool than this name's");
    p.recover_stale();
    if (p.used() != 0) out.push_back("after recovery " + std::to_string(p.used()) + " slots are still taken");
    const auto all = p.alloc_n(capacity, std::chrono::milliseconds(0));
    if (!all) out.push_back("the pool cannot be filled after recovery");
    else if (p.free_n(*all) != capacity) out.push_back("the pool cannot be emptied after recovery");
  } catch (const std::exception& e) {
    out.push_back(std::string("open after the victim's death failed: ") + e.what());
  }
  return out;
}

class init_sweeper {
 public:
  init_sweep_figures run() {
    for (const scenario& s : scenarios) {
      std::uint64_t points = 0;
      for (std::uint64_t n = 1; n <= max_points; ++n) {
        const bool died = run_point(s, n, /*racer=*/false);
        run_point(s, n, /*racer=*/true);
        if (!died) break;
        ++points;
      }
      std::printf("[sweep] %-26s %3llu crash points creating or opening a pool\n", s.name,
                  static_cast<unsigned long long>(points));
      f_.points += points;
    }
    return f_;
  }

 private:
  bool run_point(const scenario& s, std::uint64_t n, bool racer) {
    ++f_.runs;
    char tmpl[] = "/dev/shm/shmpool-init-sweep-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("init sweep: mkdtemp failed");
    const fs::path dir = tmpl, path = dir / "pool";
    prepare(path, s.how);
    const pid_t victim = start_victim(path, s.how, n);
    const pid_t racing = racer ? start_racer(path) : 0;
    int code = 0;
    const bool died = died_at_crash_point(victim, code);
    reap(victim);
    const bool placeholder_kept = fs::exists(path) && fs::file_size(path) == 0;
    const std::string where = std::string(s.name) + " killed at crash point " + std::to_string(n) +
                              (racer ? " with a racing opener" : "");
    if (!died && code != 0) fail(where, "the victim completed with a wrong outcome");  // P1
    if (s.how == start::empty_file_refused && !racer && !placeholder_kept)
      fail(where, "a refused creator did not leave the placeholder as it found it (P4)");
    bool racer_ok = false;
    if (racing != 0) {
      const int st = reap(racing);
      racer_ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
      if (!racer_ok)
        fail(where, WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? "the racing opener hung (P2)"
                                                                 : "the racing opener failed (P2)");
    }
    for (const auto& p : check_pool(path, racer_ok, !died && code == 0, s.how)) fail(where, p);
    for (const auto& p : check_directory(dir, path, f_.leftovers)) fail(where, p);
    std::error_code ec;
    fs::remove_all(dir, ec);
    return died;
  }

  void fail(const std::string& where, const std::string& what) {
    ++f_.failures;
    if (f_.failures <= 20) std::printf("[sweep] FAIL %s: %s\n", where.c_str(), what.c_str());
  }

  init_sweep_figures f_;
};

}  // namespace

init_sweep_figures run_init_sweep() { return init_sweeper().run(); }

}  // namespace stress
