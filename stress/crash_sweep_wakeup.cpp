// The wake-up sweep (crash_sweep_wakeup.hpp).
#include "crash_sweep_wakeup.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "crash_sweep_scenarios.hpp"
#include "shmpool/platform/linux.hpp"

namespace stress {
namespace {

struct handshake {
  std::atomic<int> ready{0};
  std::atomic<int> go{0};
};

struct wake_outcome {
  bool op_died = false;
  bool waiter_woke = false;
  std::uint64_t free_slots = 0;
};

bool wait_for(auto&& condition, std::int64_t timeout_ns) {
  const std::int64_t deadline = now_ns() + timeout_ns;
  while (!condition()) {
    if (now_ns() > deadline) return false;
    ::usleep(100);
  }
  return true;
}

// The freeing process: takes its slots (filling the pool), waits for the
// go, arms crash point n, frees.
pid_t start_freer(sweep_pool& sp, sweep_op op, std::uint64_t n, handshake& h) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  child_setup c = setup_in_child(sp, op);
  h.ready.store(1);
  while (h.go.load() == 0) {
  }
  shmpool::platform::arm_crash_point(n);
  const bool ok = run_in_child(sp, op, c);
  shmpool::platform::arm_crash_point(0);
  ::_exit(ok ? 0 : 1);
}

pid_t start_waiter(sweep_pool& sp) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(sp.pool.alloc() ? 0 : 1);
  return pid;
}

wake_outcome run_wake_point(sweep_op op, std::uint64_t n) {
  sweep_pool sp;
  const std::size_t theirs = op == sweep_op::free ? 1 : op == sweep_op::free_n ? 4 : 3;
  auto mine = sp.pool.alloc_n(sweep_capacity - theirs, std::chrono::milliseconds(0));
  std::uint64_t dead = 0;
  if (op == sweep_op::recover_stale) leave_slots_to_a_dead_process(sp, theirs, &dead);
  auto* h = map_shared<handshake>();
  const pid_t freer = start_freer(sp, op, n, *h);
  wait_for([&] { return h->ready.load() == 1; }, 5'000'000'000);
  const pid_t waiter = start_waiter(sp);
  wait_for([&] { return sp.view.waiters() >= 1 && process_state(waiter) == 'S'; }, 5'000'000'000);
  h->go.store(1);
  wake_outcome out;
  wait_until_zombie(freer);
  out.op_died = WIFSIGNALED(reap(freer));
  if (out.op_died) sp.pool.recover_stale();
  out.free_slots = sp.pool.capacity() - sp.pool.used();
  int st = 0;
  out.waiter_woke = wait_for([&] { return ::waitpid(waiter, &st, WNOHANG) == waiter; }, 1'000'000'000);
  if (!out.waiter_woke) {
    ::kill(waiter, SIGKILL);
    reap(waiter);
  }
  ::munmap(h, sizeof *h);
  return out;
}

}  // namespace

int run_wakeup_sweep(const std::string& json_path) {
  const sweep_op_info ops[] = {{sweep_op::free, "free"}, {sweep_op::free_n, "free_n"},
                               {sweep_op::recover_stale, "recover_stale"}};
  std::uint64_t failures = 0, points = 0;
  json_object per_op;
  for (const auto& info : ops) {
    std::uint64_t op_points = 0;
    for (std::uint64_t n = 1; n <= 2000; ++n) {
      const wake_outcome o = run_wake_point(info.op, n);
      if (!o.waiter_woke) {
        ++failures;
        std::printf("[sweep-wakeup] FAIL %s %s%s: a waiter stayed asleep in alloc() with %llu slots free\n",
                    info.name, o.op_died ? "killed at crash point " : "completed",
                    o.op_died ? (std::to_string(n) + ", then recover_stale() by the parent").c_str() : "",
                    static_cast<unsigned long long>(o.free_slots));
      }
      if (!o.op_died) break;
      ++op_points;
    }
    std::printf("[sweep-wakeup] %-14s %3llu crash points\n", info.name, static_cast<unsigned long long>(op_points));
    per_op.num(info.name, op_points);
    points += op_points;
  }
  const bool ok = failures == 0;
  json_object j;
  j.str("runner", "pool_crash_sweep --wakeup").num("points", points).num("kills", points).num("failures", failures)
      .str("result", ok ? "pass" : "fail").raw("operations", per_op.text());
  write_text_file(json_path, j.text());
  std::printf("[sweep-wakeup] %s: %llu crash points, %llu waiters left asleep\n", ok ? "PASS" : "FAIL",
              static_cast<unsigned long long>(points), static_cast<unsigned long long>(failures));
  return ok ? 0 : 1;
}

}  // namespace stress
