// shmpool::pool and its typed variants: a fixed-size object pool in shared
// memory for Linux.
//
// WHEN TO USE
//   Processes (or threads) that hand each other fixed-size records through
//   shared memory and need explicit alloc/free, blocking when full, and
//   recovery of slots held by processes that died.
//
// DESIGN
//   One mapping per pool: an immutable header, a bitmap (one bit per slot),
//   one 64-bit slot word per slot naming its state and owner, and the data.
//   The claim/release protocol lives in detail/slot_protocol.hpp, with its
//   invariants; core/PROTOCOL.md tells the same story in prose, and
//   core/FORMAT.md lays out the bytes.
//
// GUARANTEES
//   - alloc, try_alloc and free are linearizable; no lock, no system call
//     on the fast path (the futex is touched only when full/waiting).
//     alloc_n is all or nothing, but a batch holds the slots it has claimed
//     until it completes or rolls back: while a batch that will fail is in
//     flight, a concurrent try_alloc/alloc_n may fail although the slots it
//     holds end up free (two batches that together do not fit may both
//     fail; timed and blocking calls retry).  free_n is a sequence of frees
//     in the given order, each linearizable, then one wake-up.
//     model/pool_linearizability_test checks exactly this.
//   - A process killed at any instruction never costs a slot: one
//     recover_stale() by a survivor frees every slot of a dead owner, and
//     owners are identified by pid + start time (PID reuse is harmless).
//   - Bounds come from the handle (validated at open), never from the
//     mapping: a corrupted region yields errors or wrong values, not crashes.
//   - One handle may be used by many threads at once, every member included
//     (the eventfd members too: see "eventfd" below); handles are move-only.
//   - A blocking wait (alloc, alloc_n with or without a timeout) sleeps on a
//     futex and costs no CPU while nothing is freed; an alloc_n that rolls
//     back a partial batch never wakes itself (slot_protocol.hpp, W2).
//
// CONCURRENT DATA ACCESS (per member; the typed atomics are the exception)
//   i64/i32 get/set/cas/... and f64 get/set: one atomic access each.
//   pool::get returns a view into the slot: reading it while another thread
//     or process runs set() on the same slot sees any mix of old and new
//     bytes; pool::set of one slot from two writers at once leaves any
//     byte-wise mix.  Ordering the data of one slot is the application's.
//   str_pool::get/set are NOT atomic as a unit: a get concurrent with a set
//     of the same slot may return a mix (the length of one value with bytes
//     of both), but never more than max_len() bytes and never bytes outside
//     the slot; two concurrent sets may leave such a mix.  Without a
//     concurrent set of that slot, get returns exactly the last value set.
//
// MOVED-FROM HANDLES
//   valid() is false.  Every member that can throw throws
//   shmpool::error(errc::invalid_handle); the noexcept ones return a neutral
//   value (capacity/elem_size/max_len 0, data_ptr nullptr, memfd/fileno -1,
//   path empty; variant() keeps the variant of the type).  Assigning a new
//   pool to it makes it valid again.
//
// ERRORS
//   index >= capacity            std::out_of_range
//   data access to a free slot   std::logic_error
//   NaN timeout, bad eventfd     std::invalid_argument
//   use of a moved-from handle   shmpool::error (errc::invalid_handle)
//   create/open/attach failures  shmpool::error (names the file/fd and why)
//   own identity unknowable      shmpool::error, errc::identity_unavailable, from
//                                every call that writes an owner (alloc*, free*,
//                                recover_stale, release_owner, reset), before it
//                                touches a slot (e.g. /proc/self/stat at the fd limit)
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "shmpool/error.hpp"

namespace shmpool {

using slot_index = std::uint64_t;

// The seed's diagnostic counters, shared by every process using the pool.
// Counters (allocs, frees, waits, timeouts, recoveries) never decrease from
// one stats() call to a later one, in any process: read while operations
// are in flight they may lag, never step back.  Gauges (used, available,
// waiters) go up and down.  Exact when no operation is in flight.
struct pool_stats {
  std::uint64_t capacity = 0;    // slots (immutable)
  std::uint64_t elem_size = 0;   // bytes per slot (immutable)
  std::uint64_t used = 0;        // gauge: slots allocated or being claimed/released
  std::uint64_t available = 0;   // gauge: capacity - used
  std::uint64_t waiters = 0;     // gauge: threads registered asleep in alloc/alloc_n (at most 8;
                                 //   more poll unregistered).  One killed asleep counts until
                                 //   the next recover_stale() or reset()
  std::uint64_t mmap_size = 0;   // bytes mapped
  std::uint64_t allocs = 0;      // counter: allocations published (alloc, each slot of a
                                 //   successful alloc_n); a rolled-back batch counts none
  std::uint64_t frees = 0;       // counter: allocations ended (free, free_n, guards, recovery,
                                 //   reset); frees <= allocs
  std::uint64_t waits = 0;       // counter: alloc/alloc_n calls that had to wait
  std::uint64_t timeouts = 0;    // counter: waits that ended without slots
  std::uint64_t recoveries = 0;  // counter: slots freed by recover_stale
};

enum class pool_variant : std::uint32_t { raw = 1, i64 = 2, i32 = 3, f64 = 4, str = 5 };

namespace detail {
class pool_core;
class pool_base;
}  // namespace detail

// Frees its slot when destroyed, but only the allocation it was given: it
// remembers the allocating process's identity and the slot's generation, and
// frees nothing if the slot was freed meanwhile (by a plain free(), recovery
// or reset) and re-allocated, to this process or another.  It shares
// ownership of the mapping, so it may outlive the handle it came from (a
// moved, move-assigned or destroyed pool handle is fine).
//
// fork: a child inherits a copy of every guard.  The child's copy frees
// nothing (the child is another identity); the parent's copy still frees.
// A child that wants the slot must be handed it explicitly.
class slot_guard {
 public:
  slot_guard() noexcept = default;
  slot_guard(slot_guard&& other) noexcept
      : core_(std::move(other.core_)), index_(other.index_), owner_(other.owner_), generation_(other.generation_) {}
  slot_guard& operator=(slot_guard&& other) noexcept;
  slot_guard(const slot_guard&) = delete;
  slot_guard& operator=(const slot_guard&) = delete;
  ~slot_guard();

  slot_index index() const noexcept { return index_; }
  bool owns_slot() const noexcept { return core_ != nullptr; }
  // The allocation this guard frees: the slot's allocation count at alloc.
  std::uint64_t generation() const noexcept { return generation_; }
  // Gives up ownership without freeing; returns the index.
  slot_index release() noexcept {
    core_.reset();
    return index_;
  }

 private:
  friend class detail::pool_base;
  slot_guard(std::shared_ptr<detail::pool_core> core, slot_index index, std::uint64_t owner,
             std::uint64_t generation) noexcept
      : core_(std::move(core)), index_(index), owner_(owner), generation_(generation) {}
  void free_now() noexcept;
  std::shared_ptr<detail::pool_core> core_;
  slot_index index_ = 0;
  std::uint64_t owner_ = 0;
  std::uint64_t generation_ = 0;
};

namespace detail {

[[noreturn]] void throw_nan_timeout();

// A timeout as the protocol takes it: < 0 waits forever, 0 never waits.
//   d <= 0 (and -inf)        0: try once, never wait
//   +inf, or >= ~285 years   -1: wait until slots are free
//   NaN                      std::invalid_argument (never a cast of NaN)
//   otherwise                d in nanoseconds, at least 1
template <class Rep, class Period>
std::int64_t to_timeout_ns(std::chrono::duration<Rep, Period> d) {
  if constexpr (std::is_floating_point_v<Rep>) {
    if (d.count() != d.count()) throw_nan_timeout();
  }
  if (d <= d.zero()) return 0;
  const auto ns = std::chrono::duration_cast<std::chrono::duration<double, std::nano>>(d).count();
  return ns >= 9.0e18 ? -1 : (ns < 1 ? 1 : static_cast<std::int64_t>(ns));
}

// Everything the variants share.  Not used directly: see pool, i64_pool, ...
class pool_base {
 public:
  pool_base(pool_base&&) noexcept;
  pool_base& operator=(pool_base&&) noexcept;
  pool_base(const pool_base&) = delete;
  pool_base& operator=(const pool_base&) = delete;
  ~pool_base();

  // ---- allocation ----
  std::optional<slot_index> alloc() { return alloc_for_ns(-1); }
  template <class Rep, class Period>
  std::optional<slot_index> alloc(std::chrono::duration<Rep, Period> d) { return alloc_for_ns(to_timeout_ns(d)); }
  std::optional<slot_index> try_alloc() { return alloc_for_ns(0); }
  // The seed's free: frees slot i whoever holds it now (another thread,
  // another process, a later allocation than the caller's); false if it is
  // not allocated.  A stale index therefore frees someone else's slot: use
  // free_if_mine or a guard when that can happen.
  bool free(slot_index i);
  // Frees slot i only if this process (this identity: not a fork parent's)
  // holds it; false otherwise, and nothing changes.
  bool free_if_mine(slot_index i);

  std::optional<std::vector<slot_index>> alloc_n(std::size_t n) { return alloc_n_for_ns(n, -1); }
  template <class Rep, class Period>
  std::optional<std::vector<slot_index>> alloc_n(std::size_t n, std::chrono::duration<Rep, Period> d) {
    return alloc_n_for_ns(n, to_timeout_ns(d));
  }
  std::size_t free_n(std::span<const slot_index> slots);

  // ---- guards ----
  std::optional<slot_guard> alloc_guard() { return guard_of(alloc()); }
  template <class Rep, class Period>
  std::optional<slot_guard> alloc_guard(std::chrono::duration<Rep, Period> d) { return guard_of(alloc(d)); }
  std::optional<slot_guard> try_alloc_guard() { return guard_of(try_alloc()); }

  // ---- handle state ----
  bool valid() const noexcept { return core_ != nullptr; }

  // ---- zero-copy ----
  std::span<std::byte> slot(slot_index i) const;  // range-checked, not allocation-checked
  void* ptr(slot_index i) const { return slot(i).data(); }
  void* data_ptr() const noexcept;  // nullptr when moved from

  // ---- status ----
  bool is_allocated(slot_index i) const;
  std::uint64_t capacity() const noexcept;
  std::uint64_t elem_size() const noexcept;
  std::uint64_t used() const;
  std::uint64_t available() const { return capacity() - used(); }
  pid_t owner(slot_index i) const;  // 0 when free
  std::vector<slot_index> allocated_slots() const;
  template <class F>
  void each_allocated(F&& fn) const {
    for (const slot_index i : allocated_slots()) fn(i);
  }
  pool_stats stats() const;
  pool_variant variant() const noexcept;

  // ---- recovery and health ----
  std::size_t recover_stale();  // frees the slots of owners certainly dead (core/PROTOCOL.md)
  // Frees every slot whose owner is `pid` (of this pid namespace), alive or
  // not, and returns how many: an operator's decision, for slots a process
  // held before it called exec (PROTOCOL.md, "exec").  Never needed otherwise.
  std::size_t release_owner(pid_t pid);
  void reset();
  std::vector<std::string> check() const;

  // ---- backing ----
  const std::optional<std::filesystem::path>& path() const noexcept;
  int memfd() const noexcept;  // -1 unless memfd-backed (or attached by from_fd)
  void sync() const;
  bool unlink() const;

  // ---- eventfd ----
  // The handle's eventfd slot holds nothing, the pool's own eventfd, or the
  // caller's fd; all five members are safe from any number of threads at
  // once, in any order.  notify() and eventfd_consume() hold a shared lock
  // across their use of the fd, and the pool closes its own eventfd only
  // under the exclusive lock, so they never touch an fd number the pool has
  // closed (and the kernel may have reused).
  //   eventfd()         returns the current fd; if none, creates the pool's
  //                     own (non-blocking, CLOEXEC)
  //   eventfd_set(fd)   fd >= 0: use the caller's fd from now on; the pool
  //                     never closes it (keep it open until detached or the
  //                     handle is gone).  The pool's own eventfd, if any, is
  //                     closed.  fd == the current fd changes nothing
  //                     (eventfd_set(fileno()) keeps the pool's own fd, still
  //                     closed by the pool).  fd == -1 detaches (closing the
  //                     pool's own).  fd < -1 or not an open fd:
  //                     std::invalid_argument, nothing changes.
  //   fileno()          the current fd or -1 (another thread may detach it
  //                     right after: use notify/eventfd_consume to be safe)
  //   notify()          adds 1; false if none or the write failed
  //   eventfd_consume() drains and returns the counter (0 if none or empty)
  // The handle's destructor closes the pool's own eventfd, never the caller's.
  int eventfd();
  void eventfd_set(int fd);
  int fileno() const noexcept;
  bool notify() const;
  std::uint64_t eventfd_consume() const;

 protected:
  explicit pool_base(std::unique_ptr<pool_core> core) noexcept;

  // The data of slot i, which must be allocated.  Inline: every get/set and
  // typed atomic goes through it.  Reads only bounds kept in the handle.
  std::byte* data_of_allocated(slot_index i) const {
    if (i >= hot_.capacity) [[unlikely]]
      throw_out_of_range(i);
    // Slot word i is the first of the two 64-bit words of slot meta i; state
    // ALLOCATED is 2 in bits 63..62 (slot_protocol.hpp, checked in pool.cpp).
    if ((hot_.meta[2 * i].load(std::memory_order_acquire) >> 62) != 2) [[unlikely]]
      throw_not_allocated(i);
    return hot_.data + i * hot_.elem_size;
  }
  std::uint64_t max_len_of() const noexcept;

  static std::unique_ptr<pool_core> open_core(const std::filesystem::path& path, pool_variant v,
                                              std::uint64_t capacity, std::uint64_t elem_size, std::uint64_t max_len);
  static std::unique_ptr<pool_core> anonymous_core(pool_variant v, std::uint64_t capacity, std::uint64_t elem_size,
                                                   std::uint64_t max_len);
  static std::unique_ptr<pool_core> memfd_core(std::string_view name, pool_variant v, std::uint64_t capacity,
                                               std::uint64_t elem_size, std::uint64_t max_len);
  static std::unique_ptr<pool_core> fd_core(int fd, pool_variant v);

 private:
  std::optional<slot_index> alloc_for_ns(std::int64_t timeout_ns);
  std::optional<std::vector<slot_index>> alloc_n_for_ns(std::size_t n, std::int64_t timeout_ns);
  std::optional<slot_guard> guard_of(std::optional<slot_index> i);
  pool_core& live() const;  // the core, or shmpool::error(errc::invalid_handle)
  [[noreturn]] void throw_out_of_range(slot_index i) const;
  [[noreturn]] void throw_not_allocated(slot_index i) const;

  struct hot_view {
    std::byte* data = nullptr;
    const std::atomic<std::uint64_t>* meta = nullptr;
    std::uint64_t capacity = 0;
    std::uint64_t elem_size = 0;
  };
  std::shared_ptr<pool_core> core_;  // shared with this handle's guards
  hot_view hot_;
  pool_variant variant_ = pool_variant::raw;  // kept when moved from
};

// alloc_set and friends for a variant whose set() takes V.
template <class Derived, class V>
class alloc_set_mixin {
 public:
  std::optional<slot_index> alloc_set(V v) { return fill(self().alloc(), v); }
  template <class Rep, class Period>
  std::optional<slot_index> alloc_set(V v, std::chrono::duration<Rep, Period> d) { return fill(self().alloc(d), v); }
  std::optional<slot_index> try_alloc_set(V v) { return fill(self().try_alloc(), v); }

 private:
  Derived& self() { return static_cast<Derived&>(*this); }
  std::optional<slot_index> fill(std::optional<slot_index> i, V v) {
    if (i) self().set(*i, v);
    return i;
  }
};

// Integer pools: every data operation is one atomic on the slot.
template <class T, pool_variant Variant>
class integer_pool : public pool_base {
 public:
  T get(slot_index i) const { return ref(i).load(std::memory_order_acquire); }
  void set(slot_index i, T v) { ref(i).store(v, std::memory_order_release); }
  bool cas(slot_index i, T expected, T desired) {
    return ref(i).compare_exchange_strong(expected, desired, std::memory_order_acq_rel, std::memory_order_acquire);
  }
  T cmpxchg(slot_index i, T expected, T desired) {  // returns the old value
    ref(i).compare_exchange_strong(expected, desired, std::memory_order_acq_rel, std::memory_order_acquire);
    return expected;
  }
  T xchg(slot_index i, T v) { return ref(i).exchange(v, std::memory_order_acq_rel); }  // returns the old value
  T add(slot_index i, T delta) {  // returns the new value; wraps like the hardware (no signed-overflow UB)
    using U = std::make_unsigned_t<T>;
    std::atomic_ref<U> u(*reinterpret_cast<U*>(data_of_allocated(i)));
    const U old = u.fetch_add(static_cast<U>(delta), std::memory_order_acq_rel);
    return static_cast<T>(static_cast<U>(old + static_cast<U>(delta)));
  }
  T incr(slot_index i) { return add(i, T{1}); }
  T decr(slot_index i) { return add(i, T{-1}); }

 protected:
  using pool_base::pool_base;

 private:
  std::atomic_ref<T> ref(slot_index i) const { return std::atomic_ref<T>(*reinterpret_cast<T*>(data_of_allocated(i))); }
};

}  // namespace detail

// Raw byte slots of any elem_size.
class pool : public detail::pool_base, public detail::alloc_set_mixin<pool, std::span<const std::byte>> {
 public:
  static pool open(const std::filesystem::path& path, std::uint64_t capacity, std::uint64_t elem_size);
  static pool anonymous(std::uint64_t capacity, std::uint64_t elem_size);
  static pool memfd(std::string_view name, std::uint64_t capacity, std::uint64_t elem_size);
  static pool from_fd(int fd);
  using pool_base::memfd;

  std::span<const std::byte> get(slot_index i) const;        // a view of the slot
  // Copies min(size, elem_size) bytes and zero-fills the rest.  The source
  // may overlap the slot (e.g. a subspan of get(i)); an empty span clears it.
  void set(slot_index i, std::span<const std::byte> bytes);

 private:
  using pool_base::pool_base;
};

class i64_pool : public detail::integer_pool<std::int64_t, pool_variant::i64>,
                 public detail::alloc_set_mixin<i64_pool, std::int64_t> {
 public:
  static i64_pool open(const std::filesystem::path& path, std::uint64_t capacity);
  static i64_pool anonymous(std::uint64_t capacity);
  static i64_pool memfd(std::string_view name, std::uint64_t capacity);
  static i64_pool from_fd(int fd);
  using pool_base::memfd;

 private:
  using integer_pool::integer_pool;
};

class i32_pool : public detail::integer_pool<std::int32_t, pool_variant::i32>,
                 public detail::alloc_set_mixin<i32_pool, std::int32_t> {
 public:
  static i32_pool open(const std::filesystem::path& path, std::uint64_t capacity);
  static i32_pool anonymous(std::uint64_t capacity);
  static i32_pool memfd(std::string_view name, std::uint64_t capacity);
  static i32_pool from_fd(int fd);
  using pool_base::memfd;

 private:
  using integer_pool::integer_pool;
};

class f64_pool : public detail::pool_base, public detail::alloc_set_mixin<f64_pool, double> {
 public:
  static f64_pool open(const std::filesystem::path& path, std::uint64_t capacity);
  static f64_pool anonymous(std::uint64_t capacity);
  static f64_pool memfd(std::string_view name, std::uint64_t capacity);
  static f64_pool from_fd(int fd);
  using pool_base::memfd;

  double get(slot_index i) const;
  void set(slot_index i, double v);

 private:
  using pool_base::pool_base;
};

// Fixed-capacity strings: a slot holds up to max_len bytes.
class str_pool : public detail::pool_base, public detail::alloc_set_mixin<str_pool, std::string_view> {
 public:
  static str_pool open(const std::filesystem::path& path, std::uint64_t capacity, std::uint64_t max_len);
  static str_pool anonymous(std::uint64_t capacity, std::uint64_t max_len);
  static str_pool memfd(std::string_view name, std::uint64_t capacity, std::uint64_t max_len);
  static str_pool from_fd(int fd);
  using pool_base::memfd;

  std::uint64_t max_len() const noexcept { return max_len_of(); }
  std::string get(slot_index i) const;
  // Truncated to max_len(); s may overlap the slot; an empty or
  // default-constructed string_view stores the empty string.
  void set(slot_index i, std::string_view s);

 private:
  using pool_base::pool_base;
};

}  // namespace shmpool
