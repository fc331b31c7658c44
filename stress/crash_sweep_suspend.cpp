// The suspension sweep (crash_sweep_suspend.hpp).
//
// One run per (operation, crash point n): a fresh pool in the operation's
// known state (crash_sweep_scenarios.hpp), an op child armed to SIGSTOP
// itself at its nth crash point, and the parent, which waits for the stop
// (waitpid WUNTRACED) and checks S1-S4 with helper processes forked for the
// purpose (all with time limits: a helper that does not answer is killed
// and the run fails).  Then SIGCONT with a step request: the child's SIGCONT
// handler records the site it stood at and re-arms itself to stop at its
// next crash point; the parent checks again there, and so on to the end of
// the operation (the quick sample: one step), then checks the final state
// (S5).  A child that exits before its nth point
// ends the operation's sweep.
#include "crash_sweep_suspend.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "crash_sweep_checks.hpp"
#include "crash_sweep_scenarios.hpp"
#include "shmpool/platform/linux.hpp"

namespace stress {
namespace {

using shmpool::slot_index;
using shmpool::detail::slot_state;
using shmpool::platform::crash_action;
using shmpool::platform::crash_site;

constexpr std::int64_t ms_ns = 1'000'000;
constexpr std::int64_t wake_bound_ns = 1000 * ms_ns;  // S2: a sleeper wakes within 1 s of a free
constexpr int waiter_timeout_ms = 2000;               // the sleeper's own timeout
constexpr std::int64_t asleep_limit_ns = 2000 * ms_ns;  // to see the sleeper asleep
constexpr std::int64_t helper_limit_ns = 5000 * ms_ns;  // a helper slower than this hangs
constexpr std::int64_t op_limit_ns = 10000 * ms_ns;     // the op child: to its next stop or its exit
constexpr std::uint64_t max_points = 2000;              // a bound, never reached
constexpr unsigned max_mine = 8;
constexpr unsigned max_sites = 256;

// Shared with the op child.  The handler writes only atomics (async-signal-safe).
struct stop_control {
  std::atomic<int> step{0};       // 1: when continued, stop again at the next crash point
  std::atomic<int> continued{0};  // SIGCONTs the child handled
  std::atomic<std::uint32_t> site[max_sites]{};  // the site of the k-th stop, recorded when continued
  std::atomic<int> mine_count{0};        // child_setup::mine: the slots the operation frees
  std::atomic<std::uint64_t> mine[max_mine]{};
};
stop_control* g_ctl = nullptr;  // the op child's pointer to it

void on_continue(int) {
  stop_control* c = g_ctl;
  if (c == nullptr) return;
  const int k = c->continued.load();
  if (k < static_cast<int>(max_sites)) c->site[k].store(static_cast<std::uint32_t>(shmpool::platform::last_crash_site()));
  c->continued.store(k + 1);
  if (c->step.load() != 0)
    shmpool::platform::arm_crash_point(1, crash_action::stop);  // the count restarts: the next hit stops
  else
    shmpool::platform::arm_crash_point(0);
}

// Shared with the helpers.
struct helper_board {
  // Filler commands: 1 free one slot, 2 free all and exit, 3 take more (try_alloc until it fails).
  std::atomic<int> filler_ready{0}, filler_taken{0}, filler_cmd{0}, filler_done{0}, filler_topups{0};
  std::atomic<std::int64_t> filler_freed_slot{-1}, filler_freed_at{0};
  std::atomic<std::int64_t> waiter_slot{-1}, waiter_woke_at{0};
  std::atomic<std::int64_t> probe_batch_slot{-1}, probe_try_slot{-1};
};

const char* site_name(std::uint32_t s) {
  switch (static_cast<crash_site>(s)) {
    case crash_site::alloc_claimed: return "alloc_claimed";
    case crash_site::alloc_published: return "alloc_published";
    case crash_site::free_marked: return "free_marked";
    case crash_site::free_done: return "free_done";
    case crash_site::free_group_cleared: return "free_group_cleared";
    case crash_site::alloc_n_partial: return "alloc_n_partial";
    case crash_site::alloc_n_rollback: return "alloc_n_rollback";
    case crash_site::free_n_partial: return "free_n_partial";
    case crash_site::recover_freed: return "recover_freed";
    case crash_site::reset_freed: return "reset_freed";
    case crash_site::wait_registered: return "wait_registered";
    case crash_site::group_marked: return "group_marked";
    default: return "?";
  }
}

// A child that runs fn and exits with its result (2 if it throws), never
// running the parent's destructors.
template <class F>
pid_t fork_helper(F&& fn) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    shmpool::platform::arm_crash_point(0);
    int code = 2;
    try {
      code = fn();
    } catch (...) {
    }
    ::_exit(code);
  }
  return pid;
}

bool wait_until(auto&& condition, std::int64_t limit_ns) {
  const std::int64_t deadline = now_ns() + limit_ns;
  while (!condition()) {
    if (now_ns() > deadline) return false;
    ::usleep(50);
  }
  return true;
}

// The helper's exit status, or nothing if it ran past the limit (then it
// is killed; its identity goes into `killed`, for the final checks).
std::optional<int> finish_helper(pid_t pid, std::int64_t limit_ns, std::vector<std::uint64_t>& killed) {
  int st = 0;
  if (wait_until([&] { return ::waitpid(pid, &st, WNOHANG) == pid; }, limit_ns)) return st;
  ::kill(pid, SIGKILL);
  wait_until_zombie(pid);
  killed.push_back(identity_of_process(pid));
  reap(pid);
  return std::nullopt;
}

enum class child_event { stopped, exited, hung };

// Waits for the op child to stop or exit; an exited child stays a zombie
// (its identity certainly dead, its pid not yet reusable).
child_event wait_for_child(pid_t pid, std::int64_t limit_ns) {
  child_event ev = child_event::hung;
  wait_until(
      [&] {
        siginfo_t info{};
        info.si_pid = 0;
        if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WSTOPPED | WNOHANG | WNOWAIT) != 0 ||
            info.si_pid != pid)
          return false;
        if (info.si_code == CLD_STOPPED) {
          int st = 0;
          ::waitpid(pid, &st, WUNTRACED | WNOHANG);  // consume the stop
          ev = child_event::stopped;
        } else {
          ev = child_event::exited;
        }
        return true;
      },
      limit_ns);
  return ev;
}

const std::atomic<std::uint64_t>* waiter_entries(const sweep_pool& sp) {
  using namespace shmpool::detail;
  const auto layout = compute_layout(variant_code::i64, sp.pool.capacity(), sp.pool.elem_size(), 0);
  if (!layout) throw std::runtime_error("suspension sweep: cannot compute the layout");
  const auto* base = static_cast<const std::byte*>(sp.pool.data_ptr()) - layout->data_offset;
  return reinterpret_cast<const std::atomic<std::uint64_t>*>(base + control_offset);
}

struct op_figures {
  std::uint64_t points = 0, stops = 0, checks = 0, wakes = 0;
  std::int64_t max_wake_ns = 0;
};

// S1-S4 while the op child stands at a crash point.
class stop_checker {
 public:
  stop_checker(sweep_pool& sp, helper_board& b, std::uint64_t child_id, std::set<slot_index> own,
               std::set<std::uint64_t>& stale_groups, std::vector<std::uint64_t>& killed)
      : sp_(sp), b_(b), child_id_(child_id), own_(std::move(own)), stale_groups_(stale_groups), killed_(killed) {}

  std::vector<std::string> run(op_figures& f) {
    const auto words_before = words_of_child();
    const auto entries_before = entries_of_child();

    // S1: marks, and what try_alloc / alloc_n(1, 0) find, before any free.
    check_marks(f);
    if (const auto free_now = visible_free(); !free_now.empty()) {
      ++f.checks;
      probe("although " + free_text(free_now) + " free");
    }

    // S2: take every slot try_alloc can find, put a sleeper in alloc, free one.
    const pid_t filler = start_filler();
    const bool filler_ok = wait_until([&] { return b_.filler_ready.load() != 0; }, helper_limit_ns);
    if (!filler_ok) problem("a helper filling the pool with try_alloc did not finish");
    const slot_index freed = sleeper_wakes_for_a_free(f);

    // S3: the slot freed (and given back by the sleeper) is found by others.
    check_marks(f);
    if (freed != no_slot) {
      ++f.checks;
      probe("after slot " + std::to_string(freed) + " was freed by a completed free in another process");
    }
    b_.filler_cmd.store(2);
    if (!finish_helper(filler, helper_limit_ns, killed_)) problem("the filling helper did not free its slots and exit");

    // S4: recovery by another process frees nothing of the live, stopped process.
    ++f.checks;
    const pid_t r = fork_helper([&] {
      sp_.pool.recover_stale();
      return 0;
    });
    const auto st = finish_helper(r, helper_limit_ns, killed_);
    if (!st || !WIFEXITED(*st) || WEXITSTATUS(*st) != 0) problem("recover_stale() in another process did not complete");
    stale_groups_.clear();  // a recovery ran: the stale mark planted for it is repaired
    for (const auto& [s, w] : words_before)
      if (sp_.view.word(s) != w)
        problem("recover_stale() in another process changed " + slot_text(s, w) + " of the stopped (live) process to " +
                slot_text(s, sp_.view.word(s)));
    if (entries_of_child() != entries_before)
      problem("recover_stale() in another process cleared a waiter entry of the stopped (live) process");
    return std::move(problems_);
  }

 private:
  static constexpr slot_index no_slot = ~slot_index{0};

  void problem(const std::string& p) { problems_.push_back(p); }

  std::vector<std::pair<slot_index, std::uint64_t>> words_of_child() const {
    std::vector<std::pair<slot_index, std::uint64_t>> out;
    for (slot_index s = 0; s < sp_.view.capacity(); ++s) {
      const std::uint64_t w = sp_.view.word(s);
      if (w != 0 && identity_of_word(w) == child_id_) out.emplace_back(s, w);
    }
    return out;
  }
  std::vector<unsigned> entries_of_child() const {
    std::vector<unsigned> out;
    const auto* e = waiter_entries(sp_);
    for (unsigned k = 0; k < shmpool::detail::waiter_slots; ++k)
      if (e[k].load() == child_id_) out.push_back(k);
    return out;
  }

  // FREE words the stopped operation may keep unavailable: its own (the
  // slots it is freeing: its operation has not completed), and those under
  // the stale mark planted for recovery (a dead scanner's, until a recovery).
  bool may_be_hidden(slot_index s) const {
    return own_.count(s) != 0 || stale_groups_.count(s / shmpool::detail::group_slots) != 0;
  }
  static std::string free_text(const std::vector<slot_index>& free) {
    return free.size() == 1 ? "slot " + std::to_string(free[0]) + " is"
                            : std::to_string(free.size()) + " slots (first " + std::to_string(free[0]) + ") are";
  }
  std::vector<slot_index> visible_free() const {
    std::vector<slot_index> out;
    for (slot_index s = 0; s < sp_.view.capacity(); ++s)
      if (sp_.view.word(s) == 0 && !may_be_hidden(s)) out.push_back(s);
    return out;
  }

  // S1: a confirmed mark (GROUP_FULL) over a FREE word hides it from every scan.
  void check_marks(op_figures& f) {
    ++f.checks;
    for (std::uint64_t g = 0; g < shmpool::detail::group_count(sp_.view.capacity()); ++g) {
      if (sp_.view.mark(g) != shmpool::detail::group_full) continue;
      for (slot_index s = g * shmpool::detail::group_slots;
           s < std::min<std::uint64_t>((g + 1) * shmpool::detail::group_slots, sp_.view.capacity()); ++s)
        if (sp_.view.word(s) == 0 && !may_be_hidden(s)) {
          problem("group " + std::to_string(g) + " is marked full over free slot " + std::to_string(s) +
                  ": hidden from every scan while the process stands still");
          break;
        }
    }
  }

  // A third process tries alloc_n(1, 0) (a scan that honours the marks,
  // with no hint slot) and then try_alloc, giving back what it gets.
  void probe(const std::string& when) {
    b_.probe_batch_slot.store(-1);
    b_.probe_try_slot.store(-1);
    const pid_t p = fork_helper([&] {
      if (auto v = sp_.pool.alloc_n(1, std::chrono::milliseconds(0))) {
        b_.probe_batch_slot.store(static_cast<std::int64_t>((*v)[0]));
        sp_.pool.free((*v)[0]);
      }
      if (auto s = sp_.pool.try_alloc()) {
        b_.probe_try_slot.store(static_cast<std::int64_t>(*s));
        sp_.pool.free(*s);
      }
      return 0;
    });
    const auto st = finish_helper(p, helper_limit_ns, killed_);
    if (!st || !WIFEXITED(*st) || WEXITSTATUS(*st) != 0) {
      problem("try_alloc/alloc_n(1, 0) in another process did not return " + when);
      return;
    }
    const std::string used = " (used() = " + std::to_string(sp_.pool.used()) + " of " +
                             std::to_string(sp_.pool.capacity()) + ")";
    if (b_.probe_batch_slot.load() < 0) problem("alloc_n(1, 0) in another process found no slot " + when + used);
    if (b_.probe_try_slot.load() < 0) problem("try_alloc in another process found no slot " + when + used);
  }

  pid_t start_filler() {
    b_.filler_ready.store(0);
    b_.filler_taken.store(0);
    b_.filler_cmd.store(0);
    b_.filler_done.store(0);
    b_.filler_freed_slot.store(-1);
    b_.filler_topups.store(0);
    return fork_helper([&] {
      std::vector<slot_index> held;
      auto take_all = [&] {
        while (held.size() <= sp_.pool.capacity()) {
          const auto s = sp_.pool.try_alloc();
          if (!s) break;
          held.push_back(*s);
        }
        b_.filler_taken.store(static_cast<int>(held.size()));
      };
      take_all();
      b_.filler_ready.store(1);
      for (;;) {
        const int cmd = b_.filler_cmd.load();
        if (cmd == 3) {
          take_all();
          b_.filler_cmd.store(0);
          b_.filler_topups.fetch_add(1);
          continue;
        }
        if (cmd == 1 && b_.filler_done.load() == 0) {
          if (!held.empty()) {
            const slot_index s = held.back();
            held.pop_back();
            b_.filler_freed_at.store(now_ns());
            sp_.pool.free(s);
            b_.filler_freed_slot.store(static_cast<std::int64_t>(s));
          }
          b_.filler_done.store(1);
        }
        if (cmd == 2) break;
        ::usleep(50);
      }
      for (const slot_index s : held) sp_.pool.free(s);
      return 0;
    });
  }

  // S2.  Returns the slot freed, or no_slot.
  slot_index sleeper_wakes_for_a_free(op_figures& f) {
    const std::uint64_t parent = my_identity();
    auto entries_in_use = [&] {
      const auto* e = waiter_entries(sp_);
      unsigned n = 0;
      for (unsigned k = 0; k < shmpool::detail::waiter_slots; ++k) n += e[k].load() != 0;
      return n;
    };
    const unsigned entries_before = entries_in_use();
    pid_t w = 0;
    // A sleeper whose own hint slot (tried before any scan, marks or not) is
    // one the stopped operation may keep hidden (or one under the stale mark
    // planted for recovery) gets it at once, and its free clears that
    // group's mark: the filler takes what became visible, and another
    // sleeper (another pid, another hint) tries.
    for (int attempt = 0;; ++attempt) {
      b_.waiter_slot.store(-1);
      b_.waiter_woke_at.store(0);
      w = fork_helper([&] {
        const auto s = sp_.pool.alloc(std::chrono::milliseconds(waiter_timeout_ms));
        b_.waiter_woke_at.store(now_ns());
        if (!s) return 1;
        b_.waiter_slot.store(static_cast<std::int64_t>(*s));
        sp_.pool.free(*s);
        return 0;
      });
      int early = 0;
      bool exited = false;
      wait_until(
          [&] {
            if (::waitpid(w, &early, WNOHANG) == w) return exited = true;
            return entries_in_use() > entries_before && process_state(w) == 'S';
          },
          asleep_limit_ns);
      if (!exited) break;
      const std::int64_t got = b_.waiter_slot.load();
      if (got >= 0 && may_be_hidden(static_cast<slot_index>(got)) && attempt < 4) {
        const int topups = b_.filler_topups.load();
        b_.filler_cmd.store(3);
        if (!wait_until([&] { return b_.filler_topups.load() != topups; }, helper_limit_ns)) {
          problem("the filling helper did not take the slots that became visible");
          return no_slot;
        }
        continue;
      }
      ++f.checks;
      if (got >= 0)
        problem("try_alloc reported the pool full to a process that then took " + std::to_string(b_.filler_taken.load()) +
                " slot(s), but a blocking alloc got slot " + std::to_string(got) + " at once");
      else
        problem("a blocking alloc returned at once without a slot");
      return no_slot;
    }

    // Item 3's symptom: asleep although a slot is free (only a mark hides it).
    ++f.checks;
    if (const auto free_now = visible_free(); !free_now.empty())
      problem("a blocking alloc went to sleep although " + free_text(free_now) + " free");

    // The free: a slot the parent holds (the highest of group 0 if it has
    // one there: a slot a scanner from alloc_scan_full_hint has passed),
    // else one the filler holds.
    slot_index freed = no_slot;
    std::int64_t t0 = 0;
    std::string freer = "the parent";
    for (auto it = sp_.parent_slots.rbegin(); it != sp_.parent_slots.rend(); ++it)
      if (sp_.view.word(*it) == allocated_word(parent) &&
          (freed == no_slot || (*it < shmpool::detail::group_slots && freed >= shmpool::detail::group_slots)))
        freed = *it;
    if (freed != no_slot) {
      t0 = now_ns();
      if (!sp_.pool.free(freed)) problem("the parent's free of its slot " + std::to_string(freed) + " returned false");
      sp_.parent_slots.erase(freed);
    } else {
      freer = "a helper";
      b_.filler_cmd.store(1);
      if (!wait_until([&] { return b_.filler_done.load() != 0; }, helper_limit_ns))
        problem("the filling helper did not free a slot");
      else if (b_.filler_freed_slot.load() >= 0) {
        freed = static_cast<slot_index>(b_.filler_freed_slot.load());
        t0 = b_.filler_freed_at.load();
      }
    }
    if (freed == no_slot) {  // nothing anyone could free: no wake to wait for
      ::kill(w, SIGKILL);
      wait_until_zombie(w);
      killed_.push_back(identity_of_process(w));
      reap(w);
      return no_slot;
    }
    ++f.checks;
    const auto st = finish_helper(w, helper_limit_ns, killed_);
    const std::string what = "slot " + std::to_string(freed) + " freed by " + freer;
    if (!st) {
      problem("a blocking alloc did not return after " + what);
    } else if (b_.waiter_slot.load() < 0) {
      problem("a blocking alloc asleep on a full pool slept through a completed free (" + what + ") until its " +
              std::to_string(waiter_timeout_ms) + " ms timeout");
    } else {
      const std::int64_t latency = b_.waiter_woke_at.load() - t0;
      ++f.wakes;
      f.max_wake_ns = std::max(f.max_wake_ns, latency);
      if (latency > wake_bound_ns)
        problem("a blocking alloc woke " + std::to_string(latency / ms_ns) + " ms after " + what + " (bound " +
                std::to_string(wake_bound_ns / ms_ns) + " ms)");
    }
    return freed;
  }

  sweep_pool& sp_;
  helper_board& b_;
  std::uint64_t child_id_;
  std::set<slot_index> own_;
  std::set<std::uint64_t>& stale_groups_;
  std::vector<std::uint64_t>& killed_;
  std::vector<std::string> problems_;
};

class suspension_sweeper {
 public:
  // chain: stops per run (1 = only point n; the full sweep stops at every
  // point from n to the end).
  explicit suspension_sweeper(std::uint64_t chain)
      : chain_(chain), ctl_(map_shared<stop_control>()), board_(map_shared<helper_board>()) {}

  op_figures sweep(const sweep_op_info& info) {
    op_figures f;
    for (std::uint64_t n = 1; n <= max_points; ++n) {
      if (!run_point(info, n, f)) break;
      ++f.points;
    }
    return f;
  }
  std::uint64_t failures() const { return failures_; }

 private:
  // One run; true if the op child stopped at its nth point.
  bool run_point(const sweep_op_info& info, std::uint64_t n, op_figures& f) {
    sweep_pool sp;
    prepare_sweep_pool(sp, info.op);
    ctl_->step.store(0);
    ctl_->continued.store(0);
    for (auto& site : ctl_->site) site.store(0);
    ctl_->mine_count.store(0);
    stop_control* const ctl = ctl_;
    const pid_t child = ::fork();
    if (child == 0) {
      int code = 3;
      try {
        g_ctl = ctl;
        child_setup c = setup_in_child(sp, info.op);
        c.recovery_races = true;  // helpers recover the dead owners' slots first
        c.others_free = true;     // and free slots while it stands still
        for (std::size_t k = 0; k < c.mine.size() && k < max_mine; ++k) ctl->mine[k].store(c.mine[k]);
        ctl->mine_count.store(static_cast<int>(std::min<std::size_t>(c.mine.size(), max_mine)));
        struct sigaction sa {};
        sa.sa_handler = on_continue;
        sa.sa_flags = SA_RESTART;
        ::sigemptyset(&sa.sa_mask);
        ::sigaction(SIGCONT, &sa, nullptr);
        shmpool::platform::arm_crash_point(n, crash_action::stop);
        code = run_in_child(sp, info.op, c) ? 0 : 1;
      } catch (...) {
      }
      shmpool::platform::arm_crash_point(0);
      ::_exit(code);
    }
    const std::string where = std::string(info.name) + " stopped at crash point " + std::to_string(n);
    std::vector<std::uint64_t> killed;
    child_event ev = wait_for_child(child, op_limit_ns);
    const std::uint64_t child_id = identity_of_process(child);
    if (ev == child_event::hung) return give_up(child, where + ": the operation neither stopped nor exited");
    if (ev == child_event::exited) {  // no nth point: the operation completes (checked by the last run)
      reap(child);
      return false;
    }

    // The slots the operation itself may keep unavailable while it stands.
    std::set<slot_index> own;
    for (int k = 0; k < ctl_->mine_count.load(); ++k) own.insert(ctl_->mine[k].load());
    if (info.op == sweep_op::recover_stale) own.insert(sp.planted.begin(), sp.planted.end());
    if (info.op == sweep_op::reset)
      for (slot_index s = 0; s < sp.view.capacity(); ++s) own.insert(s);
    // recover_stale and reset start with a stale mark on group 0 (planted as a
    // dead scanner leaves it): not the stopped process's doing, until a
    // recovery has run.
    std::set<std::uint64_t> stale_groups;
    if (info.op == sweep_op::recover_stale || info.op == sweep_op::reset) stale_groups.insert(0);

    // Stop k of the chain stands at crash point n + k.  Its problems are
    // printed once it has been continued: the handler has then recorded the
    // site it stood at.
    std::uint64_t stops = 0;
    while (ev == child_event::stopped) {
      ++f.stops;
      auto problems = stop_checker(sp, *board_, child_id, own, stale_groups, killed).run(f);
      const bool more = stops + 1 < chain_;
      ctl_->step.store(more ? 1 : 0);
      ::kill(child, SIGCONT);
      ev = wait_for_child(child, op_limit_ns);
      const std::string at = stop_text(info, n, stops);
      for (const auto& p : problems) fail(at, p);
      ++stops;
      if (ev == child_event::hung) return give_up(child, at + ": the operation did not go on once continued");
    }

    // S5: the final state, as the kill sweep checks it.
    const std::string done = where + (stops > 1 ? " and at the " + std::to_string(stops - 1) + " after it" : "") +
                             ", continued to the end";
    int code = 0;
    (void)died_at_crash_point(child, code);
    ++f.checks;
    if (code != 0) fail(done, "the operation completed with a wrong result (exit code " + std::to_string(code) + ")");
    std::vector<std::uint64_t> dead{child_id};
    dead.insert(dead.end(), killed.begin(), killed.end());
    report(done, check_left_by_dead(sp, dead));
    sp.pool.recover_stale();  // while the child is a zombie: certainly dead
    report(done, check_nothing_names(sp, child_id));
    reap(child);
    sp.pool.recover_stale();
    report(done, check_whole_after_recovery(sp, info.op == sweep_op::reset));
    return true;
  }

  // "alloc stopped at crash point 3 (group_marked), after stops at 1, 2": where stop k stood.
  std::string stop_text(const sweep_op_info& info, std::uint64_t n, std::uint64_t k) const {
    auto site = [&](std::uint64_t j) {
      return std::string(j < max_sites ? site_name(ctl_->site[j].load()) : "?");
    };
    std::string s = std::string(info.name) + " stopped at crash point " + std::to_string(n + k) + " (" + site(k) + ")";
    if (k > 0) {
      s += ", after frees while it stood at " + std::to_string(n) + " (" + site(0) + ")";
      if (k > 1) s += " .. " + std::to_string(n + k - 1);
    }
    return s;
  }

  bool give_up(pid_t child, const std::string& why) {
    fail(why, "killed");
    ::kill(child, SIGKILL);
    reap(child);
    return false;
  }
  void report(const std::string& where, const std::vector<std::string>& problems) {
    for (const std::string& p : problems) fail(where, p);
  }
  void fail(const std::string& where, const std::string& what) {
    ++failures_;
    if (failures_ <= 30) std::printf("[suspend] FAIL %s: %s\n", where.c_str(), what.c_str());
  }

  std::uint64_t chain_;
  stop_control* ctl_;
  helper_board* board_;
  std::uint64_t failures_ = 0;
};

bool in_quick_sample(sweep_op op) {
  return op == sweep_op::alloc_scan_full || op == sweep_op::alloc_wait || op == sweep_op::free ||
         op == sweep_op::guard_free;
}

}  // namespace

int run_suspension_sweep(const std::string& json_path, bool quick, const std::string& only) {
  const std::int64_t start = now_ns();
  // The full sweep stops at every later point too (a free completed while
  // the process stood at n must stay visible at every point after it); the
  // quick sample at the next one only.
  suspension_sweeper s(quick ? 2 : max_sites);
  json_object per_op;
  op_figures total;
  std::size_t ops = 0;
  for (const sweep_op_info& info : sweep_ops) {
    if ((quick && !in_quick_sample(info.op)) || (!only.empty() && only != info.name)) continue;
    ++ops;
    const op_figures f = s.sweep(info);
    std::printf("[suspend] %-16s %3llu crash points, %3llu stops, %4llu checks, %3llu wake-ups (slowest %.1f ms)\n",
                info.name, static_cast<unsigned long long>(f.points), static_cast<unsigned long long>(f.stops),
                static_cast<unsigned long long>(f.checks), static_cast<unsigned long long>(f.wakes),
                static_cast<double>(f.max_wake_ns) / 1e6);
    per_op.raw(info.name, json_object()
                              .num("points", f.points)
                              .num("stops", f.stops)
                              .num("checks", f.checks)
                              .num("wakes", f.wakes)
                              .num("max_wake_ms", static_cast<double>(f.max_wake_ns) / 1e6)
                              .text());
    total.points += f.points;
    total.stops += f.stops;
    total.checks += f.checks;
    total.wakes += f.wakes;
    total.max_wake_ns = std::max(total.max_wake_ns, f.max_wake_ns);
  }
  const double seconds = static_cast<double>(now_ns() - start) / 1e9;
  const bool ok = s.failures() == 0 && ops != 0;
  if (ops == 0) std::printf("[suspend] no operation named %s\n", only.c_str());
  json_object j;
  j.str("runner", "pool_crash_sweep --suspend").str("mode", quick ? "quick" : "full").num("points", total.points)
      .num("stops", total.stops).num("checks", total.checks).num("wakes", total.wakes)
      .num("max_wake_ms", static_cast<double>(total.max_wake_ns) / 1e6).num("seconds", seconds)
      .num("failures", s.failures()).str("result", ok ? "pass" : "fail").raw("operations", per_op.text());
  write_text_file(json_path, j.text());
  std::printf("[suspend] %s: %llu crash points over %zu pool operations, %llu stops, %llu checks, %llu wake-ups "
              "(slowest %.1f ms), %llu failures, %.1f s\n",
              ok ? "PASS" : "FAIL", static_cast<unsigned long long>(total.points), ops,
              static_cast<unsigned long long>(total.stops), static_cast<unsigned long long>(total.checks),
              static_cast<unsigned long long>(total.wakes), static_cast<double>(total.max_wake_ns) / 1e6,
              static_cast<unsigned long long>(s.failures()), seconds);
  return ok ? 0 : 1;
}

}  // namespace stress
