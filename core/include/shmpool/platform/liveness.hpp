// Owner identity and liveness: who holds a slot, and is that process gone?
//
// An identity is 62 bits, never 0, and names one process incarnation:
//
//   bits 61..52  pid-namespace tag (10 bits of a hash of /proc/self/ns/pid)
//   bits 51..30  pid (22 bits; Linux caps pids below 2^22)
//   bits 29..0   process start time in clock ticks since boot, low 30 bits,
//                normalised to the initial time namespace (see below)
//
// THE RULE (core/PROTOCOL.md, "Owner identity and liveness")
//   An owner is "certainly dead" only on positive evidence:
//     - kill(pid, 0) fails with ESRCH (no such pid in our namespace), or
//     - /proc/<pid>/stat, read whole and parsed through field 22, shows
//       another start time (the pid was reused: the normalised start times
//       differ by more than one tick), or an exited process (state X, or
//       state Z with no thread left: num_threads <= 1; a leader that called
//       pthread_exit shows Z while its other threads run).
//   Everything else is "maybe alive": a /proc that cannot be read (EMFILE,
//   ENFILE, EACCES, hidepid, not mounted, a short or unparsable read), an
//   identity of another pid namespace, a /proc mounted for another pid
//   namespace than ours.
//
// TIME NAMESPACES
//   /proc/<pid>/stat shows start times shifted by the *reader's* boottime
//   offset (/proc/self/timens_offsets).  Identities store the value minus the
//   recorder's offset, and a reader subtracts its own offset before comparing;
//   both floor to clock ticks, so equal processes may differ by one tick.
//   The reader's namespace can change under it (setns(CLONE_NEWTIME) moves a
//   single-threaded caller), so the offset is cached with the namespace it
//   was read in (its inode number), and every judgement first checks which
//   namespace the calling thread is in now (one readlink): an offset is used
//   only in its own namespace.  When the offset of the current namespace
//   cannot be read (timens_offsets describes the children's namespace after
//   unshare(CLONE_NEWTIME), or reads empty once the leader called
//   pthread_exit), the verdict is "maybe alive".  The own identity needs no
//   refresh: it is normalised, so it names the process in every namespace.
//
// OWN IDENTITY
//   Computed at library load and cached in a page marked MADV_WIPEONFORK: a
//   fork child (however it forked, whatever fork handlers run first) reads 0
//   there and recomputes.  If it cannot be computed (e.g. /proc/self/stat at
//   the fd limit) nothing is cached and self() throws shmpool::error with
//   errc::identity_unavailable, naming the cause; it is never guessed.
//
// Two implementations answer the same questions (one conformance suite,
// core/tests/liveness_test.cpp, runs against both):
//   proc_liveness  the real one, from /proc and kill(2)
//   fake_liveness  an in-process world where tests produce each situation
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>

namespace shmpool::platform {

inline constexpr unsigned identity_tag_bits = 10;
inline constexpr unsigned identity_pid_bits = 22;
inline constexpr unsigned identity_start_bits = 30;
inline constexpr std::uint64_t identity_mask = (std::uint64_t{1} << 62) - 1;
inline constexpr std::uint64_t identity_start_mask = (std::uint64_t{1} << identity_start_bits) - 1;

constexpr std::uint64_t make_identity(std::uint64_t ns_tag, std::uint64_t pid,
                                      std::uint64_t start_ticks) noexcept {
  return ((ns_tag & ((1u << identity_tag_bits) - 1)) << 52) |
         ((pid & ((1u << identity_pid_bits) - 1)) << 30) |
         (start_ticks & identity_start_mask);
}
constexpr pid_t identity_pid(std::uint64_t id) noexcept {
  return static_cast<pid_t>((id >> 30) & ((1u << identity_pid_bits) - 1));
}
constexpr std::uint64_t identity_ns_tag(std::uint64_t id) noexcept {
  return (id >> 52) & ((1u << identity_tag_bits) - 1);
}
constexpr std::uint64_t identity_start(std::uint64_t id) noexcept {
  return id & identity_start_mask;
}

// Two normalised start times name the same process when they differ by at
// most one tick (both sides floor to ticks after shifting by their own
// time-namespace offset), modulo the 30 bits kept.
constexpr bool same_start(std::uint64_t a, std::uint64_t b) noexcept {
  const std::uint64_t d = (a - b) & identity_start_mask;
  return d <= 1 || d == identity_start_mask;
}

// What a liveness oracle can say about an owner.  Only `dead` frees a slot.
enum class verdict : std::uint8_t {
  dead,             // positive evidence the owner is gone
  alive,            // positive evidence the owner runs (stat read, same start time)
  unknown,          // no evidence either way (/proc unreadable, fd limit, ...): maybe alive
  other_namespace,  // recorded in another pid namespace: maybe alive
};
constexpr const char* verdict_name(verdict v) noexcept {
  switch (v) {
    case verdict::dead: return "dead";
    case verdict::alive: return "alive";
    case verdict::unknown: return "unknown";
    case verdict::other_namespace: return "other-ns";
  }
  return "?";
}

// The real liveness oracle.
struct proc_liveness {
  // This process's identity, never 0.  Hot path: one relaxed load.  Throws
  // shmpool::error (errc::identity_unavailable) when it cannot be computed.
  static std::uint64_t self() {
    const std::uint64_t cached = cache_.identity.load(std::memory_order_relaxed);
    if (cached != 0) [[likely]]
      return cached;
    return self_slow();
  }
  // The same, or 0 when it cannot be computed now (nothing is cached then).
  static std::uint64_t try_self() noexcept;

  // What /proc and kill(2) prove about an owner (see THE RULE above).
  static verdict judge(std::uint64_t identity) noexcept;
  static bool certainly_dead(std::uint64_t identity) noexcept { return judge(identity) == verdict::dead; }

  // Identity of a process of this namespace, as it would record it itself
  // (0 when it is gone or cannot be read); tests forge owners with it.
  static std::uint64_t identity_of(pid_t pid) noexcept;

  // Whether the cache page is wiped on fork (false: the fallback, a fork
  // handler registered at load, is in use; see liveness.cpp).
  static bool cache_wiped_on_fork() noexcept;

  // The per-process cache.  One page of its own, zero-initialised: all zeros
  // means "nothing known", which is what a fork child reads.  (The boot-time
  // offset is not here: it is kept with the time namespace it belongs to,
  // which tells a fork child's namespace from its parent's; liveness.cpp.)
  struct alignas(4096) self_cache {
    std::atomic<std::uint64_t> identity{0};     // 0: not computed
    std::atomic<std::uint64_t> ns_tag{0};       // tag | known_bit; 0: not computed
    std::atomic<std::uint32_t> proc_is_ours{0};  // 1 ours, 2 another namespace's; 0 unknown
  };
  static self_cache cache_;

 private:
  static std::uint64_t self_slow();
};

// An in-process world for tests and models: identities are handed out by
// `spawn`, and the situations the conformance suite needs are produced by
// the calls below.  It judges by the same rule as proc_liveness.  Thread-safe.
class fake_liveness {
 public:
  // A running process in pid namespace `ns` (1 is the observer's) whose time
  // namespace has boottime offset `offset_ticks`; returns its identity as it
  // records it itself.
  std::uint64_t spawn(std::uint64_t ns = observer_ns, std::int64_t offset_ticks = 0) {
    std::lock_guard lock(mutex_);
    const std::uint64_t pid = next_pid_++;
    now_ += 5;
    procs_[key(ns, pid)] = process{now_, 1, run_state::running};
    const auto shown = static_cast<std::int64_t>(now_) + offset_ticks;  // its own /proc/self/stat
    return make_identity(ns, pid, static_cast<std::uint64_t>(shown - offset_ticks));  // normalised
  }
  // Gone and reaped (ESRCH).
  void kill(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    procs_.erase(key_of(id));
  }
  // Exited but not reaped: state Z, no thread left.
  void exit_unreaped(std::uint64_t id) { with(id, [](process& p) { p.state = run_state::zombie, p.threads = 1; }); }
  // The leader called pthread_exit; `others` threads still run.
  void leader_exit(std::uint64_t id, unsigned others) {
    with(id, [others](process& p) { p.state = run_state::zombie, p.threads = 1 + others; });
  }
  // The owner is reaped and its pid now names a process started later.
  void reuse_pid(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    now_ += 100;
    procs_[key_of(id)] = process{now_, 1, run_state::running};
  }
  // The observer's environment.
  void set_proc_unmounted(bool v) { set(proc_unmounted_, v); }
  void set_proc_hides_others(bool v) { set(proc_hides_others_, v); }
  void set_fds_exhausted(bool v) { set(fds_exhausted_, v); }
  void set_observer_time_offset(std::int64_t ticks) {
    std::lock_guard lock(mutex_);
    observer_offset_ = ticks;
  }

  verdict judge(std::uint64_t id) const {
    std::lock_guard lock(mutex_);
    if (proc_unmounted_) return verdict::unknown;  // own namespace tag unreadable
    if (identity_ns_tag(id) != observer_ns) return verdict::other_namespace;
    const auto it = procs_.find(key_of(id));
    if (it == procs_.end()) return verdict::dead;  // ESRCH
    if (proc_hides_others_ || fds_exhausted_) return verdict::unknown;
    const process& p = it->second;
    const auto shown = static_cast<std::int64_t>(p.start) + observer_offset_;  // the observer's /proc/<pid>/stat
    if (!same_start(static_cast<std::uint64_t>(shown - observer_offset_), identity_start(id))) return verdict::dead;
    if (p.state == run_state::zombie && p.threads <= 1) return verdict::dead;
    return verdict::alive;
  }
  bool certainly_dead(std::uint64_t id) const { return judge(id) == verdict::dead; }

  static constexpr std::uint64_t observer_ns = 1;

 private:
  enum class run_state { running, zombie };
  struct process {
    std::uint64_t start;  // normalised
    unsigned threads;
    run_state state;
  };
  static std::uint64_t key(std::uint64_t ns, std::uint64_t pid) { return (ns << 32) | pid; }
  static std::uint64_t key_of(std::uint64_t id) {
    return key(identity_ns_tag(id), static_cast<std::uint64_t>(identity_pid(id)));
  }
  template <class F>
  void with(std::uint64_t id, F f) {
    std::lock_guard lock(mutex_);
    const auto it = procs_.find(key_of(id));
    if (it != procs_.end()) f(it->second);
  }
  void set(bool& flag, bool v) {
    std::lock_guard lock(mutex_);
    flag = v;
  }

  mutable std::mutex mutex_;
  std::map<std::uint64_t, process> procs_;
  std::uint64_t next_pid_ = 100;
  std::uint64_t now_ = 1000;
  bool proc_unmounted_ = false;
  bool proc_hides_others_ = false;
  bool fds_exhausted_ = false;
  std::int64_t observer_offset_ = 0;
};

}  // namespace shmpool::platform
