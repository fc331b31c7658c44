/// @file
/// shmpool::pool and its typed variants: a fixed-size object pool in shared
/// memory for Linux.
///
/// Every member's contract (blocking, system calls, exceptions, cost) is
/// on its declaration below; the sections here are the whole picture.
///
/// ~~~{.txt}
/// WHEN TO USE
///   Processes (or threads) that hand each other fixed-size records through
///   shared memory and need explicit alloc/free, blocking when full, and
///   recovery of slots held by processes that died.
///
/// DESIGN
///   One mapping per pool: an immutable header, one 64-bit slot word per
///   slot naming its state and owner (the whole truth: one CAS claims a slot
///   and records its owner, one CAS frees it), a "full" mark per group of
///   64 slots that lets scans skip full groups, and the data.
///   The claim/release protocol lives in detail/slot_protocol.hpp, with its
///   invariants; core/PROTOCOL.md tells the same story in prose, and
///   core/FORMAT.md lays out the bytes.
///
/// GUARANTEES
///   - alloc, try_alloc and free are linearizable; no lock, no system call
///     on the fast path (the futex is touched only when full/waiting).
///     alloc_n is all or nothing, but a batch holds the slots it has claimed
///     until it completes or rolls back: while a batch that will fail is in
///     flight, a concurrent try_alloc/alloc_n may fail although the slots it
///     holds end up free (two batches that together do not fit may both
///     fail; timed and blocking calls retry).  free_n is a sequence of frees
///     in the given order, each linearizable, then one wake-up.
///     model/pool_linearizability_test checks exactly this.
///   - A process killed at any instruction never costs a slot: one
///     recover_stale() by a survivor frees every slot of a dead owner, and
///     owners are identified by pid + start time (PID reuse is harmless).
///   - Bounds come from the handle (validated at open), never from the
///     mapping: a corrupted region yields errors or wrong values, not crashes.
///   - One handle may be used by many threads at once, every member included
///     (the eventfd members too: see "eventfd" below); handles are move-only.
///   - A blocking wait (alloc, alloc_n with or without a timeout) sleeps on a
///     futex and costs no CPU while nothing is freed; an alloc_n that rolls
///     back a partial batch never wakes itself (slot_protocol.hpp, W2).
///
/// CONCURRENT DATA ACCESS (per member; the typed atomics are the exception)
///   i64/i32 get/set/cas/... and f64 get/set: one atomic access each.
///   pool::get returns a view into the slot: reading it while another thread
///     or process runs set() on the same slot sees any mix of old and new
///     bytes; pool::set of one slot from two writers at once leaves any
///     byte-wise mix.  Ordering the data of one slot is the application's.
///   str_pool::get/set are NOT atomic as a unit: a get concurrent with a set
///     of the same slot may return a mix (the length of one value with bytes
///     of both), but never more than max_len() bytes and never bytes outside
///     the slot; two concurrent sets may leave such a mix.  Without a
///     concurrent set of that slot, get returns exactly the last value set.
///
/// MOVED-FROM HANDLES
///   valid() is false.  Every member that can throw throws
///   shmpool::error(errc::invalid_handle); the noexcept ones return a neutral
///   value (capacity/elem_size/max_len 0, data_ptr nullptr, memfd/fileno -1,
///   path empty; variant() keeps the variant of the type).  Assigning a new
///   pool to it makes it valid again.
///
/// ERRORS
///   index >= capacity            std::out_of_range
///   data access to a free slot   std::logic_error
///   NaN timeout, bad eventfd     std::invalid_argument
///   use of a moved-from handle   shmpool::error (errc::invalid_handle)
///   create/open/attach failures  shmpool::error (names the file/fd and why)
///   own identity unknowable      shmpool::error, errc::identity_unavailable, from
///                                every call that writes an owner (alloc*, free*,
///                                recover_stale, release_owner, reset), before it
///                                touches a slot (e.g. /proc/self/stat at the fd limit)
/// ~~~
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

#include "shmpool/detail/slot_protocol.hpp"
#include "shmpool/error.hpp"
#include "shmpool/platform/linux.hpp"

namespace shmpool {

/// The index of a slot: 0 .. capacity() - 1.
using slot_index = std::uint64_t;

/// The seed's diagnostic counters, shared by every process using the pool
/// (returned by stats()).
///
/// Counters (allocs, frees, waits, timeouts, recoveries) never decrease from
/// one stats() call to a later one, in any process: read while operations
/// are in flight they may lag, never step back.  Gauges (used, available,
/// waiters) go up and down.  Exact when no operation is in flight.
struct pool_stats {
  std::uint64_t capacity = 0;    ///< slots (immutable)
  std::uint64_t elem_size = 0;   ///< bytes per slot (immutable)
  std::uint64_t used = 0;        ///< gauge: slots allocated or being claimed/released
  std::uint64_t available = 0;   ///< gauge: capacity - used
  std::uint64_t waiters = 0;     ///< gauge: threads registered asleep in alloc/alloc_n (at most 8;
                                 ///<   more poll unregistered).  One killed asleep counts until
                                 ///<   the next recover_stale() or reset()
  std::uint64_t mmap_size = 0;   ///< bytes mapped
  std::uint64_t allocs = 0;      ///< counter: allocations published (alloc, each slot of a
                                 ///<   successful alloc_n); a rolled-back batch counts none
  std::uint64_t frees = 0;       ///< counter: allocations ended (free, free_n, guards, recovery,
                                 ///<   reset); frees <= allocs
  std::uint64_t waits = 0;       ///< counter: alloc/alloc_n calls that had to wait
  std::uint64_t timeouts = 0;    ///< counter: waits that ended without slots
  std::uint64_t recoveries = 0;  ///< counter: slots freed by recover_stale and release_owner
};

/// What a pool's slots hold, recorded in its header: opening a pool as
/// another variant fails with errc::wrong_variant.
enum class pool_variant : std::uint32_t {
  raw = 1,  ///< bytes of any elem_size (pool)
  i64 = 2,  ///< std::int64_t (i64_pool)
  i32 = 3,  ///< std::int32_t (i32_pool)
  f64 = 4,  ///< double (f64_pool)
  str = 5   ///< a string of up to max_len bytes (str_pool)
};

/// The implementation (not part of the API).
namespace detail {
class pool_core;
class pool_base;
}  // namespace detail

/// Frees its slot when destroyed, but only the allocation it was given.
///
/// It remembers the allocating process's identity and the slot's generation,
/// and frees nothing if the slot was freed meanwhile (by a plain free(),
/// recovery or reset) and re-allocated, to this process or another.  It
/// shares ownership of the mapping, so it may outlive the handle it came
/// from (a moved, move-assigned or destroyed pool handle is fine).
///
/// fork: a child inherits a copy of every guard.  The child's copy frees
/// nothing (the child is another identity); the parent's copy still frees.
/// A child that wants the slot must be handed it explicitly.
///
/// Thread safety: one guard must not be used by two threads at once;
/// different guards (of one pool or not) may.  Obtained from alloc_guard(),
/// try_alloc_guard() or alloc_guard(duration) of any pool variant.
class slot_guard {
 public:
  /// A guard that owns nothing: owns_slot() is false.  Never allocates.
  slot_guard() noexcept = default;
  /// Takes other's slot; other owns nothing afterwards.  No atomic RMW on
  /// the slot, no system call.
  slot_guard(slot_guard&& other) noexcept
      : core_(std::move(other.core_)), index_(other.index_), owner_(other.owner_), generation_(other.generation_) {}
  /// Frees this guard's slot first (as the destructor does), then takes
  /// other's; other owns nothing afterwards.  Never throws.
  slot_guard& operator=(slot_guard&& other) noexcept;
  slot_guard(const slot_guard&) = delete;
  slot_guard& operator=(const slot_guard&) = delete;
  /// Frees the slot if this process (this identity) still holds the very
  /// allocation the guard was given; otherwise changes nothing.  Lock-free:
  /// a few atomic loads and one CAS on the slot word, plus one futex wake
  /// (a system call) when a thread is asleep waiting for a slot.  Never
  /// throws: if this process cannot tell its own identity
  /// (errc::identity_unavailable) the slot stays held, for recover_stale()
  /// to free once its owner is gone.  Drops the guard's share of the
  /// mapping (the last one unmaps it).
  ~slot_guard();

  /// The slot's index; still answers after release().
  slot_index index() const noexcept { return index_; }
  /// Whether the destructor will try to free the slot (false when default
  /// constructed, moved from or released).  Says nothing about whether the
  /// slot is still held: someone else may have freed it with free().
  bool owns_slot() const noexcept { return core_ != nullptr; }
  /// The allocation this guard frees: the slot's allocation count at alloc.
  std::uint64_t generation() const noexcept { return generation_; }
  /// Gives up ownership without freeing; returns the index.  The slot stays
  /// allocated (free it with free() or free_if_mine()).  Drops the guard's
  /// share of the mapping.
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

/// Throws the std::invalid_argument of a NaN timeout (out of line, so that
/// to_timeout_ns stays small).
[[noreturn]] void throw_nan_timeout();

/// A timeout as the protocol takes it: < 0 waits forever, 0 never waits.
///
///     d <= 0 (and -inf)        0: try once, never wait
///     +inf, or >= ~285 years   -1: wait until slots are free
///     NaN                      std::invalid_argument (never a cast of NaN)
///     otherwise                d in nanoseconds, at least 1
/// @throws std::invalid_argument if d is NaN.
template <class Rep, class Period>
std::int64_t to_timeout_ns(std::chrono::duration<Rep, Period> d) {
  if constexpr (std::is_floating_point_v<Rep>) {
    if (d.count() != d.count()) throw_nan_timeout();
  }
  if (d <= d.zero()) return 0;
  const auto ns = std::chrono::duration_cast<std::chrono::duration<double, std::nano>>(d).count();
  return ns >= 9.0e18 ? -1 : (ns < 1 ? 1 : static_cast<std::int64_t>(ns));
}

/// Everything the variants share.  Not used directly: see pool, i64_pool,
/// i32_pool, f64_pool and str_pool, which inherit every member below.
///
/// Thread and process safety: one handle may be used by many threads at
/// once, every member included; any number of processes may use one pool,
/// each through its own handle.  Handles are move-only.
///
/// Errors common to the members (listed again on each):
///   - a moved-from handle: every member that can throw throws
///     shmpool::error with errc::invalid_handle;
///   - an index >= capacity(): std::out_of_range;
///   - a call that writes or judges an owner (alloc*, free_if_mine, guards,
///     recover_stale, release_owner, reset) when this process cannot determine its own
///     identity: shmpool::error with errc::identity_unavailable, before any
///     slot is touched.  The identity is computed once per process (and
///     again in a fork child) from /proc/self/stat, then cached: only that
///     first call makes system calls for it.
class pool_base {
 public:
  /// Takes other's pool; other becomes a moved-from handle (valid() false).
  /// Guards from other stay valid.  Never throws, no system call.
  pool_base(pool_base&&) noexcept;
  /// Drops this handle's pool (as the destructor does) and takes other's;
  /// other becomes a moved-from handle.  Guards of either pool stay valid.
  pool_base& operator=(pool_base&&) noexcept;
  pool_base(const pool_base&) = delete;
  pool_base& operator=(const pool_base&) = delete;
  /// Drops this handle's share of the mapping; once its guards are gone
  /// too, unmaps the pool and closes its memfd and its own eventfd (never a
  /// caller's).  Frees no slot: slots this process holds stay allocated
  /// (recover_stale() in a survivor frees them once the process is gone).
  /// The pool itself (a file, a memfd another process holds) lives on.
  ~pool_base();

  // ---- allocation ----

  /// Claims a free slot and returns its index, waiting as long as it takes.
  ///
  /// Blocks while the pool is full: the thread sleeps on a futex (no CPU)
  /// until a free, a recovery, release_owner or a reset wakes it (beyond 8
  /// waiting threads, the others poll, at most every 10 ms).  Linearizable and lock-free on
  /// the fast path: the slot this handle used last is tried first (one load
  /// and one CAS); else a scan of the slot words that skips groups marked
  /// full (one load per 64 slots of a full pool).  No system call, no
  /// allocation.  Never returns std::nullopt (the type is
  /// that of the timed overload).
  /// @throws shmpool::error errc::invalid_handle (moved-from handle) or
  ///         errc::identity_unavailable.
  [[gnu::always_inline]] std::optional<slot_index> alloc() { return alloc_for_ns(-1); }
  /// As alloc(), waiting at most d: d <= 0 tries once and never waits;
  /// +infinity (or >= ~285 years) waits forever.
  /// @return the slot, or std::nullopt if none became free in time (counted
  ///         in pool_stats::timeouts).
  /// @throws std::invalid_argument if d is a NaN.
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  template <class Rep, class Period>
  std::optional<slot_index> alloc(std::chrono::duration<Rep, Period> d) { return alloc_for_ns(to_timeout_ns(d)); }
  /// Claims a free slot if there is one, never waiting.  No system call,
  /// no allocation, lock-free.  May fail although slots end up free while a
  /// concurrent alloc_n holds slots it will roll back (file comment).
  /// @return the slot, or std::nullopt when the pool is full.
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  [[gnu::always_inline]] std::optional<slot_index> try_alloc() { return alloc_for_ns(0); }
  /// The seed's free: frees slot i whoever holds it now (another thread,
  /// another process, a later allocation than the caller's).  A stale index
  /// therefore frees someone else's slot: use free_if_mine or a guard when
  /// that can happen.
  ///
  /// Lock-free and linearizable: one CAS on the slot word, a load of the
  /// group's mark (and a store when it is set) and of the waiter line; one
  /// futex wake (a system call) only when a thread is asleep in alloc.
  /// Never blocks, never allocates.  Records no owner, so it needs no
  /// identity (it works in a process that cannot determine its own).
  /// @return true if the slot was allocated and is now free; false if it
  ///         was not allocated (nothing changes).
  /// @throws std::out_of_range if i >= capacity().
  /// @throws shmpool::error errc::invalid_handle.
  [[gnu::always_inline]] bool free(slot_index i) {
    // The fast path runs inline (detail::slot_protocol::release_in on the
    // handle's view); a moved-from handle has capacity 0 and throws here.
    if (i >= hot_.view.capacity) [[unlikely]]
      throw_out_of_range(i);
    if (!hot_.inline_fast_path) [[unlikely]]
      return free_out_of_line(i);
    using proto = detail::slot_protocol<platform::linux_platform>;
    const auto r = proto::release_in(hot_.view, i);
    if (r == proto::release_result::released_waiter_seen) [[unlikely]]
      wake_sleepers();
    return r != proto::release_result::not_allocated;
  }
  /// Frees slot i only if this process (this identity: not a fork parent's)
  /// holds it; false otherwise, and nothing changes.  Costs as free().
  /// @throws std::out_of_range if i >= capacity().
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  bool free_if_mine(slot_index i);

  /// Claims n slots, all or none, waiting as long as it takes.
  ///
  /// Blocks (futex sleep, as alloc()) until n slots are free at once.  While
  /// a batch is in flight it holds the slots it has claimed, so concurrent
  /// try_alloc/alloc_n calls may fail meanwhile (file comment, GUARANTEES);
  /// a batch that rolls back never wakes itself.  Allocates the returned
  /// vector; claiming costs one CAS per slot.  n == 0 returns an empty
  /// vector at once.  Never returns std::nullopt.
  /// @throws std::invalid_argument if n > capacity() (it could never succeed).
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  /// @throws std::bad_alloc if the vector cannot be allocated.
  std::optional<std::vector<slot_index>> alloc_n(std::size_t n) { return alloc_n_for_ns(n, -1); }
  /// As alloc_n(n), waiting at most d (d <= 0: try once).
  /// @return the n slots, or std::nullopt if they did not become free in
  ///         time (nothing is held then).
  /// @throws std::invalid_argument if d is a NaN or n > capacity().
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  /// @throws std::bad_alloc if the vector cannot be allocated.
  template <class Rep, class Period>
  std::optional<std::vector<slot_index>> alloc_n(std::size_t n, std::chrono::duration<Rep, Period> d) {
    return alloc_n_for_ns(n, to_timeout_ns(d));
  }
  /// Frees each listed slot as free() does (whoever holds it), in order,
  /// each linearizable, then wakes sleepers once (one futex wake, a system
  /// call, when a thread waits).  Every index is checked first: on a bad one
  /// nothing is freed.  O(slots.size()), no allocation.
  /// @return how many of the slots were allocated and are now free.
  /// @throws std::out_of_range if any index >= capacity().
  /// @throws shmpool::error errc::invalid_handle.
  std::size_t free_n(std::span<const slot_index> slots);

  // ---- guards ----

  /// alloc(), with the slot in a slot_guard that frees it when destroyed.
  /// Blocks as alloc(); never returns std::nullopt.
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  std::optional<slot_guard> alloc_guard() { return guard_for_ns(-1); }
  /// alloc(d), with the slot in a slot_guard.
  /// @return the guard, or std::nullopt on timeout.
  /// @throws std::invalid_argument if d is a NaN.
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  template <class Rep, class Period>
  std::optional<slot_guard> alloc_guard(std::chrono::duration<Rep, Period> d) { return guard_for_ns(to_timeout_ns(d)); }
  /// try_alloc(), with the slot in a slot_guard; never waits.
  /// @return the guard, or std::nullopt when the pool is full.
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  std::optional<slot_guard> try_alloc_guard() { return guard_for_ns(0); }

  // ---- handle state ----

  /// False for a moved-from handle (assigning a pool to it makes it valid
  /// again).  Never throws, one load.
  bool valid() const noexcept { return core_ != nullptr; }

  // ---- zero-copy ----

  /// The bytes of slot i (elem_size() of them) in the shared mapping,
  /// allocated or not: range-checked, not allocation-checked.  The span
  /// stays valid while this handle or one of its guards lives.  Concurrent
  /// access to the bytes is the application's to order (file comment,
  /// CONCURRENT DATA ACCESS).  O(1), no system call.
  /// @throws std::out_of_range if i >= capacity().
  /// @throws shmpool::error errc::invalid_handle.
  std::span<std::byte> slot(slot_index i) const;  // range-checked, not allocation-checked
  /// slot(i).data(): the first byte of slot i.
  /// @throws std::out_of_range if i >= capacity().
  /// @throws shmpool::error errc::invalid_handle.
  void* ptr(slot_index i) const { return slot(i).data(); }
  /// The first byte of slot 0's data (slot i starts i * elem_size() bytes
  /// later); nullptr when moved from.  O(1).
  void* data_ptr() const noexcept;  // nullptr when moved from

  // ---- status ----

  /// Whether slot i is allocated now (a snapshot: one atomic load; slots
  /// being claimed or released read false).
  /// @throws std::out_of_range if i >= capacity().
  /// @throws shmpool::error errc::invalid_handle.
  bool is_allocated(slot_index i) const;
  /// The number of slots (fixed at creation); 0 when moved from.
  std::uint64_t capacity() const noexcept;
  /// Bytes per slot (fixed at creation); 0 when moved from.  For a str_pool
  /// this includes the length word: use max_len().
  std::uint64_t elem_size() const noexcept;
  /// Slots allocated or being claimed/released, counted from the slot
  /// words: O(capacity) atomic loads (one per slot), no lock.  Exact when
  /// no operation is in flight.
  /// @throws shmpool::error errc::invalid_handle.
  std::uint64_t used() const;
  /// capacity() - used(); the same cost and snapshot as used().
  /// @throws shmpool::error errc::invalid_handle.
  std::uint64_t available() const { return capacity() - used(); }
  /// The pid recorded by the process that holds slot i (or is claiming or
  /// releasing it); 0 when the slot is free.  One atomic load; a snapshot.
  /// @throws std::out_of_range if i >= capacity().
  /// @throws shmpool::error errc::invalid_handle.
  pid_t owner(slot_index i) const;  // 0 when free
  /// The indices of the allocated slots, ascending: one atomic load per slot
  /// (O(capacity)), each a snapshot of its own.  Allocates the vector.
  /// @throws shmpool::error errc::invalid_handle.
  /// @throws std::bad_alloc if the vector cannot be allocated.
  std::vector<slot_index> allocated_slots() const;
  /// Calls fn(i) for each index of allocated_slots(), taken before the first
  /// call.  Exceptions of fn propagate.
  /// @throws shmpool::error errc::invalid_handle.
  template <class F>
  void each_allocated(F&& fn) const {
    for (const slot_index i : allocated_slots()) fn(i);
  }
  /// The pool's counters and gauges (pool_stats says what each means and
  /// how exact it is).  O(capacity) atomic loads and, when its count is
  /// ahead of the shared mark, a CAS on that word (so counters never step
  /// back, in any process); no lock, no system call, no allocation.
  /// @throws shmpool::error errc::invalid_handle.
  pool_stats stats() const;
  /// The variant of the handle's type; kept when moved from.  Never throws.
  pool_variant variant() const noexcept;

  // ---- recovery and health ----

  /// Frees the slots of owners certainly dead (core/PROTOCOL.md): an owner
  /// that may be alive, or whose fate cannot be read, keeps its slots.  Also
  /// clears group marks set over free slots (left by a process killed while
  /// scanning or freeing, or by corruption), clears the waiter entries of
  /// dead sleepers, and wakes sleeping allocators even when it freed nothing
  /// (a freer killed before its wake-up).  Never frees a slot this process
  /// holds.
  ///
  /// Safe at any time, from any number of threads and processes, concurrent
  /// with every other operation.  Cost: O(capacity) atomic loads, plus a
  /// liveness check of each other owner of a held slot (/proc and kill(2):
  /// system calls), one CAS per slot freed, and one futex wake when a thread
  /// is registered asleep.  Never blocks.
  /// @return the slots freed (counted in pool_stats::recoveries).
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  std::size_t recover_stale();  // frees the slots of owners certainly dead (core/PROTOCOL.md)
  /// Frees every slot whose owner is `pid` (of this pid namespace), alive or
  /// not, and returns how many: an operator's decision, for slots a process
  /// held before it called exec (PROTOCOL.md, "exec").  Never needed
  /// otherwise.  Counted in pool_stats::recoveries.  O(capacity) atomic
  /// loads, one CAS per slot freed, then one futex wake when a thread is
  /// registered asleep; never blocks.
  /// @throws std::invalid_argument if pid <= 0.
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  std::size_t release_owner(pid_t pid);
  /// Frees every slot, whatever its owner, clears dead sleepers' entries and
  /// wakes sleeping allocators (one futex wake when one is registered).  Meant for exclusive access: a holder
  /// that is still running loses its slot (its free() then returns false
  /// and its data access throws std::logic_error).  A reset killed midway
  /// is finished by recover_stale().  O(capacity), never blocks.
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  void reset();
  /// Every inconsistency found in the mapping: a header that fails
  /// validation or changed since this handle opened it, slot words in
  /// flight or malformed, and group marks that are malformed or set over a
  /// free slot.  Empty when healthy.  Read-only; O(capacity)
  /// loads; exact when no operation is in flight (one in flight may show as
  /// a transient problem).  Allocates the strings.
  /// @throws shmpool::error errc::invalid_handle.
  /// @throws std::bad_alloc when memory runs out.
  std::vector<std::string> check() const;

  // ---- backing ----

  /// The file the pool was opened at (open()); std::nullopt for anonymous,
  /// memfd and from_fd pools and when moved from.  The reference stays valid
  /// while the handle lives.  Never throws.
  const std::optional<std::filesystem::path>& path() const noexcept;
  /// The pool's memfd (memfd() pools; from_fd pools: the handle's own
  /// duplicate of the fd it was given), to hand to another process, which
  /// attaches with from_fd().  -1 for file and anonymous pools and when
  /// moved from.  The handle owns and closes it: dup it to keep it longer.
  int memfd() const noexcept;  // -1 unless memfd-backed (or attached by from_fd)
  /// Writes the whole mapping back to its file: msync(MS_SYNC), a system
  /// call that blocks until the I/O is done.  Needed only for durability of
  /// a file-backed pool across a machine crash.
  /// @throws shmpool::error with the errno of msync (std::system_category()),
  ///         or errc::invalid_handle.
  void sync() const;
  /// Removes the pool's path (unlink(2)); handles that have it mapped keep
  /// working, a later open() of the path creates a new pool.
  /// @return false if the pool has no path or the unlink failed.
  /// @throws shmpool::error errc::invalid_handle.
  bool unlink() const;

  // ---- eventfd ----
  // The handle's eventfd slot holds nothing, the pool's own eventfd, or the
  // caller's fd; all five members are safe from any number of threads at
  // once, in any order.  notify() and eventfd_consume() take a reference to
  // the current fd and use it with no lock held; the pool closes its own
  // eventfd only when its last user lets go, so they never touch an fd
  // number the pool has closed (and the kernel may have reused).  No call
  // waits for another's system call: eventfd_set() returns while other
  // threads loop on notify(), or block in eventfd_consume() on a caller's
  // blocking fd (which then keeps reading the fd it started with).  The eventfd belongs to this
  // handle, in this process; nothing in the pool writes it by itself.
  // The handle's destructor closes the pool's own eventfd, never the caller's.

  /// Returns the current eventfd; if none, creates the pool's own
  /// (eventfd(2), non-blocking, CLOEXEC).
  /// @throws shmpool::error with the errno of eventfd(2), or
  ///         errc::invalid_handle.
  int eventfd();
  /// fd >= 0: use the caller's fd from now on, through a duplicate of it
  /// (the same eventfd: counter and blocking mode); the pool never closes
  /// the caller's number, which fileno() reports, and the caller may close
  /// it whenever it likes (the pool keeps using its duplicate until
  /// detached).  The pool's own
  /// eventfd, if any, is closed.  fd == the current fd changes nothing
  /// (eventfd_set(fileno()) keeps the pool's own fd, still closed by the
  /// pool).  fd == -1 detaches (closing the pool's own once no notify or
  /// consume uses it).  Checks fd with fcntl(F_GETFD).
  /// @throws std::invalid_argument if fd < -1 or not an open fd; nothing
  ///         changes then.
  /// @throws shmpool::error with the errno of fcntl(F_DUPFD_CLOEXEC) (no
  ///         descriptor left), or errc::invalid_handle.
  void eventfd_set(int fd);
  /// The current eventfd or -1 (also when moved from).  Another thread may
  /// detach it right after: use notify/eventfd_consume to be safe.
  int fileno() const noexcept;
  /// Adds 1 to the eventfd's counter (write(2)).
  /// @return false if there is no eventfd or the write failed.
  /// @throws shmpool::error errc::invalid_handle.
  bool notify() const;
  /// Drains the eventfd's counter (read(2)) and
  /// returns it: 0 if there is no eventfd or it is empty.  The pool's own
  /// eventfd never blocks; a caller's fd in blocking mode blocks while its
  /// counter is 0.
  /// @throws shmpool::error errc::invalid_handle.
  std::uint64_t eventfd_consume() const;

 protected:
  /// A handle of the given core (the variants' factories).
  explicit pool_base(std::unique_ptr<pool_core> core) noexcept;

  // The data of slot i, which must be allocated.  Inline: every get/set and
  // typed atomic goes through it.  Reads only bounds kept in the handle.
  std::byte* data_of_allocated(slot_index i) const {
    if (i >= hot_.view.capacity) [[unlikely]]
      throw_out_of_range(i);
    // Acquire: the data read after it is no older than the claim that made
    // the word ALLOCATED (pairs with the publish, O2).
    const std::uint64_t w = hot_.view.meta[i].word.load(std::memory_order_acquire);
    if (detail::state_of(w) != detail::slot_state::allocated) [[unlikely]]
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
  // The slot, or no_slot: the library returns a plain integer and the
  // optional is built here, in the caller, where the optimiser can keep it
  // in registers (an optional returned from the library is assembled on the
  // stack and read back whole: a store-forwarding stall on every alloc).
  static constexpr slot_index no_slot = ~slot_index{0};
  slot_index alloc_index_for_ns(std::int64_t timeout_ns);
  [[gnu::always_inline]] std::optional<slot_index> alloc_for_ns(std::int64_t timeout_ns) {
    // The fast path runs inline: this handle's hint slot, when the hint is
    // this process's (slot_protocol::claim_hint).  Everything else (the
    // first alloc, a fork child's, the scan, the wait) is out of line.
    if (hot_.inline_fast_path) [[likely]] {
      const std::uint64_t me = platform::proc_liveness::self();  // throws identity_unavailable
      if (hint_owner_.load(std::memory_order_relaxed) == me) [[likely]] {
        const std::uint64_t s = hint_slot_.load(std::memory_order_relaxed);
        if (detail::slot_protocol<platform::linux_platform>::claim_hint(hot_.view, s, me)) [[likely]]
          return s;
      }
    }
    const slot_index i = alloc_index_for_ns(timeout_ns);
    if (i == no_slot) return std::nullopt;
    return i;
  }
  bool free_out_of_line(slot_index i);
  void wake_sleepers() const;  // after a free that saw a waiter entry (W1)
  std::optional<std::vector<slot_index>> alloc_n_for_ns(std::size_t n, std::int64_t timeout_ns);
  std::optional<slot_guard> guard_for_ns(std::int64_t timeout_ns);
  pool_core& live() const;  // the core, or shmpool::error(errc::invalid_handle)
  [[noreturn]] void throw_out_of_range(slot_index i) const;
  [[noreturn]] void throw_not_allocated(slot_index i) const;

  struct hot_view {
    std::byte* data = nullptr;
    std::uint64_t elem_size = 0;
    // The fast path's state: the protocol's view of the mapping (slot words
    // and capacity).  A moved-from handle has capacity 0.
    // inline_fast_path is false when the library was built with a seeded
    // defect, crash points or faults, so those builds exercise the
    // library's own copy of the same protocol code.
    detail::pool_view<platform::linux_platform> view{};
    bool inline_fast_path = false;
  };
  std::shared_ptr<pool_core> core_;  // shared with this handle's guards
  hot_view hot_;
  // The slot this handle tries first, and the identity it was chosen for
  // (a fork child recomputes it, so children spread over the pool).  Any
  // value is safe: it is only a place to start looking.
  std::atomic<std::uint64_t> hint_slot_{0};
  std::atomic<std::uint64_t> hint_owner_{0};
  std::uint64_t hint_for(std::uint64_t me, std::uint64_t capacity);
  pool_variant variant_ = pool_variant::raw;  // kept when moved from
};

/// alloc_set and friends for a variant whose set() takes V: an allocation
/// and a set() of its slot, as two steps (another thread of the pool may see
/// the slot allocated before its value is set).
template <class Derived, class V>
class alloc_set_mixin {
 public:
  /// alloc(), then set(slot, v).  Blocks as alloc(); never returns
  /// std::nullopt.
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  [[gnu::always_inline]] std::optional<slot_index> alloc_set(V v) { return fill(self().alloc(), v); }
  /// alloc(d), then set(slot, v) if a slot was claimed.
  /// @return the slot, or std::nullopt on timeout.
  /// @throws std::invalid_argument if d is a NaN.
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  template <class Rep, class Period>
  std::optional<slot_index> alloc_set(V v, std::chrono::duration<Rep, Period> d) { return fill(self().alloc(d), v); }
  /// try_alloc(), then set(slot, v) if a slot was claimed; never waits.
  /// @return the slot, or std::nullopt when the pool is full.
  /// @throws shmpool::error errc::invalid_handle or
  ///         errc::identity_unavailable.
  [[gnu::always_inline]] std::optional<slot_index> try_alloc_set(V v) { return fill(self().try_alloc(), v); }

 private:
  Derived& self() { return static_cast<Derived&>(*this); }
  // Inline with the fast path it wraps: out of line, the optional it returns
  // is built in memory (pool_base's note on no_slot), +29 instructions.
  [[gnu::always_inline]] std::optional<slot_index> fill(std::optional<slot_index> i, V v) {
    if (i) self().set(*i, v);
    return i;
  }
};

/// Integer pools: every data operation is one atomic on the slot.
///
/// Each member below is one lock-free atomic operation on slot i (acquire
/// loads, release stores, acq_rel read-modify-writes), safe from any number
/// of threads and processes at once; no system call, no allocation.  Slot i
/// must be allocated (by anyone) when the call checks it.
/// Each throws std::out_of_range if i >= capacity(), std::logic_error if
/// slot i is not allocated, and shmpool::error (errc::invalid_handle) when
/// the handle was moved from.
template <class T, pool_variant Variant>
class integer_pool : public pool_base {
 public:
  /// The slot's value (an atomic load).
  /// @throws std::out_of_range, std::logic_error, shmpool::error (see the class).
  T get(slot_index i) const { return ref(i).load(std::memory_order_acquire); }
  /// Stores v in the slot (an atomic store).
  /// @throws std::out_of_range, std::logic_error, shmpool::error (see the class).
  void set(slot_index i, T v) { ref(i).store(v, std::memory_order_release); }
  /// Compare-and-swap: stores desired if the slot holds expected.
  /// @return true if it did.
  /// @throws std::out_of_range, std::logic_error, shmpool::error (see the class).
  bool cas(slot_index i, T expected, T desired) {
    return ref(i).compare_exchange_strong(expected, desired, std::memory_order_acq_rel, std::memory_order_acquire);
  }
  /// Compare-and-swap: stores desired if the slot holds expected.
  /// @return the value the slot held (expected when the swap happened).
  /// @throws std::out_of_range, std::logic_error, shmpool::error (see the class).
  T cmpxchg(slot_index i, T expected, T desired) {  // returns the old value
    ref(i).compare_exchange_strong(expected, desired, std::memory_order_acq_rel, std::memory_order_acquire);
    return expected;
  }
  /// Stores v in the slot (an atomic exchange).
  /// @return the value it held.
  /// @throws std::out_of_range, std::logic_error, shmpool::error (see the class).
  T xchg(slot_index i, T v) { return ref(i).exchange(v, std::memory_order_acq_rel); }  // returns the old value
  /// Adds delta to the slot (an atomic fetch-add).
  /// @return the new value; it wraps like the hardware (no signed-overflow UB).
  /// @throws std::out_of_range, std::logic_error, shmpool::error (see the class).
  T add(slot_index i, T delta) {  // returns the new value; wraps like the hardware (no signed-overflow UB)
    using U = std::make_unsigned_t<T>;
    std::atomic_ref<U> u(*reinterpret_cast<U*>(data_of_allocated(i)));
    const U old = u.fetch_add(static_cast<U>(delta), std::memory_order_acq_rel);
    return static_cast<T>(static_cast<U>(old + static_cast<U>(delta)));
  }
  /// add(i, 1): the new value.
  /// @throws std::out_of_range, std::logic_error, shmpool::error (see the class).
  T incr(slot_index i) { return add(i, T{1}); }
  /// add(i, -1): the new value.
  /// @throws std::out_of_range, std::logic_error, shmpool::error (see the class).
  T decr(slot_index i) { return add(i, T{-1}); }

 protected:
  using pool_base::pool_base;

 private:
  std::atomic_ref<T> ref(slot_index i) const { return std::atomic_ref<T>(*reinterpret_cast<T*>(data_of_allocated(i))); }
};

}  // namespace detail

/// Raw byte slots of any elem_size.
///
/// Factories (the same for every variant):
///   - open(path, ...): the pool at a file, created if absent.  Any number
///     of threads and processes may open one path at once: exactly one
///     pool is published there, complete before anyone sees it (built in a
///     temporary file, then linked or renamed into place), and every opener
///     attaches to it.  An opener that finds an empty placeholder file takes
///     an flock on it, and may block while another opener builds the pool.
///   - anonymous(...): an unnamed pool, shared with fork children only.
///   - memfd(name, ...): a pool in a memfd sealed against shrinking and
///     growing; hand memfd() to another process, which calls from_fd().
///   - from_fd(fd): attaches the pool of fd (memfd or file): the handle
///     keeps its own duplicate; the caller keeps and closes fd.
/// Each makes system calls (open, fstat, pread, ftruncate, fallocate,
/// mmap, ...), allocates the handle's state, and maps the whole pool.  A
/// new pool is reserved in full up front, so a full disk or /dev/shm fails
/// here and never as a SIGBUS later.
/// Each throws shmpool::error, whose what() names the path, fd or memfd name:
///   - errc::bad_argument: capacity, elem_size or max_len out of range, a
///     memfd name over 249 bytes or with a NUL, or not a regular file;
///   - errc::exceeds_backing: a new pool larger than RLIMIT_FSIZE, the free
///     space of its filesystem, available memory and swap (memfd, anonymous,
///     tmpfs) or the memory cgroup's limit (nothing is reserved);
///   - open() of an existing pool with another capacity, elem_size or
///     max_len: errc::parameter_mismatch;
///   - an existing pool (open, from_fd) of another variant:
///     errc::wrong_variant; one that fails validation: errc::bad_magic,
///     errc::unsupported_format, errc::truncated, errc::layout_mismatch or
///     errc::corrupt_header;
///   - a failing system call: its errno in std::system_category() (e.g.
///     ELOOP: open() refuses a symbolic link; EBADF: from_fd of a closed fd;
///     EAGAIN: the file at the path kept changing while open() retried).
/// and std::bad_alloc when memory runs out.
class pool : public detail::pool_base, public detail::alloc_set_mixin<pool, std::span<const std::byte>> {
 public:
  /// Opens the pool at path, or creates it with capacity slots of elem_size
  /// bytes (see the class for how, and for the errors).
  /// @throws shmpool::error (see the class), std::bad_alloc.
  static pool open(const std::filesystem::path& path, std::uint64_t capacity, std::uint64_t elem_size);
  /// A new unnamed pool, shared with fork children only.
  /// @throws shmpool::error (see the class), std::bad_alloc.
  static pool anonymous(std::uint64_t capacity, std::uint64_t elem_size);
  /// A new pool in a sealed memfd named name (at most 249 bytes, no NUL).
  /// @throws shmpool::error (see the class), std::bad_alloc.
  static pool memfd(std::string_view name, std::uint64_t capacity, std::uint64_t elem_size);
  /// Attaches the raw pool of fd (duplicated; the caller keeps fd).
  /// @throws shmpool::error (see the class), std::bad_alloc.
  static pool from_fd(int fd);
  using pool_base::memfd;

  /// A view of slot i's elem_size() bytes in the shared mapping (no copy),
  /// valid while this handle or one of its guards lives.  O(1).
  /// Concurrent writers may change the bytes under the view (file comment,
  /// CONCURRENT DATA ACCESS).
  /// @throws std::out_of_range if i >= capacity().
  /// @throws std::logic_error if slot i is not allocated.
  /// @throws shmpool::error errc::invalid_handle.
  std::span<const std::byte> get(slot_index i) const;        // a view of the slot
  /// Copies min(size, elem_size) bytes and zero-fills the rest.  The source
  /// may overlap the slot (e.g. a subspan of get(i)); an empty span clears
  /// it.  O(elem_size()), not atomic; no system call, no allocation.
  /// @throws std::out_of_range if i >= capacity().
  /// @throws std::logic_error if slot i is not allocated.
  /// @throws shmpool::error errc::invalid_handle.
  void set(slot_index i, std::span<const std::byte> bytes);

 private:
  using pool_base::pool_base;
};

/// Slots of one std::int64_t each; get/set and the read-modify-writes are
/// single atomics (detail::integer_pool).  Factories and their errors as
/// pool's.
class i64_pool : public detail::integer_pool<std::int64_t, pool_variant::i64>,
                 public detail::alloc_set_mixin<i64_pool, std::int64_t> {
 public:
  /// Opens the i64 pool at path, or creates it (see pool for how, and for
  /// the errors).
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static i64_pool open(const std::filesystem::path& path, std::uint64_t capacity);
  /// A new unnamed pool, shared with fork children only.
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static i64_pool anonymous(std::uint64_t capacity);
  /// A new pool in a sealed memfd named name (at most 249 bytes, no NUL).
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static i64_pool memfd(std::string_view name, std::uint64_t capacity);
  /// Attaches the i64 pool of fd (duplicated; the caller keeps fd).
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static i64_pool from_fd(int fd);
  using pool_base::memfd;

 private:
  using integer_pool::integer_pool;
};

/// Slots of one std::int32_t each; get/set and the read-modify-writes are
/// single atomics (detail::integer_pool).  Factories and their errors as
/// pool's.
class i32_pool : public detail::integer_pool<std::int32_t, pool_variant::i32>,
                 public detail::alloc_set_mixin<i32_pool, std::int32_t> {
 public:
  /// Opens the i32 pool at path, or creates it (see pool for how, and for
  /// the errors).
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static i32_pool open(const std::filesystem::path& path, std::uint64_t capacity);
  /// A new unnamed pool, shared with fork children only.
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static i32_pool anonymous(std::uint64_t capacity);
  /// A new pool in a sealed memfd named name (at most 249 bytes, no NUL).
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static i32_pool memfd(std::string_view name, std::uint64_t capacity);
  /// Attaches the i32 pool of fd (duplicated; the caller keeps fd).
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static i32_pool from_fd(int fd);
  using pool_base::memfd;

 private:
  using integer_pool::integer_pool;
};

/// Slots of one double each; get and set are single atomics.  Factories and
/// their errors as pool's.
class f64_pool : public detail::pool_base, public detail::alloc_set_mixin<f64_pool, double> {
 public:
  /// Opens the f64 pool at path, or creates it (see pool for how, and for
  /// the errors).
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static f64_pool open(const std::filesystem::path& path, std::uint64_t capacity);
  /// A new unnamed pool, shared with fork children only.
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static f64_pool anonymous(std::uint64_t capacity);
  /// A new pool in a sealed memfd named name (at most 249 bytes, no NUL).
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static f64_pool memfd(std::string_view name, std::uint64_t capacity);
  /// Attaches the f64 pool of fd (duplicated; the caller keeps fd).
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static f64_pool from_fd(int fd);
  using pool_base::memfd;

  /// The slot's value: one atomic load (acquire), lock-free, no system call.
  /// @throws std::out_of_range if i >= capacity().
  /// @throws std::logic_error if slot i is not allocated.
  /// @throws shmpool::error errc::invalid_handle.
  double get(slot_index i) const;
  /// Stores v in the slot: one atomic store (release), lock-free.
  /// @throws std::out_of_range if i >= capacity().
  /// @throws std::logic_error if slot i is not allocated.
  /// @throws shmpool::error errc::invalid_handle.
  void set(slot_index i, double v);

 private:
  using pool_base::pool_base;
};

/// Fixed-capacity strings: a slot holds up to max_len bytes.  get and set
/// are not atomic as a unit (file comment, CONCURRENT DATA ACCESS).
/// Factories and their errors as pool's.
class str_pool : public detail::pool_base, public detail::alloc_set_mixin<str_pool, std::string_view> {
 public:
  /// Opens the str pool at path, or creates it with capacity slots of up to
  /// max_len bytes (see pool for how, and for the errors).
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static str_pool open(const std::filesystem::path& path, std::uint64_t capacity, std::uint64_t max_len);
  /// A new unnamed pool, shared with fork children only.
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static str_pool anonymous(std::uint64_t capacity, std::uint64_t max_len);
  /// A new pool in a sealed memfd named name (at most 249 bytes, no NUL).
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static str_pool memfd(std::string_view name, std::uint64_t capacity, std::uint64_t max_len);
  /// Attaches the str pool of fd (duplicated; the caller keeps fd).
  /// @throws shmpool::error (see pool), std::bad_alloc.
  static str_pool from_fd(int fd);
  using pool_base::memfd;

  /// The most bytes a slot holds (fixed at creation); 0 when moved from.
  std::uint64_t max_len() const noexcept { return max_len_of(); }
  /// A copy of the slot's string: at most max_len() bytes, never bytes
  /// outside the slot.  O(length); allocates the string.
  /// @throws std::out_of_range if i >= capacity().
  /// @throws std::logic_error if slot i is not allocated.
  /// @throws shmpool::error errc::invalid_handle.
  /// @throws std::bad_alloc when memory runs out.
  std::string get(slot_index i) const;
  /// Stores s, truncated to max_len(); s may overlap the slot; an empty or
  /// default-constructed string_view stores the empty string.  O(length),
  /// no allocation, no system call.
  /// @throws std::out_of_range if i >= capacity().
  /// @throws std::logic_error if slot i is not allocated.
  /// @throws shmpool::error errc::invalid_handle.
  void set(slot_index i, std::string_view s);

 private:
  using pool_base::pool_base;
};

}  // namespace shmpool
