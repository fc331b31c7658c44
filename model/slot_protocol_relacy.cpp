// Relacy models of the REAL slot protocol (core/include/shmpool/detail/
// slot_protocol.hpp), instantiated as slot_protocol<relacy_platform, Orders>.
// Threads model processes; a "killed" process is a thread that stops at a
// crash point (relacy_platform.hpp).
//
// Models and the invariants each asserts:
//   handover   3 threads, capacity 1, try-alloc only.  T0 allocs, writes
//              the slot's data and passes the index to T1 through a
//              release/acquire atomic; T1 frees T0's slot (free of a slot another live
//              process allocated), re-allocs, writes, frees; T2 allocs,
//              writes, frees.  Asserts: slot data (an rl::var) is
//              never raced on (each owner's accesses happen-before the next
//              owner's, through the release CAS -> claim;
//              T2 frees through free_if_held, the guards' checked free), no
//              slot owned twice (owner tag read back), and after a final
//              survivor's recovery check() empty and used() == 0.
//   wakeup     2 threads, capacity 1, blocking alloc (T0) and alloc_n (T1),
//              each writes data and frees.  Asserts W1 (no lost wake-up:
//              Relacy reports DEADLOCK when a sleeper is never woken), the
//              data handover, check() empty at the end.
//   recovery   3 threads, capacity 2.  T0 (the victim) allocs, alloc_n's,
//              frees; it is killed at a crash point Relacy chooses
//              (rl::rand), or not at all.  T1 recovers (recover_stale) while
//              T0 and T2 run, and may itself be killed mid-recovery; T2
//              allocs and frees.  At the end a fresh survivor runs
//              recover_stale once.  Asserts: I3/I4 (every slot FREE after
//              the survivor's recovery: no leaked slot, RELEASING(dead)
//              included), check() empty, used() == 0, no data race
//              between a dead owner's writes and the next owner's.
//
//   same_process  3 threads, capacity 1; T0 and T1 are two threads of ONE
//              process (one identity, one set of process gates); T2, another
//              process, reads stats() against both (monotonic, frees <= allocs).  T0 takes the slot with the generation its claim
//              returns (what a guard carries, C2) and frees it by that
//              generation (the guard's checked free); T1 frees T0's
//              allocation with the plain free and claims the slot again (the
//              hint fast path: this process's next claim), checks it holds
//              it throughout, and frees it by its own generation.  Asserts:
//              C1 (a checked free that frees nothing never changes the word:
//              T1 always sees its slot ALLOCATED and its own checked free
//              succeeds), C2 (exactly one of T0's checked free and T1's
//              plain free freed T0's allocation).
//   stats      2 threads, capacity 1: T0 claims and keeps the slot, T1 reads
//              stats() twice.  Asserts C3: frees and allocs monotonic, and
//              once quiescent allocs - frees == used() (frees never ahead).
//
// The order check: every non-relaxed order of pool_orders is weakened to
// relaxed in turn; the run passes only if the real orders pass every model
// and each weakened variant fails at least one.  Exit status 0 = as expected.
//
// Usage: slot_protocol_relacy [iterations-scale]   (default 1; the env
// SHMPOOL_MODEL_LONG=1 makes it 20)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <streambuf>
#include <string>

#include "shmpool/detail/slot_protocol.hpp"
// After the core headers (see relacy_platform.hpp).
#include "relacy_platform.hpp"

namespace {

using shmpool::model::model_passes;

using shmpool::detail::group_word;
using shmpool::detail::pool_control;
using shmpool::detail::pool_orders;
using shmpool::detail::pool_view;
using shmpool::detail::slot_meta;
using shmpool::detail::slot_protocol;
using shmpool::model::process_killed;
using shmpool::model::relacy_platform;
using shmpool::model::relacy_world;
using P = relacy_platform;
using mo = shmpool::platform::mo;

// The shared mapping of a small pool, plus per-slot data and an owner tag
// as plain (race-checked) variables.
template <unsigned Cap>
struct shared_pool {
  group_word<P> groups[1];
  slot_meta<P> meta[Cap];
  pool_control<P> control;
  rl::var<int> data[Cap];
  rl::var<unsigned> owner[Cap];

  void init() {
    groups[0].mark.store(0, rl::mo_relaxed, $);
    for (auto& m : meta) {
      m.word.store(0, rl::mo_relaxed, $);
      m.allocs.store(0, rl::mo_relaxed, $);
    }
    for (auto& w : control.waiter) w.store(0, rl::mo_relaxed, $);
    control.frees_mark.store(0, rl::mo_relaxed, $);
    control.mark_seq.store(0, rl::mo_relaxed, $);
    control.wake_seq.store(0, rl::mo_relaxed, $);
    for (auto& r : control.entry_revokes) r.store(0, rl::mo_relaxed, $);
    control.waits.store(0, rl::mo_relaxed, $);
    control.timeouts.store(0, rl::mo_relaxed, $);
    control.recoveries.store(0, rl::mo_relaxed, $);
    for (unsigned i = 0; i < Cap; ++i) {
      data[i]($) = 0;
      owner[i]($) = 0;
    }
  }
  pool_view<P> view() { return {groups, meta, &control, Cap}; }

  // What an owner does with its slot: tag it, check the tag, write data.
  void use_slot(std::uint64_t s, unsigned me) {
    owner[s]($) = me + 1;
    data[s]($) = static_cast<int>(me) * 10 + 1;
    RL_ASSERT(owner[s]($) == me + 1);  // no slot owned twice
  }
};

template <class Proto>
void assert_quiescent_healthy(const Proto& proto, std::uint64_t expected_used) {
  RL_ASSERT(proto.check().empty());
  RL_ASSERT(proto.used() == expected_used);
}

// ---- handover ---------------------------------------------------------------
template <class O>
struct handover_model : rl::test_suite<handover_model<O>, 3> {
  relacy_world world;
  shared_pool<1> pool;
  rl::atomic<int> handoff;  // slot index + 1 that T0 gives T1; 0: none yet

  void before() {
    P::install(world);
    pool.init();
    handoff.store(0, rl::mo_relaxed, $);
  }
  void thread(unsigned me) {
    slot_protocol<P, O> proto(pool.view());
    if (me == 0) {
      // Allocs, writes, and hands the index over (release/acquire: the
      // owner's data writes come AFTER publish, so only the application's
      // own handoff can order them before a foreign free; a relaxed handoff
      // makes Relacy report a race even with the real orders).
      if (auto s = proto.alloc(0, 0)) {
        pool.use_slot(*s, me);
        handoff.store(static_cast<int>(*s) + 1, rl::mo_release, $);
      }
    } else if (me == 1) {
      const int given = handoff.load(rl::mo_acquire, $);
      // Frees T0's slot; may return false if T1 does not yet see it allocated.
      if (given != 0) proto.free(static_cast<std::uint64_t>(given - 1));
      take_and_release(proto, me);
    } else {
      take_and_release(proto, me);
    }
  }
  void take_and_release(slot_protocol<P, O>& proto, unsigned me) {
    if (auto s = proto.alloc(0, 0)) {
      pool.use_slot(*s, me);
      // T2 frees through the checked release a guard uses (its own
      // allocation, by generation); T1 through the plain free.
      if (me == 2) RL_ASSERT(proto.free_if_held(*s, P::self_identity(), proto.generation(*s)));
      else RL_ASSERT(proto.free(*s));
    }
  }
  void after() {
    slot_protocol<P, O> proto(pool.view());
    // Only T0's slot may remain (when T1 looked before T0 handed it over).
    const bool kept = proto.is_allocated(0);
    if (kept) RL_ASSERT(shmpool::detail::identity_of(proto.word(0)) == P::identity_of_thread(0));
    assert_quiescent_healthy(proto, kept ? 1 : 0);
  }
};

// ---- wakeup -----------------------------------------------------------------
template <class O>
struct wakeup_model : rl::test_suite<wakeup_model<O>, 2> {
  relacy_world world;
  shared_pool<1> pool;

  void before() {
    P::install(world);
    pool.init();
  }
  void thread(unsigned me) {
    slot_protocol<P, O> proto(pool.view());
    if (me == 0) {
      const auto s = proto.alloc(-1, 0);
      RL_ASSERT(s.has_value());
      pool.use_slot(*s, me);
      RL_ASSERT(proto.free(*s));
    } else {
      const auto got = proto.alloc_n(1, -1, 0);
      RL_ASSERT(got.has_value() && got->size() == 1);
      pool.use_slot((*got)[0], me);
      RL_ASSERT(proto.free_n(*got) == 1);
    }
  }
  void after() {
    slot_protocol<P, O> proto(pool.view());
    assert_quiescent_healthy(proto, 0);
  }
};

// ---- recovery ---------------------------------------------------------------
template <class O>
struct recovery_model : rl::test_suite<recovery_model<O>, 3> {
  static constexpr int victim_crash_points = 12;   // T0 passes at most ~11 crash points
  static constexpr int recoverer_crash_points = 5;
  relacy_world world;
  shared_pool<2> pool;

  void before() {
    P::install(world);
    pool.init();
    // 0 = survives; k = killed at its k-th crash point.  Chosen per run by
    // Relacy's scheduler, so the search covers every crash site.
    world.crash_budget[0] = static_cast<int>(rl::rand(victim_crash_points + 1));
    world.crash_budget[1] = static_cast<int>(rl::rand(recoverer_crash_points + 1));
  }
  void thread(unsigned me) {
    slot_protocol<P, O> proto(pool.view());
    try {
      if (me == 0) victim(proto, me);
      else if (me == 1) recoverer(proto, me);
      else bystander(proto, me);
    } catch (const process_killed&) {
      P::mark_dead(me);  // the "process" is gone; its slots stay as they were
    }
  }
  void victim(slot_protocol<P, O>& proto, unsigned me) {
    const auto a = proto.alloc(0, 0);
    if (a) pool.use_slot(*a, me);
    const auto batch = proto.alloc_n(1, 0, 0);
    if (batch) pool.use_slot((*batch)[0], me);
    if (a) RL_ASSERT(proto.free(*a));
    if (batch) RL_ASSERT(proto.free_n(*batch) == 1);
  }
  void recoverer(slot_protocol<P, O>& proto, unsigned me) {
    proto.recover_stale();
    if (auto s = proto.alloc(0, 0)) {
      pool.use_slot(*s, me);
      RL_ASSERT(proto.free(*s));
    }
  }
  void bystander(slot_protocol<P, O>& proto, unsigned me) {
    if (auto got = proto.alloc_n(2, 0, 0)) {
      for (auto s : *got) pool.use_slot(s, me);
      RL_ASSERT(proto.free_n(*got) == 2);
    }
  }
  void after() {
    // A fresh survivor (identity of an unused thread slot) recovers once.
    world.acting_identity = P::identity_of_thread(7);
    slot_protocol<P, O> proto(pool.view());
    proto.recover_stale();
    for (unsigned s = 0; s < 2; ++s) RL_ASSERT(proto.word(s) == 0);  // no leaked slot (I4)
    assert_quiescent_healthy(proto, 0);
  }
};

// ---- same process: two threads of one identity, and stats() ---------------------
template <class O>
struct same_process_model : rl::test_suite<same_process_model<O>, 3> {
  relacy_world world;
  shared_pool<1> pool;
  rl::atomic<int> t0_freed_own, t1_freed_t0;

  void before() {
    P::install(world);
    world.process_of[1] = 0;  // T1 is a thread of T0's process
    pool.init();
    t0_freed_own.store(0, rl::mo_relaxed, $);
    t1_freed_t0.store(0, rl::mo_relaxed, $);
  }
  void thread(unsigned me) {
    slot_protocol<P, O> proto(pool.view());
    const std::uint64_t id = P::self_identity();
    if (me == 0) {
      std::uint64_t generation = 0;
      const std::uint64_t s = proto.alloc_index(0, 0, id, &generation);
      if (s == proto.no_slot) return;
      RL_ASSERT(generation != 0);
      // The guard's destructor: frees this allocation only (C1, C2).
      if (proto.free_if_held(s, id, generation)) t0_freed_own.store(1, rl::mo_relaxed, $);
    } else if (me == 1) {
      bool freed = false;  // a few tries: T0 may not have published yet
      for (int k = 0; k < 3 && !freed; ++k) {
        freed = proto.free(0);
        if (!freed) P::cpu_relax();
      }
      if (!freed) return;  // T0 not yet published, or already freed by its guard
      t1_freed_t0.store(1, rl::mo_relaxed, $);
      std::uint64_t generation = 0;
      const std::uint64_t s = proto.alloc_index(0, 0, id, &generation);
      if (s == proto.no_slot) return;  // T0 may have claimed it again?  It claims once only: never
      pool.use_slot(s, me);
      // Held: no other thread may change the word, even for a moment (C1).
      RL_ASSERT(proto.word(s) == shmpool::detail::make_slot_word(shmpool::detail::slot_state::allocated, id));
      RL_ASSERT(proto.is_allocated(s));
      RL_ASSERT(proto.free_if_held(s, id, generation));  // still this allocation (C2)
    } else {
      // Another process reads stats() against both claimants (C3).
      const auto a = proto.monotonic_counters();
      const auto b = proto.monotonic_counters();
      RL_ASSERT(a.frees <= a.allocs && b.frees >= a.frees && b.allocs >= a.allocs);
    }
  }
  void after() {
    slot_protocol<P, O> proto(pool.view());
    // T0 claimed (the pool starts empty and T1 claims only after freeing
    // T0's allocation); its allocation was freed exactly once (C1, C2).
    RL_ASSERT(t0_freed_own.load(rl::mo_relaxed, $) + t1_freed_t0.load(rl::mo_relaxed, $) == 1);
    world.acting_identity = P::identity_of_thread(7);
    const auto c = proto.counters_seen();
    RL_ASSERT(c.allocs - c.frees == proto.used());  // quiescent: exact (C3)
    assert_quiescent_healthy(proto, 0);
  }
};

// ---- stats: a reader against a claimant ----------------------------------------
// T0 claims the slot and keeps it; T1 reads stats() (raising the shared
// frees mark) while T0 claims.  Quiescent afterwards: allocs - frees == used
// (C3: the mark is a lower bound of the frees made, never one ahead).
template <class O>
struct stats_model : rl::test_suite<stats_model<O>, 2> {
  relacy_world world;
  shared_pool<1> pool;

  void before() {
    P::install(world);
    pool.init();
  }
  void thread(unsigned me) {
    slot_protocol<P, O> proto(pool.view());
    if (me == 0) {
      RL_ASSERT(proto.alloc(0, 0).has_value());
    } else {
      const auto a = proto.monotonic_counters();
      const auto b = proto.monotonic_counters();
      RL_ASSERT(a.frees <= a.allocs && b.frees >= a.frees && b.allocs >= a.allocs);
    }
  }
  void after() {
    world.acting_identity = P::identity_of_thread(7);
    slot_protocol<P, O> proto(pool.view());
    const auto c = proto.counters_seen();
    RL_ASSERT(c.allocs == 1 && c.frees == 0 && proto.used() == 1);  // C3
  }
};

// ---- running the models -----------------------------------------------------

struct budget {
  rl::iteration_t handover, wakeup, recovery, same_process, stats;
};


template <class O>
struct model_verdicts {
  bool handover, wakeup, recovery, same_process, stats;
  std::string why_handover, why_wakeup, why_recovery, why_same_process, why_stats;
  bool all_pass() const { return handover && wakeup && recovery && same_process && stats; }
};

template <class O>
model_verdicts<O> run_all(const budget& b) {
  model_verdicts<O> v{};
  v.handover = model_passes<handover_model, O>(b.handover, v.why_handover);
  v.wakeup = model_passes<wakeup_model, O>(b.wakeup, v.why_wakeup);
  v.recovery = model_passes<recovery_model, O>(b.recovery, v.why_recovery);
  v.same_process = model_passes<same_process_model, O>(b.same_process, v.why_same_process);
  v.stats = model_passes<stats_model, O>(b.stats, v.why_stats);
  return v;
}

// One Orders struct per weakening: pool_orders with one member relaxed.
#define SHMPOOL_WEAKEN(member)                                       \
  struct weak_##member : pool_orders {                               \
    static constexpr mo member = mo::relaxed;                        \
  };
SHMPOOL_WEAKEN(claim)
SHMPOOL_WEAKEN(publish)
SHMPOOL_WEAKEN(release)
SHMPOOL_WEAKEN(group_check)
SHMPOOL_WEAKEN(group_clear)
SHMPOOL_WEAKEN(group_mark)
SHMPOOL_WEAKEN(mark_reread)
SHMPOOL_WEAKEN(waiter_check)
SHMPOOL_WEAKEN(waiter_register)
SHMPOOL_WEAKEN(waiter_scan)
SHMPOOL_WEAKEN(wake_bump)
SHMPOOL_WEAKEN(wake_read)
SHMPOOL_WEAKEN(checked_read)
SHMPOOL_WEAKEN(gate_raise)
SHMPOOL_WEAKEN(gate_read)
SHMPOOL_WEAKEN(mark_confirm)
// The release CAS (O3) kept a release, losing only seq_cst: W1 and G rest on it.
struct release_not_seq_cst : pool_orders {
  static constexpr mo release = mo::release;
};
#undef SHMPOOL_WEAKEN

const char* mark_of(bool passed) { return passed ? "pass" : "FAIL"; }

enum class expect { pass, caught, uncatchable };

// expect::uncatchable: a weakening Relacy cannot exhibit (see README, "orders
// Relacy cannot check"); the row fails if it ever IS caught, so the list
// stays true.
template <class O>
bool report_row(const char* name, const budget& b, expect e) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto v = run_all<O>(b);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%-16s handover=%s%s%s wakeup=%s%s%s recovery=%s%s%s same_process=%s%s%s stats=%s%s%s  (%.1fs)\n",
              name, mark_of(v.handover), v.handover ? "" : ":", v.why_handover.c_str(), mark_of(v.wakeup),
              v.wakeup ? "" : ":", v.why_wakeup.c_str(), mark_of(v.recovery), v.recovery ? "" : ":",
              v.why_recovery.c_str(), mark_of(v.same_process), v.same_process ? "" : ":",
              v.why_same_process.c_str(), mark_of(v.stats), v.stats ? "" : ":", v.why_stats.c_str(), secs);
  const bool as_expected = e == expect::caught ? !v.all_pass() : v.all_pass();
  if (!as_expected)
    std::printf("  ^ UNEXPECTED: %s\n", e == expect::pass        ? "the real orders fail a model"
                                       : e == expect::caught      ? "no model catches this weakening"
                                                                  : "now caught: move it to expect::caught");
  std::fflush(stdout);
  return as_expected;
}

budget budget_from(int argc, char** argv) {
  long scale = 1;
  if (const char* env = std::getenv("SHMPOOL_MODEL_LONG"); env != nullptr && *env != '0') scale = 20;
  if (argc > 1) scale = std::strtol(argv[1], nullptr, 10);
  if (scale < 1) scale = 1;
  const auto s = static_cast<rl::iteration_t>(scale);
  // same_process needs the most: a weakened C1 gate shows only where the
  // two threads' store-buffer pair falls inside the checked free's window.
  return {20000 * s, 20000 * s, 40000 * s, 400000 * s, 5000 * s};
}

}  // namespace

int main(int argc, char** argv) {
  const budget b = budget_from(argc, argv);
  std::printf("iterations: handover %llu, wakeup %llu, recovery %llu, same_process %llu (random scheduler)\n",
              static_cast<unsigned long long>(b.handover), static_cast<unsigned long long>(b.wakeup),
              static_cast<unsigned long long>(b.recovery), static_cast<unsigned long long>(b.same_process));
  bool ok = report_row<pool_orders>("real orders", b, expect::pass);
  ok &= report_row<weak_claim>("weak claim", b, expect::caught);
  ok &= report_row<weak_publish>("weak publish", b, expect::uncatchable);
  ok &= report_row<weak_release>("weak release", b, expect::caught);
  ok &= report_row<release_not_seq_cst>("release !seq_cst", b, expect::caught);
  ok &= report_row<weak_group_check>("weak group_chk", b, expect::caught);
  ok &= report_row<weak_group_clear>("weak group_clr", b, expect::caught);
  ok &= report_row<weak_group_mark>("weak group_mark", b, expect::caught);
  ok &= report_row<weak_mark_reread>("weak mark_reread", b, expect::caught);
  ok &= report_row<weak_waiter_check>("weak waiter_check", b, expect::caught);
  ok &= report_row<weak_waiter_register>("weak waiter_reg", b, expect::caught);
  ok &= report_row<weak_waiter_scan>("weak waiter_scan", b, expect::caught);
  ok &= report_row<weak_wake_bump>("weak wake_bump", b, expect::uncatchable);
  ok &= report_row<weak_wake_read>("weak wake_read", b, expect::uncatchable);
  // O11 relaxed: the word read no longer synchronises with the publish it
  // reads, so the allocs read may be stale; Relacy's random scheduler has
  // not shown that outcome in 400,000 x 10 iterations (model/README.md).
  ok &= report_row<weak_checked_read>("weak checked_rd", b, expect::uncatchable);
  ok &= report_row<weak_gate_raise>("weak gate_raise", b, expect::caught);
  ok &= report_row<weak_gate_read>("weak gate_read", b, expect::caught);
  ok &= report_row<weak_mark_confirm>("weak mark_conf", b, expect::uncatchable);
  std::printf("%s\n", ok ? "OK: the real orders pass; every checkable weakening is caught"
                         : "FAILED: see UNEXPECTED lines above");
  return ok ? 0 : 1;
}
