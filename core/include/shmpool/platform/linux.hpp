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
void arm_crash_point(std::uint64_t nth) noexcept;  // 0 disarms; resets the count
std::uint64_t crash_points_hit() noexcept;         // hits since arming
#endif

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

  static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
};

}  // namespace shmpool::platform
