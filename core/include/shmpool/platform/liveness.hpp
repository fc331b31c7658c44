// Owner identity and liveness: who holds a slot, and is that process gone?
//
// An identity is 62 bits, never 0, and names one process incarnation:
//
//   bits 61..52  pid-namespace tag (10 bits of a hash of /proc/self/ns/pid)
//   bits 51..30  pid (22 bits; Linux caps pids below 2^22)
//   bits 29..0   process start time, clock ticks since boot, low 30 bits
//
// A pid reused by an unrelated process has another start time, so the old
// identity stays dead (PID-reuse-proof).  An identity recorded in another pid
// namespace carries another tag, and `certainly_dead` answers "maybe alive"
// for it: only a process in the owner's namespace may recover its slots.
//
// Two implementations answer the same questions (one conformance suite,
// core/tests/liveness_test.cpp, runs against both):
//   proc_liveness  the real one, from /proc and kill(2)
//   fake_liveness  an in-process table where tests and models kill "processes"
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>

namespace shmpool::platform {

inline constexpr unsigned identity_tag_bits = 10;
inline constexpr unsigned identity_pid_bits = 22;
inline constexpr unsigned identity_start_bits = 30;
inline constexpr std::uint64_t identity_mask = (std::uint64_t{1} << 62) - 1;

constexpr std::uint64_t make_identity(std::uint64_t ns_tag, std::uint64_t pid,
                                      std::uint64_t start_ticks) noexcept {
  return ((ns_tag & ((1u << identity_tag_bits) - 1)) << 52) |
         ((pid & ((1u << identity_pid_bits) - 1)) << 30) |
         (start_ticks & ((1u << identity_start_bits) - 1));
}
constexpr pid_t identity_pid(std::uint64_t id) noexcept {
  return static_cast<pid_t>((id >> 30) & ((1u << identity_pid_bits) - 1));
}
constexpr std::uint64_t identity_ns_tag(std::uint64_t id) noexcept {
  return (id >> 52) & ((1u << identity_tag_bits) - 1);
}
constexpr std::uint64_t identity_start(std::uint64_t id) noexcept {
  return id & ((1u << identity_start_bits) - 1);
}

// The real liveness oracle.
struct proc_liveness {
  // This process's identity.  Cached; recomputed in a fork child (pthread_atfork).
  static std::uint64_t self() noexcept {
    const std::uint64_t cached = cached_identity().load(std::memory_order_relaxed);
    return cached != 0 ? cached : compute_self();
  }
  // True only when the owner is provably gone: no such pid, a zombie, or the
  // pid now names a process with another start time.  False ("maybe alive")
  // when in doubt, including owners from another pid namespace.
  static bool certainly_dead(std::uint64_t identity) noexcept;

  // Identity of any live process of this namespace (0 if it is gone); used
  // by tests that forge owners from reused pids.
  static std::uint64_t identity_of(pid_t pid) noexcept;

 private:
  static std::atomic<std::uint64_t>& cached_identity() noexcept;
  static std::uint64_t compute_self() noexcept;
};

// In-process liveness for models: identities are handed out by `spawn`, and
// `kill` makes one certainly dead.  Thread-safe.
class fake_liveness {
 public:
  std::uint64_t spawn() {
    std::lock_guard lock(mutex_);
    const std::uint64_t id = make_identity(1, next_pid_++, 7);
    return id;
  }
  void kill(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    dead_.insert(id);
  }
  bool certainly_dead(std::uint64_t id) const {
    std::lock_guard lock(mutex_);
    return dead_.count(id) != 0;
  }

 private:
  mutable std::mutex mutex_;
  std::set<std::uint64_t> dead_;
  std::uint64_t next_pid_ = 100;
};

}  // namespace shmpool::platform
