// The platform seam: everything the pool and registry algorithms touch
// outside plain memory.
//
// The algorithms in <shmpool/detail/*_protocol.hpp> are templates on a
// Platform type `P` and reach shared state only through it:
//
//   P::atomic<T>                      an atomic object that may live in shared memory
//   P::load/store/cas/exchange/fetch_* one atomic access, with an explicit order
//   P::futex_wait(word, expected, timeout_ns) -> false on timeout
//   P::futex_wake(word, count)
//   P::now_ns()                       monotonic clock
//   P::self_identity()                this process's owner identity (never 0; may throw
//                                     shmpool::error identity_unavailable instead)
//   P::certainly_dead(identity)       true only when the owner is provably gone
//   P::crash_point(site)              a place where a process may die (or stop)
//   P::checked_free_gate(slot)        this process's gate for a slot's checked frees
//                                     (slot_protocol C1; process memory, lowered in a fork child)
//   P::image_waiters()                this process image's count of registered waiters (I7)
//   P::cpu_relax()                    spin hint
//
// Implementations:
//   linux_platform   (platform/linux.hpp)  production: std::atomic, futex(2), /proc
//   relacy_platform  (model/relacy_platform.hpp) the Relacy model checker
//
// Crash points are no-ops unless the library is built with
// SHMPOOL_CRASH_POINTS, where the Nth hit (SHMPOOL_CRASH_AT=N) SIGKILLs the
// process; see stress/README.md.
#pragma once

#include <cstdint>

namespace shmpool::platform {

// Memory orders, spelled once so every implementation maps them to its own.
enum class mo : std::uint8_t { relaxed, acquire, release, acq_rel, seq_cst };

// Every numbered place where the sweep may kill a process.  Numbers are
// stable: reports and replay commands refer to them.
enum class crash_site : std::uint16_t {
  alloc_claimed = 1,        // slot word is CLAIMING(me), allocation not yet counted
  // 2 (bit set) retired with the bitmap (format 3).
  alloc_published = 3,      // slot word ALLOCATED(me)
  free_marked = 10,         // format 3's checked free (the CHECKED_FREE_TRANSIENT mutant only): RELEASING(me)
  // 11 (bit cleared) retired with the bitmap (format 3).
  free_done = 12,           // slot word FREE; its group mark not yet checked, waiters not yet woken
  free_group_cleared = 13,  // a freer cleared its group's mark, waiters not yet woken
  alloc_n_partial = 20,     // some of a batch claimed, not all
  alloc_n_rollback = 21,    // rolling a partial batch back
  free_n_partial = 22,      // some of a batch released, wake not yet sent
  recover_freed = 30,       // recovery (or release_owner) freed a dead slot; group not yet checked
  // 31 (recovery's bit cleared) retired with the bitmap (format 3).
  reset_freed = 40,         // reset freed a slot; group not yet checked
  wait_registered = 50,     // waiter counted itself, not yet asleep
  group_marked = 51,        // a scanner stored a tentative mark, not yet re-read and confirmed (G)
  registry_inserted = 60,   // registry: entry written, not yet counted
  registry_decremented = 61,// registry: count dropped, memory not yet freed
  // 62..66 named the root segment of format 1 (temporary, link, sweep, unlink): retired with it.
  registry_anchor_written = 67,      // anchor: memfd holds the record, not yet mapped
  registry_anchor_mapped = 68,       // anchor: page mapped at its candidate, memfd not yet closed
  registry_revived = 69,             // registry: a pending block adopted again, count 1, under L
  // Pool initialisation and open (pool.cpp's factories; PROTOCOL.md "Creation and opening").
  init_temp_created = 70,        // creator: temporary file (unnamed, or named) exists, empty
  init_reserved = 71,            // creator: temporary sized and its space reserved
  init_header_written = 72,      // creator: header written under the init marker, magic not yet final
  init_complete = 73,            // creator: magic written, the pool is complete but not yet published
  init_published = 74,           // creator: the final name links the pool; a named temporary not yet removed
  init_placeholder_locked = 75,  // opener holds an empty placeholder's lock, nothing built yet
  init_temp_named = 76,          // creator: complete pool linked to a temporary name, not yet renamed over the placeholder
  init_discarding = 77,          // creator failed or lost the race: about to discard its temporary
};

}  // namespace shmpool::platform
