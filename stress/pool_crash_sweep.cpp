// pool_crash_sweep: the deterministic crash-point sweep (SQLite style).
// For each operation, a child arms crash point N and runs it on a pool in a
// known state; if it died, the parent checks the state it left, recovers,
// and checks the pool is whole; N advances until the operation completes.
// Then every point again with a concurrent recoverer, and with the
// recovery itself killed at each of its own points.  Built against a copy
// of the core compiled with SHMPOOL_CRASH_POINTS.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "crash_sweep_checks.hpp"
#include "crash_sweep_init.hpp"
#include "crash_sweep_wakeup.hpp"
#include "crash_sweep_scenarios.hpp"
#include "crash_sweep_suspend.hpp"
#include "pool_exec_sweep.hpp"
#include "registry_fork_sweep.hpp"
#include "registry_sweep.hpp"
#include "shmpool/platform/linux.hpp"

#if !defined(SHMPOOL_CRASH_POINTS)
#error "pool_crash_sweep needs the core built with SHMPOOL_CRASH_POINTS"
#endif

namespace stress {
namespace {

constexpr std::uint64_t max_points = 2000;  // a bound, never reached: each op has < 100 points

struct op_figures {
  std::uint64_t points = 0, concurrent_runs = 0, recovery_kills = 0;
};

// Runs `fn` in a child; the child exits 0 when fn returns true.
template <class F>
pid_t fork_child(F&& fn) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    bool ok = false;
    try {
      ok = fn();
    } catch (...) {
    }
    shmpool::platform::arm_crash_point(0);
    ::_exit(ok ? 0 : 1);
  }
  return pid;
}

pid_t start_looping_recoverer(sweep_pool& sp) {
  return fork_child([&] {
    for (;;) sp.pool.recover_stale();
    return true;
  });
}

class sweeper {
 public:
  explicit sweeper(bool verbose) : verbose_(verbose) {}

  op_figures sweep(const sweep_op_info& info) {
    op_figures f;
    for (std::uint64_t n = 1; n <= max_points; ++n) {
      const bool died = run_point(info, n, /*concurrent=*/false, 0);
      run_point(info, n, /*concurrent=*/true, 0);
      ++f.concurrent_runs;
      if (!died) break;
      ++f.points;
      f.recovery_kills += sweep_recovery_kills(info, n);
    }
    return f;
  }

  std::uint64_t failures() const { return failures_; }

 private:
  // One run: op child armed at n (and a looping recoverer if concurrent,
  // or a recoverer armed at m > 0 once the op child died).  True if the
  // op child died.
  bool run_point(const sweep_op_info& info, std::uint64_t n, bool concurrent, std::uint64_t m) {
    sweep_pool sp;
    prepare_sweep_pool(sp, info.op);
    const pid_t recoverer = concurrent ? start_looping_recoverer(sp) : 0;
    const pid_t child = fork_child([&] {
      child_setup c = setup_in_child(sp, info.op);
      c.recovery_races = concurrent;
      shmpool::platform::arm_crash_point(n);
      return run_in_child(sp, info.op, c);
    });
    int code = 0;
    const bool died = died_at_crash_point(child, code);
    const std::uint64_t child_id = identity_of_process(child);  // a zombie still has one
    std::vector<std::uint64_t> dead{child_id};
    if (recoverer != 0) dead.push_back(kill_and_reap(recoverer));
    const std::string where = describe(info, n, concurrent, m);
    if (!died && code != 0) fail(where, "the operation completed with a wrong result");
    if (died && m > 0) dead.push_back(kill_recovery_at(sp, m));
    report(where, check_left_by_dead(sp, dead));
    sp.pool.recover_stale();  // while the op child is a zombie: certainly dead
    report(where, check_nothing_names(sp, child_id));
    reap(child);
    sp.pool.recover_stale();
    report(where, check_whole_after_recovery(sp, info.op == sweep_op::reset));
    return died;
  }

  // Recovery killed at its own point m; returns the recoverer's identity.
  std::uint64_t kill_recovery_at(sweep_pool& sp, std::uint64_t m) {
    const pid_t r = fork_child([&] {
      shmpool::platform::arm_crash_point(m);
      sp.pool.recover_stale();
      return true;
    });
    int code = 0;
    last_recovery_died_ = died_at_crash_point(r, code);
    const std::uint64_t id = identity_of_process(r);
    reap(r);
    return id;
  }

  static std::uint64_t kill_and_reap(pid_t pid) {
    ::kill(pid, SIGKILL);
    wait_until_zombie(pid);
    const std::uint64_t id = identity_of_process(pid);
    reap(pid);
    return id;
  }

  std::uint64_t sweep_recovery_kills(const sweep_op_info& info, std::uint64_t n) {
    std::uint64_t kills = 0;
    for (std::uint64_t m = 1; m <= max_points; ++m) {
      run_point(info, n, false, m);
      if (!last_recovery_died_) break;
      ++kills;
    }
    return kills;
  }

  static std::string describe(const sweep_op_info& info, std::uint64_t n, bool concurrent, std::uint64_t m) {
    std::string s = std::string(info.name) + " killed at crash point " + std::to_string(n);
    if (concurrent) s += " with a concurrent recover_stale loop";
    if (m > 0) s += ", then recovery killed at its point " + std::to_string(m);
    return s;
  }

  void report(const std::string& where, const std::vector<std::string>& problems) {
    for (const std::string& p : problems) fail(where, p);
  }
  void fail(const std::string& where, const std::string& what) {
    ++failures_;
    if (failures_ <= 20) std::printf("[sweep] FAIL %s: %s\n", where.c_str(), what.c_str());
  }

  bool verbose_;
  bool last_recovery_died_ = false;
  std::uint64_t failures_ = 0;
};

}  // namespace
}  // namespace stress

int main(int argc, char** argv) {
  using namespace stress;
  std::string json = std::string(SHMPOOL_STRESS_REPORT_DIR) + "/crash-sweep.json";
  bool wakeup = false, init_only = false, suspend = false, quick = false, json_given = false;
  bool fork_at_registry = false, exec_at_pool = false;
  std::string only;
  if (argc == 3 && std::strcmp(argv[1], "--registry-exec-stage") == 0)
    registry_exec_stage(std::strtoull(argv[2], nullptr, 10));
  if (argc == 5 && std::strcmp(argv[1], "--exec-image") == 0)
    pool_exec_image(std::atoi(argv[2]), std::atoi(argv[3]), std::strcmp(argv[4], "recover") == 0);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) json = argv[++i], json_given = true;
    else if (std::strcmp(argv[i], "--wakeup") == 0) wakeup = true;
    else if (std::strcmp(argv[i], "--suspend") == 0) suspend = true;
    else if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    else if (std::strcmp(argv[i], "--init") == 0) init_only = true;
    else if (std::strcmp(argv[i], "--fork-at-registry-points") == 0) fork_at_registry = true;
    else if (std::strcmp(argv[i], "--exec-at-pool-points") == 0) exec_at_pool = true;
  }
  // Issue 20, verifier (b): a fork while another thread stands at each
  // registry crash point (registry_fork_sweep.hpp).
  if (fork_at_registry) {
    const registry_fork_figures f = run_registry_fork_sweep();
    std::printf("[fork-sweep] %s: thread A parked at %llu registry crash points in its first attach and %llu in an "
                "attached process, %llu runs; the fork waited for it %llu times and completed while it stood %llu times; "
                "%llu failures\n",
                f.failures == 0 ? "PASS" : "FAIL", static_cast<unsigned long long>(f.first_attach_points),
                static_cast<unsigned long long>(f.attached_points), static_cast<unsigned long long>(f.runs),
                static_cast<unsigned long long>(f.forks_waited), static_cast<unsigned long long>(f.forks_while_parked),
                static_cast<unsigned long long>(f.failures));
    if (json_given)
      write_text_file(json, json_object()
                                .str("runner", "pool_crash_sweep --fork-at-registry-points")
                                .num("first_attach_points", f.first_attach_points)
                                .num("attached_points", f.attached_points)
                                .num("runs", f.runs)
                                .num("forks_waited", f.forks_waited)
                                .num("forks_while_parked", f.forks_while_parked)
                                .num("failures", f.failures)
                                .str("result", f.failures == 0 ? "pass" : "fail")
                                .text());
    return f.failures == 0 ? 0 : 1;
  }
  // Issue 20, verifier (b): the process re-executes itself at each crash
  // point of the pool's operations (pool_exec_sweep.hpp).
  if (exec_at_pool) {
    const pool_exec_figures f = run_pool_exec_sweep(json_given ? json : "");
    std::printf("[exec-sweep] %s: re-executed at %llu crash points, %llu runs, %llu with waiter entries left by the old "
                "image, %llu slots released by release_owner, %llu check() problems explained; %llu failures\n",
                f.failures == 0 ? "PASS" : "FAIL", static_cast<unsigned long long>(f.points),
                static_cast<unsigned long long>(f.runs), static_cast<unsigned long long>(f.runs_with_waiters),
                static_cast<unsigned long long>(f.slots_released), static_cast<unsigned long long>(f.problems_explained),
                static_cast<unsigned long long>(f.failures));
    return f.failures == 0 ? 0 : 1;
  }
  if (wakeup) return run_wakeup_sweep(json);
  // The suspension sweep (issue 20, verifier a): every point stops the
  // process instead of killing it; --quick runs a sample, --only OP one operation.
  if (suspend)
    return run_suspension_sweep(json_given ? json : std::string(SHMPOOL_STRESS_REPORT_DIR) + "/suspension-sweep.json",
                                quick, only);
  if (init_only) {
    const init_sweep_figures init = run_init_sweep();
    std::printf("[sweep] %s: %llu crash points creating or opening a pool, %llu runs, %llu leftovers, %llu failures\n",
                init.failures == 0 ? "PASS" : "FAIL", static_cast<unsigned long long>(init.points),
                static_cast<unsigned long long>(init.runs), static_cast<unsigned long long>(init.leftovers),
                static_cast<unsigned long long>(init.failures));
    return init.failures == 0 ? 0 : 1;
  }
  sweeper s(false);
  json_object per_op;
  std::uint64_t points = 0, runs = 0, kills = 0;
  for (const sweep_op_info& info : sweep_ops) {
    const op_figures f = s.sweep(info);
    std::printf("[sweep] %-16s %3llu crash points, %3llu concurrent-recovery runs, %4llu recovery kills\n", info.name,
                static_cast<unsigned long long>(f.points), static_cast<unsigned long long>(f.concurrent_runs),
                static_cast<unsigned long long>(f.recovery_kills));
    per_op.raw(info.name, json_object()
                              .num("points", f.points)
                              .num("concurrent_runs", f.concurrent_runs)
                              .num("recovery_kills", f.recovery_kills)
                              .text());
    points += f.points;
    kills += f.points + f.recovery_kills;  // deterministic deaths (concurrent runs die at the same points)
    runs += f.points + f.concurrent_runs + f.recovery_kills;
  }
  const registry_sweep_figures reg = run_registry_sweep();
  std::printf("[sweep] %-16s %3llu crash points creating a registry, %llu in a fork child, %llu after exec, %llu runs\n",
              "registry", static_cast<unsigned long long>(reg.attach_points),
              static_cast<unsigned long long>(reg.fork_points), static_cast<unsigned long long>(reg.exec_points),
              static_cast<unsigned long long>(reg.runs));
  points += reg.attach_points + reg.fork_points + reg.exec_points;
  kills += reg.attach_points + reg.fork_points + reg.exec_points;
  runs += reg.runs;
  const init_sweep_figures init = run_init_sweep();
  points += init.points;
  kills += 2 * init.points;  // each point alone and with a racing opener
  runs += init.runs;
  const std::uint64_t failures = s.failures() + reg.failures + init.failures;
  const bool ok = failures == 0;
  json_object j;
  j.str("runner", "pool_crash_sweep").num("points", points).num("runs", runs).num("kills", kills)
      .num("failures", failures).str("result", ok ? "pass" : "fail").raw("operations", per_op.text())
      .raw("registry", json_object()
                           .num("attach_points", reg.attach_points)
                           .num("fork_points", reg.fork_points)
                           .num("exec_points", reg.exec_points)
                           .num("runs", reg.runs)
                           .num("failures", reg.failures)
                           .text())
      .raw("initialisation", json_object()
                                 .num("points", init.points)
                                 .num("runs", init.runs)
                                 .num("leftovers", init.leftovers)
                                 .num("failures", init.failures)
                                 .text());
  write_text_file(json, j.text());
  std::printf("[sweep] %s: %llu crash points over %zu pool operations, pool initialisation and the registry, %llu runs, %llu failures\n",
              ok ? "PASS" : "FAIL", static_cast<unsigned long long>(points), std::size(sweep_ops),
              static_cast<unsigned long long>(runs), static_cast<unsigned long long>(failures));
  return ok ? 0 : 1;
}
