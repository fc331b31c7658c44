// The production platform: std::atomic on the mapping, futex(2), the
// monotonic clock and /proc liveness.  See seam.hpp for the contract.
#pragma once

#include <atomic>
#include <cstdint>

#include "shmpool/platform/liveness.hpp"
#include "shmpool/platform/seam.hpp"

namespace shmpool::platform {

#if defined(SHMPOOL_CRASH_POINTS)
// Crash-point build: counts hits; the Nth raises SIGKILL.  N comes from
// arm_crash_point(N), or from SHMPOOL_CRASH_AT=N at the first hit.
void crash_point_hit(crash_site site) noexcept;
// What the Nth hit does: SIGKILL (the crash sweep), or SIGSTOP to itself
// (the suspension sweep: a stopped process is alive and holds what it
// holds; after SIGCONT it runs on).  SHMPOOL_CRASH_ACTION=stop selects the
// latter where the point comes from SHMPOOL_CRASH_AT.
//
// Two more for the fork and exec sweeps (issue 20, verifier b):
//   park_thread  the hitting thread alone waits at its point (the rest of
//                the process runs on, e.g. another thread forks) until
//                release_parked_thread();
//   exec_self    the process re-executes itself at its point:
//                execve("/proc/self/exe", argv of set_crash_exec_argv) with
//                SHMPOOL_CRASH_EXEC_SITE=<site number> added to its
//                environment (same pid and start time: the same identity).
//                If the exec fails the process is killed instead.
enum class crash_action : std::uint8_t { kill, stop, park_thread, exec_self };
void arm_crash_point(std::uint64_t nth, crash_action action = crash_action::kill) noexcept;  // 0 disarms; resets the count
crash_site last_crash_site() noexcept;              // the site of the most recent hit
std::uint64_t crash_points_hit() noexcept;         // hits since arming
bool crash_point_parked() noexcept;                // park_thread: a thread waits at its point now
void release_parked_thread() noexcept;             // park_thread: lets it run on (no-op if none waits)
void set_crash_exec_argv(char* const* argv) noexcept;  // exec_self: kept by pointer, must outlive the hit
#endif

// This process image's own protocol state, never in a mapping (slot_protocol
// C1 and I7).  One page of its own, wiped in a fork child (MADV_WIPEONFORK,
// or a fork handler where the kernel lacks it): the child is another
// identity, and a gate held by a parent's thread that the child does not
// have must not stand in the child.  exec starts a new image at zero.
struct alignas(4096) process_gates {
  std::atomic<std::uint32_t> checked_frees;  // C1: checked frees of this process in flight
  alignas(64) std::atomic<int> image_waiters;  // I7: this image's registered waiters
};
extern process_gates g_process_gates;

struct linux_platform {
  template <class T>
  using atomic = std::atomic<T>;

  static constexpr std::memory_order to_std(mo o) noexcept {
    switch (o) {
      case mo::relaxed: return std::memory_order_relaxed;
      case mo::acquire: return std::memory_order_acquire;
      case mo::release: return std::memory_order_release;
      case mo::acq_rel: return std::memory_order_acq_rel;
      case mo::seq_cst: break;
    }
    return std::memory_order_seq_cst;
  }
  // The failure order of a CAS may be neither release nor acq_rel.
  static constexpr std::memory_order failure_of(mo o) noexcept {
    return o == mo::release ? std::memory_order_relaxed
           : o == mo::acq_rel ? std::memory_order_acquire
                              : to_std(o);
  }

  template <class T>
  static T load(const atomic<T>& a, mo o) noexcept { return a.load(to_std(o)); }
  template <class T>
  static void store(atomic<T>& a, T v, mo o) noexcept { a.store(v, to_std(o)); }
  template <class T>
  static bool cas(atomic<T>& a, T& expected, T desired, mo o) noexcept {
    return a.compare_exchange_strong(expected, desired, to_std(o), failure_of(o));
  }
  template <class T>
  static T exchange(atomic<T>& a, T v, mo o) noexcept { return a.exchange(v, to_std(o)); }
  template <class T>
  static T fetch_add(atomic<T>& a, T v, mo o) noexcept { return a.fetch_add(v, to_std(o)); }
  template <class T>
  static T fetch_sub(atomic<T>& a, T v, mo o) noexcept { return a.fetch_sub(v, to_std(o)); }
  template <class T>
  static T fetch_or(atomic<T>& a, T v, mo o) noexcept { return a.fetch_or(v, to_std(o)); }
  template <class T>
  static T fetch_and(atomic<T>& a, T v, mo o) noexcept { return a.fetch_and(v, to_std(o)); }

  // Shared (not FUTEX_PRIVATE) futex on a word in the mapping.
  // timeout_ns < 0 waits forever.  Returns false only on timeout.
  static bool futex_wait(atomic<int>& word, int expected, std::int64_t timeout_ns) noexcept;
  static void futex_wake(atomic<int>& word, int count) noexcept;

  static std::int64_t now_ns() noexcept;

  // Never 0: throws shmpool::error (identity_unavailable) instead, before the
  // protocol touches a slot (every operation asks for it first).
  static std::uint64_t self_identity() { return proc_liveness::self(); }
  static bool certainly_dead(std::uint64_t id) noexcept { return proc_liveness::certainly_dead(id); }

  static void crash_point([[maybe_unused]] crash_site site) noexcept {
#if defined(SHMPOOL_CRASH_POINTS)
    crash_point_hit(site);
#endif
  }

  static atomic<std::uint32_t>& checked_free_gate() noexcept { return g_process_gates.checked_frees; }
  static atomic<int>& image_waiters() noexcept { return g_process_gates.image_waiters; }

  static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
};

}  // namespace shmpool::platform
