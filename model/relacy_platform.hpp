// relacy_platform: the platform seam (core/include/shmpool/platform/seam.hpp)
// built on the Relacy model checker, so that the REAL slot protocol runs
// under Relacy's C++ memory model and scheduler.
//
// Include order matters: the core's headers first (they pull in the standard
// library), then this header (which includes <relacy/relacy.hpp>, a header
// that redefines new/delete/malloc/free/assert).  Keep a Relacy translation
// unit free of gtest and of the core's .cpp files.
//
// Processes are Relacy threads:
//   self_identity()    a distinct identity per Relacy thread (thread i ->
//                      pid 100 + i), or the identity a model installs with
//                      act_as() for code run in before()/after()
//   certainly_dead(id) consults a table of rl::atomic<int> "dead" flags;
//                      a thread marks its own flag (release) when it is killed,
//                      and the oracle reads it (acquire): the kernel's exit
//                      path orders a dead process's writes before its death
//                      is observable, and the flag models exactly that.
//   crash_point(site)  counts down a per-thread budget chosen by the model
//                      (usually with rl::rand, so Relacy explores every
//                      crash site); at zero it throws process_killed, which
//                      the model catches at the top of the thread.
//   now_ns()           a fake clock that advances 1 ms per reading, so
//                      finite timeouts expire after a few polls.
#pragma once

#include <streambuf>

#include <string>

#include <iostream>

#include <cstdlib>

#include <relacy/relacy.hpp>

// relacy.hpp turns these into macros; the protocol has a member named free.
#undef malloc
#undef calloc
#undef realloc
#undef free

// Relacy replaces operator new/delete but not the sized delete that
// std::allocator calls since C++14; route it to Relacy's, or memory Relacy
// handed out would be given to libc's free().
#pragma push_macro("delete")
#undef delete
inline void operator delete(void* p, std::size_t) noexcept { ::operator delete(p); }
inline void operator delete[](void* p, std::size_t) noexcept { ::operator delete[](p); }
#pragma pop_macro("delete")

#include <cstdint>

#include "shmpool/platform/liveness.hpp"
#include "shmpool/platform/seam.hpp"

namespace shmpool::model {

inline constexpr unsigned max_model_threads = 8;

// Thrown at the crash point where a thread's budget runs out.
struct process_killed {};

// Per-iteration state of the simulated machine.  A model owns one as a
// member (its atomics must be built inside the Relacy context) and installs
// it with relacy_platform::install() in before().
struct relacy_world {
  rl::atomic<int> dead[max_model_threads];
  int crash_budget[max_model_threads] = {};  // 0: never crash; k: die at the k-th crash point
  std::int64_t clock_ns = 0;
  std::uint64_t acting_identity = 0;  // nonzero: identity used outside threads
  // Threads model processes; process_of[t] lets two threads share one
  // process (one identity, one set of process gates).  Default: t.
  unsigned process_of[max_model_threads] = {};
  // Each process's own memory (platform/linux.hpp process_gates): the
  // checked-free gate and the image's waiter count.
  rl::atomic<std::uint32_t> checked_free_gate[max_model_threads];
  rl::atomic<int> image_waiters[max_model_threads];
};

struct relacy_platform {
  template <class T>
  using atomic = rl::atomic<T>;
  using mo = platform::mo;

  static relacy_world*& world() noexcept {
    static relacy_world* w = nullptr;
    return w;
  }
  static void install(relacy_world& w) {
    world() = &w;
    for (auto& d : w.dead) d.store(0, rl::mo_relaxed, $);
    for (int& b : w.crash_budget) b = 0;
    w.clock_ns = 0;
    w.acting_identity = 0;
    for (unsigned t = 0; t < max_model_threads; ++t) {
      w.process_of[t] = t;
      w.checked_free_gate[t].store(0, rl::mo_relaxed, $);
      w.image_waiters[t].store(0, rl::mo_relaxed, $);
    }
  }

  static rl::memory_order to_rl(mo o) noexcept {
    switch (o) {
      case mo::relaxed: return rl::mo_relaxed;
      case mo::acquire: return rl::mo_acquire;
      case mo::release: return rl::mo_release;
      case mo::acq_rel: return rl::mo_acq_rel;
      case mo::seq_cst: break;
    }
    return rl::mo_seq_cst;
  }

  template <class T>
  static T load(const atomic<T>& a, mo o) { return a.load(to_rl(o), $); }
  template <class T>
  static void store(atomic<T>& a, T v, mo o) { a.store(v, to_rl(o), $); }
  // Strong CAS; the failure order is derived as linux_platform derives it.
  template <class T>
  static bool cas(atomic<T>& a, T& expected, T desired, mo o) {
    return a.compare_exchange_strong(expected, desired, to_rl(o), $);
  }
  template <class T>
  static T exchange(atomic<T>& a, T v, mo o) { return a.exchange(v, to_rl(o), $); }
  template <class T>
  static T fetch_add(atomic<T>& a, T v, mo o) { return a.fetch_add(v, to_rl(o), $); }
  template <class T>
  static T fetch_sub(atomic<T>& a, T v, mo o) { return a.fetch_sub(v, to_rl(o), $); }
  template <class T>
  static T fetch_or(atomic<T>& a, T v, mo o) { return a.fetch_or(v, to_rl(o), $); }
  template <class T>
  static T fetch_and(atomic<T>& a, T v, mo o) { return a.fetch_and(v, to_rl(o), $); }

  // Relacy's futex rechecks the value, may wake spuriously, and may time out
  // only when given a timeout; a waiter nobody wakes is reported as DEADLOCK.
  static bool futex_wait(atomic<int>& word, int expected, std::int64_t timeout_ns) {
    timespec ts{0, 1};
    const int rc = rl::rl_futex(&word, rl::RL_FUTEX_WAIT, expected, timeout_ns < 0 ? nullptr : &ts, nullptr, 0, $);
    return rc != rl::RL_ETIMEDOUT;
  }
  static void futex_wake(atomic<int>& word, int count) {
    rl::rl_futex(&word, rl::RL_FUTEX_WAKE, count, nullptr, nullptr, 0, $);
  }

  static std::int64_t now_ns() noexcept { return world()->clock_ns += 1'000'000; }

  static std::uint64_t identity_of_thread(unsigned index) noexcept {
    return platform::make_identity(1, 100 + index, 7);
  }
  static std::uint64_t self_identity() noexcept {
    const std::uint64_t acting = world()->acting_identity;
    return acting != 0 ? acting : identity_of_thread(world()->process_of[rl::thread_index()]);
  }
  // The acting process: a thread's, or (outside threads) the acting identity's.
  static unsigned self_process() noexcept {
    const std::uint64_t acting = world()->acting_identity;
    if (acting == 0) return world()->process_of[rl::thread_index()];
    for (unsigned i = 0; i < max_model_threads; ++i)
      if (identity_of_thread(i) == acting) return i;
    return max_model_threads - 1;
  }
  static atomic<std::uint32_t>& checked_free_gate() noexcept {
    return world()->checked_free_gate[self_process()];
  }
  static atomic<int>& image_waiters() noexcept { return world()->image_waiters[self_process()]; }
  static bool certainly_dead(std::uint64_t id) {
    for (unsigned i = 0; i < max_model_threads; ++i)
      if (id == identity_of_thread(i)) return world()->dead[i].load(rl::mo_acquire, $) != 0;
    return false;  // unknown identities: "maybe alive"
  }
  // Called by a model at the top of a thread that caught process_killed.
  static void mark_dead(unsigned index) { world()->dead[index].store(1, rl::mo_release, $); }

  static void crash_point(platform::crash_site) {
    if (world()->acting_identity != 0) return;  // before()/after(): nobody dies
    int& budget = world()->crash_budget[rl::thread_index()];
    if (budget > 0 && --budget == 0) throw process_killed{};
  }

  static void cpu_relax() { rl::yield(1, $); }
};


// ---- running a model (shared by every Relacy binary) -----------------------------------
// Relacy's report goes nowhere unless SHMPOOL_RELACY_VERBOSE is set (a
// stringstream would not do: Relacy replaces the global operator new).
struct discard_buf : std::streambuf {
  int overflow(int c) override { return c; }
};

inline std::ostream& relacy_output() {
  static discard_buf buf;
  static std::ostream sink(&buf);
  const char* verbose = std::getenv("SHMPOOL_RELACY_VERBOSE");
  return verbose != nullptr && *verbose != '0' ? std::cout : sink;
}

// Runs Model<O> for `iterations` random schedules; on failure, `report` says why.
template <template <class> class Model, class O>
bool model_passes(rl::iteration_t iterations, std::string& report) {
  rl::test_params p;
  p.iteration_count = iterations;
  p.search_type = rl::sched_random;
  p.output_stream = &relacy_output();
  p.progress_stream = &relacy_output();
  const bool ok = rl::simulate<Model<O>>(p);
  if (!ok) report = rl::test_result_str(p.test_result);
  return ok;
}

}  // namespace shmpool::model
