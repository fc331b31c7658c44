// The process re-executes itself at each crash point of the pool's
// operations (pool_exec_sweep.hpp has the checks X1..X4).
#include "pool_exec_sweep.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <thread>
#include <vector>

#include "crash_sweep_checks.hpp"
#include "crash_sweep_scenarios.hpp"
#include "shmpool/platform/linux.hpp"
#include "stress_util.hpp"

namespace stress {
namespace {

namespace platform = shmpool::platform;
using platform::crash_site;

constexpr std::uint64_t max_points = 500;  // a bound, never reached: each operation has < 100 points
constexpr int image_bound_s = 10;          // the new image's whole judgement
constexpr int sleepers = 3;                // threads of the old image asleep in alloc()

struct exec_scenario {
  sweep_op op;
  const char* name;
  bool with_sleepers;
};

std::vector<exec_scenario> scenarios() {
  std::vector<exec_scenario> out;
  for (const sweep_op_info& info : sweep_ops) out.push_back({info.op, info.name, false});
  out.push_back({sweep_op::alloc_wait, "alloc_wait+sleepers", true});
  out.push_back({sweep_op::free, "free+sleepers", true});
  return out;
}

// ---- the new image ---------------------------------------------------------------

std::string line_of(const std::string& tag, const std::string& text) {
  std::string l = tag + " " + text;
  for (char& c : l)
    if (c == '\n') c = ' ';
  return l + "\n";
}

std::uint64_t words_naming(const raw_pool_view& v, std::uint64_t id) {
  std::uint64_t n = 0;
  for (std::uint64_t s = 0; s < v.capacity(); ++s) n += v.word(s) != 0 && identity_of_word(v.word(s)) == id;
  return n;
}

std::uint64_t entries_naming(const raw_pool_view& v, std::uint64_t id) {
  std::uint64_t n = 0;
  for (unsigned k = 0; k < shmpool::detail::waiter_slots; ++k) n += v.waiter(k) == id;
  return n;
}

// ---- the sweep --------------------------------------------------------------------

// One problem of check(), sorted for the judgement.
struct problem {
  enum kind { slot_in_flight, slot_other, waiter_own_image, waiter_other, tentative_mark, full_over_free, mark_other, other };
  kind k = other;
  std::uint64_t slot = 0, group = 0;
  long pid = 0;
};

problem classify(const std::string& p) {
  problem out;
  unsigned long long a = 0, b = 0;
  long pid = 0;
  if (std::sscanf(p.c_str(), "slot %llu: claim in flight by pid %ld", &a, &pid) == 2 ||
      std::sscanf(p.c_str(), "slot %llu: release in flight by pid %ld", &a, &pid) == 2) {
    out.k = problem::slot_in_flight;
    out.slot = a;
    out.pid = pid;
  } else if (std::sscanf(p.c_str(), "slot %llu:", &a) == 1) {
    out.k = problem::slot_other;
    out.slot = a;
  } else if (p.rfind("waiter entry ", 0) == 0) {
    out.k = p.find("names this process, but no thread of it waits") != std::string::npos ? problem::waiter_own_image
                                                                                            : problem::waiter_other;
  } else if (std::sscanf(p.c_str(), "group %llu is marked full but slot %llu is free", &a, &b) == 2) {
    out.k = problem::full_over_free;
    out.group = a;
    out.slot = b;
  } else if (std::sscanf(p.c_str(), "group %llu", &a) == 1) {
    out.group = a;
    out.k = p.find("tentative mark") != std::string::npos ? problem::tentative_mark : problem::mark_other;
  }
  return out;
}

// Sites at which the old image stood between a FREE CAS and its group's
// mark check: the mark may still be set over the slot it freed.
bool freeing_site(unsigned site) {
  switch (static_cast<crash_site>(site)) {
    case crash_site::free_done:
    case crash_site::free_n_partial:
    case crash_site::alloc_n_rollback:
    case crash_site::recover_freed:
    case crash_site::reset_freed: return true;
    default: return false;
  }
}

struct image_report {
  bool exec = false;
  unsigned site = 0;
  std::vector<std::string> before, after;
  std::map<std::string, std::uint64_t> num;
  std::vector<std::string> errors;
};

image_report parse_report(const std::string& text) {
  image_report r;
  std::size_t start = 0;
  for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    const std::string line = text.substr(start, end - start);
    const std::size_t sp = line.find(' ');
    const std::string tag = line.substr(0, sp), rest = sp == std::string::npos ? "" : line.substr(sp + 1);
    if (tag == "site") {
      r.exec = true;
      r.site = static_cast<unsigned>(std::strtoul(rest.c_str(), nullptr, 10));
    } else if (tag == "before") {
      r.before.push_back(rest);
    } else if (tag == "after") {
      r.after.push_back(rest);
    } else if (tag == "error") {
      r.errors.push_back(rest);
    } else if (!tag.empty()) {
      r.num[tag] = std::strtoull(rest.c_str(), nullptr, 10);
    }
  }
  return r;
}

class exec_sweeper {
 public:
  pool_exec_figures run(std::map<std::string, std::uint64_t>& per_scenario) {
    for (const exec_scenario& sc : scenarios()) {
      std::uint64_t points = 0;
      for (std::uint64_t n = 1; n <= max_points; ++n) {
        const bool executed = run_point(sc, n, false);
        run_point(sc, n, true);  // the same point, the new image recovering first
        if (!executed) break;
        ++points;
      }
      per_scenario[sc.name] = points;
      f_.points += points;
    }
    return f_;
  }

 private:
  // One run: the child armed at n with exec_self.  True if it re-executed
  // itself.  recover_first: the new image calls recover_stale() before
  // release_owner (the entries of an earlier image go with its recovery, I7).
  bool run_point(const exec_scenario& sc, std::uint64_t n, bool recover_first) {
    ++f_.runs;
    sweep_pool sp(shmpool::i64_pool::memfd("shmpool-exec-sweep", sweep_capacity));
    prepare_sweep_pool(sp, sc.op);
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("exec sweep: pipe failed");
    std::fflush(nullptr);
    const pid_t child = ::fork();
    if (child == 0) {
      ::close(fds[0]);
      old_image(sp, sc, n, recover_first, fds[1]);
    }
    ::close(fds[1]);
    const std::string text = read_until_eof(fds[0], image_bound_s + 5);
    ::close(fds[0]);
    bool hung = false;
    for (int i = 0; i < 5000 && process_is_running(child); ++i) ::usleep(1000);
    if (process_is_running(child)) {
      hung = true;
      ::kill(child, SIGKILL);
    }
    int code = 0;
    const bool killed = died_at_crash_point(child, code);  // waits; leaves a zombie
    const std::uint64_t id = identity_of_process(child);    // a zombie still has one
    const image_report r = parse_report(text);
    std::string where = std::string(sc.name) + " re-executed at crash point " + std::to_string(n);
    if (recover_first) where += ", the new image recovering first";
    if (r.exec) where += " (site " + std::to_string(r.site) + ")";
    if (verbose_) {
      std::string flat = text;
      for (char& c : flat)
        if (c == '\n') c = ';';
      std::printf("[exec-sweep] %s: %s\n", where.c_str(), flat.empty() ? "(completed)" : flat.c_str());
    }
    if (hung) fail(where, "the process (old or new image) did not finish within " + std::to_string(image_bound_s + 5) + " s");
    else if (killed) fail(where, "the process was killed (the exec failed, or a bound ran out)");
    else if (code == 3) fail(where, "the sleepers did not register in alloc() before the point was armed");
    else if (code != 0) fail(where, r.exec ? "the new image failed" : "the operation completed with a wrong result");
    for (const std::string& e : r.errors) fail(where, "new image: " + e);
    if (r.exec) judge_new_image(sc, sp, r, child, where);
    // X4, and then the kill sweep's checks.
    if (r.exec) {
      for (std::uint64_t s = 0; s < sp.view.capacity(); ++s)
        if (sp.view.word(s) != 0 && identity_of_word(sp.view.word(s)) == id)
          fail(where, slot_text(s, sp.view.word(s)) + " names the re-executed process after its release_owner (X4)");
      if (entries_naming(sp.view, id) != 0) fail(where, "a waiter entry names the re-executed process after its release_owner (X4)");
      if (sp.pool.stats().waiters != 0)
        fail(where, "another process reads stats().waiters = " + std::to_string(sp.pool.stats().waiters) +
                        " with nobody waiting (X4)");
    }
    sp.pool.recover_stale();  // while the process is a zombie: certainly dead
    report(where, check_nothing_names(sp, id));
    reap(child);
    sp.pool.recover_stale();
    report(where, check_whole_after_recovery(sp, sc.op == sweep_op::reset));
    return r.exec;
  }

  // X1-X3, from the new image's report.
  void judge_new_image(const exec_scenario& sc, const sweep_pool& sp, const image_report& r, pid_t pid,
                       const std::string& where) {
    const bool stale_mark_planted = sc.op == sweep_op::recover_stale || sc.op == sweep_op::reset;
    // A scan in flight: the old image stood between its tentative mark and
    // its confirm, or a sleeper of it did.
    const bool scan_in_flight = r.site == static_cast<unsigned>(crash_site::group_marked) || sc.with_sleepers;
    const bool freeing = freeing_site(r.site) || sc.with_sleepers;
    auto explained = [&](const problem& p, bool after_release) {
      switch (p.k) {
        case problem::slot_in_flight:
          return sp.planted.count(p.slot) != 0 || (!after_release && p.pid == pid);
        case problem::waiter_own_image: return !after_release;
        case problem::tentative_mark: return scan_in_flight;
        case problem::full_over_free: return freeing || (stale_mark_planted && p.group == 0);
        default: return false;
      }
    };
    for (const std::string& p : r.before) {
      if (explained(classify(p), false)) ++f_.problems_explained;
      else fail(where, "new image's check() before release_owner reports what the old image cannot explain (X1): " + p);
    }
    for (const std::string& p : r.after)
      if (!explained(classify(p), true)) fail(where, "new image's check() after release_owner (X3): " + p);
    const auto num = [&](const char* k) {
      const auto it = r.num.find(k);
      return it == r.num.end() ? ~std::uint64_t{0} : it->second;
    };
    if (num("entries_before") != ~std::uint64_t{0} && num("entries_before") != 0) ++f_.runs_with_waiters;
    if (sc.with_sleepers && sc.op == sweep_op::alloc_wait && num("entries_before") < static_cast<std::uint64_t>(sleepers))
      fail(where, "the old image's " + std::to_string(sleepers) + " sleepers left " + std::to_string(num("entries_before")) +
                      " waiter entries (they were registered when it re-executed)");
    if (r.num.count("entries_after_recover") != 0 && num("entries_after_recover") != 0)
      fail(where, std::to_string(num("entries_after_recover")) + " of " + std::to_string(num("entries_before")) +
                      " waiter entries of the old image survive the new image's recover_stale() (I7, item 4)");
    if (r.num.count("mine_after_recover") != 0 && num("mine_after_recover") != num("mine_before"))
      fail(where, "the new image's recover_stale() freed slots of its own (live) identity");
    if (num("released") != num("mine_before"))
      fail(where, "release_owner(getpid()) freed " + std::to_string(num("released")) + " slots, but " +
                      std::to_string(num("mine_before")) + " words named the process (X2)");
    f_.slots_released += num("released") == ~std::uint64_t{0} ? 0 : num("released");
    if (num("mine_after") != 0)
      fail(where, std::to_string(num("mine_after")) + " slot words still name the process after release_owner (X2)");
    if (num("entries_after") != 0)
      fail(where, std::to_string(num("entries_after")) + " of " + std::to_string(num("entries_before")) +
                      " waiter entries of the old image survive release_owner (X2, item 4)");
    if (num("waiters_after") != 0)
      fail(where, "stats().waiters reads " + std::to_string(num("waiters_after")) +
                      " after release_owner, with no thread waiting (X2, item 4)");
  }

  // The child: the old image.  Runs the operation armed at n; execs there.
  [[noreturn]] static void old_image(sweep_pool& sp, const exec_scenario& sc, std::uint64_t n, bool recover_first,
                                     int out) {
    bool ok = false;
    try {
      child_setup c = setup_in_child(sp, sc.op);
      if (sc.with_sleepers) {
        c.others_free = true;  // its own sleepers take slots: a wait or a free may end otherwise
        for (int k = 0; k < sleepers; ++k)
          std::thread([&sp] { (void)sp.pool.alloc(std::chrono::seconds(30)); }).detach();
        for (int i = 0; i < 2000 && sp.view.waiters() < static_cast<std::uint32_t>(sleepers); ++i) ::usleep(1000);
        if (sp.view.waiters() < static_cast<std::uint32_t>(sleepers)) ::_exit(3);
      }
      const int fd = ::dup(sp.pool.memfd());  // without FD_CLOEXEC: the new image attaches it
      static std::vector<std::string> args;
      args = {"pool_crash_sweep", "--exec-image", std::to_string(fd), std::to_string(out),
              recover_first ? "recover" : "release"};
      static std::vector<char*> argv;
      argv.clear();
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      platform::set_crash_exec_argv(argv.data());
      platform::arm_crash_point(n, platform::crash_action::exec_self);
      ok = run_in_child(sp, sc.op, c);
      // free+sleepers: the free wakes the sleepers, and one of them takes
      // the slot; its points belong to the run (armed until it has it).
      if (ok && sc.with_sleepers && sc.op == sweep_op::free)
        for (int i = 0; i < 2000 && !(sp.view.word(c.mine[0]) == allocated_word(my_identity()) &&
                                      sp.view.waiters() == static_cast<std::uint32_t>(sleepers - 1));
             ++i)
          ::usleep(1000);
    } catch (...) {
    }
    platform::arm_crash_point(0);
    ::_exit(ok ? 0 : 1);
  }

  void report(const std::string& where, const std::vector<std::string>& ps) {
    for (const auto& p : ps) fail(where, p);
  }
  void fail(const std::string& where, const std::string& what) {
    ++f_.failures;
    if (f_.failures <= 20) std::printf("[exec-sweep] FAIL %s: %s\n", where.c_str(), what.c_str());
  }

  pool_exec_figures f_;
  bool verbose_ = std::getenv("SHMPOOL_SWEEP_VERBOSE") != nullptr;  // every new image's report
};

}  // namespace

void pool_exec_image(int pool_fd, int out, bool recover_first) {
  ::alarm(image_bound_s);
  std::string r;
  const char* site = std::getenv("SHMPOOL_CRASH_EXEC_SITE");
  r += line_of("site", site != nullptr ? site : "0");
  try {
    shmpool::i64_pool pool = shmpool::i64_pool::from_fd(pool_fd);
    ::close(pool_fd);
    const raw_pool_view view(pool);
    const std::uint64_t me = my_identity();
    for (const std::string& p : pool.check()) r += line_of("before", p);
    r += line_of("entries_before", std::to_string(entries_naming(view, me)));
    r += line_of("mine_before", std::to_string(words_naming(view, me)));
    if (recover_first) {
      (void)pool.recover_stale();  // frees nothing of this (live) identity; takes an earlier image's entries
      r += line_of("entries_after_recover", std::to_string(entries_naming(view, me)));
      r += line_of("mine_after_recover", std::to_string(words_naming(view, me)));
    }
    r += line_of("released", std::to_string(pool.release_owner(::getpid())));
    r += line_of("mine_after", std::to_string(words_naming(view, me)));
    r += line_of("entries_after", std::to_string(entries_naming(view, me)));
    r += line_of("waiters_after", std::to_string(pool.stats().waiters));
    for (const std::string& p : pool.check()) r += line_of("after", p);
  } catch (const std::exception& e) {
    r += line_of("error", e.what());
  }
  const bool written = ::write(out, r.data(), r.size()) == static_cast<ssize_t>(r.size());
  ::close(out);
  ::_exit(written ? 0 : 1);
}

pool_exec_figures run_pool_exec_sweep(const std::string& json) {
  std::map<std::string, std::uint64_t> per;
  const pool_exec_figures f = exec_sweeper().run(per);
  for (const auto& [name, points] : per)
    std::printf("[exec-sweep] %-22s %3llu crash points re-executed\n", name.c_str(), static_cast<unsigned long long>(points));
  if (!json.empty()) {
    json_object ops;
    for (const auto& [name, points] : per) ops.num(name, points);
    write_text_file(json, json_object()
                              .str("runner", "pool_crash_sweep --exec-at-pool-points")
                              .num("points", f.points)
                              .num("runs", f.runs)
                              .num("runs_with_waiters", f.runs_with_waiters)
                              .num("slots_released", f.slots_released)
                              .num("problems_explained", f.problems_explained)
                              .num("failures", f.failures)
                              .str("result", f.failures == 0 ? "pass" : "fail")
                              .raw("operations", ops.text())
                              .text());
  }
  return f;
}

}  // namespace stress
