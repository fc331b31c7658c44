// The slot protocol: lock-free claim and release of pool slots, owner
// recording, futex waiting, stale recovery.  Production, the Relacy model and
// the crash-point sweep all run this one template (see platform/seam.hpp).
// PROTOCOL.md argues it step by step; this comment is the reference.
//
// SHARED STATE (per pool; layout in format.hpp and core/FORMAT.md)
//   slot word   one 64-bit word per slot: state (bits 63..62) | identity (61..0)
//                 FREE      = 0
//                 CLAIMING  (me)  claimed; allocation not yet counted/published
//                 ALLOCATED (me)  the slot is mine; data may be used
//                 RELEASING (me)  format 3's checked free deciding; never
//                                 written now, still understood (recovery)
//               The slot words are the whole truth: one CAS claims a slot
//               and names its owner, one CAS frees it.
//   group mark  one word per 64 slots, one word per cache line: GROUP_FULL
//               when a scan saw no FREE word in the group and confirmed it,
//               a tentative mark (bit 63 | token) while it re-reads, else 0.  A hint
//               that lets a scan skip full groups (one load per 64 slots
//               when the pool is full); never maintained on the fast path:
//               a scanner sets it, a freer clears it only if it is set.
//   waiter ids  waiter_slots entries: the identity of a thread about to sleep
//               or asleep in alloc, 0 when the entry is free.  A waiter that
//               finds every entry taken does not sleep unbounded: it polls
//               (<= 10 ms), so nothing depends on counting it.
//   wake_seq    futex word; bumped by every free that sees a waiter entry
//   allocs      per slot (slot meta word 2): how many times the slot was
//               published ALLOCATED; monotonic, and the slot's generation
//   frees mark  the highest lower bound of frees any stats() computed
//   mark_seq    tokens of tentative marks (G)
//   process gates (this process's memory, not the mapping): checked-free
//               gates (C1) and the image's waiter count (I7)
//
// TRANSITIONS (the only writers of a slot word)
//   alloc:   FREE -CAS-> CLAIMING(me); count; store ALLOCATED(me)
//   alloc_n: claims each slot as above but publishes ALLOCATED only once all
//            n are CLAIMING(me); a short batch is unclaimed (CAS to FREE)
//   free:    ALLOCATED(x) -CAS-> FREE; clear the group mark if set; wake
//   free_if_held(owner, gen): owner == me, gate raised, ALLOCATED(owner) and
//            (gen != 0) allocs == gen read: -CAS-> FREE as free; the word is
//            never written otherwise (C1)
//   recover: W(dead) -CAS-> FREE; as free (W is any non-free word whose
//            identity is certainly dead)
//   reset:   W -CAS-> FREE  (any owner)
//   release_owner(pid): as reset, for the words naming pid (an operator's
//            decision: the owner may be alive, e.g. after exec)
//   Every transition to FREE is one seq_cst CAS (O3), followed by the group
//   check (O4/O5) and the waiter read (O8), in that order.
//
// GROUP MARKS (G; PROTOCOL.md "Group marks")
//   A scanner that covered a whole group and found no FREE and no RELEASING
//   word stores a tentative mark with a token of its own (O6), re-reads the
//   group (O7), and confirms: token -CAS-> GROUP_FULL (O17); if the re-read
//   finds a FREE or RELEASING word it stores 0 back and wakes waiters.
//   Scans skip only GROUP_FULL.
//   G1  after every freer's group check has finished, a group marked
//       GROUP_FULL has no FREE word.  A freer killed between its CAS and its
//       group check leaves a stale mark: recover_stale() clears every mark
//       whose group has a FREE word, and check() reports one.
//   P1  a process stopped anywhere delays at most its own operation
//       (PROTOCOL.md "Progress"): a stopped scanner leaves a tentative mark.
//   Any value but 0 and GROUP_FULL is corruption: scanned as 0, repaired by
//   recover_stale().
//
// INVARIANTS
//   I3  a slot word is changed only by the identity it names, except
//       FREE -> CLAIMING (anyone, by CAS), ALLOCATED(x) -> FREE (free of
//       another's slot, by CAS) and W(dead) -> FREE (recovery, by CAS).
//       Hence no two live processes ever own one slot.  (reset and
//       release_owner break it on purpose, at an operator's request.)
//       Every operation that writes an owner asks P::self_identity() first;
//       it is never 0 (it throws instead), so no word ever names nobody.
//   I4  every non-FREE slot word names an identity; recovery frees exactly the
//       words whose identity is certainly dead, so after one recover_stale()
//       by a survivor every slot is FREE or names a live process.
//   I5  used() counts the non-FREE words; with no operation in flight it is
//       the number of ALLOCATED words (check() reports every other state).
//   I6  allocs of a slot changes only while its word is CLAIMING(me), by +1,
//       just before the publish: it never decreases, and a slot holds at most
//       one counted allocation not yet freed: none when its word is FREE or
//       CLAIMING (but for the step between the count and the publish), one
//       when ALLOCATED or RELEASING.  Hence allocs - (word is ALLOCATED or
//       RELEASING) is the slot's frees, ahead by one only inside that step.
//   I7  a waiter entry names a thread's process; it is set (0 -CAS-> me) by
//       that thread and cleared by it (CAS), by recovery when the identity is
//       certainly dead (or no identity), by recovery in its own process when
//       no thread of this image waits (left before exec), and by
//       release_owner/reset, which then wake every sleeper to re-register.
//   C1  a checked free that frees nothing never writes the word; a claimant
//       of this process that finds its gate raised gives its slot back.
//   C2  a claim returns the generation it counted; a guard carries it.
//   C3  stats() counts CLAIMING as not yet freed: frees is never ahead.
//   W1  no lost wake-up: a freer's CAS to FREE (O3, seq_cst) precedes its
//       reads of the waiter entries (O8, seq_cst); a waiter registers in an
//       entry (O9, seq_cst CAS) and then scans marks and words (O10,
//       seq_cst).  Either the freer sees the waiter and bumps wake_seq, or
//       the waiter's scan comes after the CAS and sees the FREE word -- or a
//       mark, which (G) is cleared by that freer before its waiter read, or
//       set by a scanner whose re-read sees the FREE word and wakes.  A
//       RELEASING word is "in flux": the waiter polls with a short timeout
//       instead of sleeping.
//   W2  a waiter never wakes itself: an alloc_n that rolls back a partial
//       batch wakes only other waiters, and if its own bump was the only
//       change to wake_seq since it read it, it sleeps on the bumped value.
//       A batch also claims nothing unless its scan counted n FREE words, so
//       two batches that cannot both fit do not wake each other forever.
//
// CRASH WINDOWS (a process may die between any two steps; crash_site names them)
//   after CLAIMING(me)        word names me: recovery frees it when I am dead
//   after ALLOCATED(me)       same
//   after FREE, mark not yet cleared / waiters not yet woken
//                             a stale mark or a sleeper behind a free slot:
//                             recover_stale() clears marks over FREE words and
//                             always wakes waiters, so a survivor's recovery
//                             closes it (stress.sweep_wakeup_after_killed_freer)
//   after RELEASING(me)       (format 3's checked free) recovery frees it
//   after a tentative mark, before the confirm   hides nothing; recovery clears it
//   asleep, registered        the waiter entry names a dead identity: frees
//                             make a wake syscall nobody needs until a
//                             recover_stale() or reset() clears it (I7).
// There is no window where a slot is taken but names nobody (the seed's
// bit-then-owner order has one; SHMPOOL_MUTANT_OWNER_AFTER_CLAIM reopens it).
//
// COST  alloc+free on the fast path: two locked read-modify-writes (the
// claim CAS and the release CAS), two plain stores (count, publish) and
// loads of lines the process already holds (the hint slot, its group mark,
// the waiter line).  PROTOCOL.md "The fast path" has the figures.
#pragma once

#include <bit>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shmpool/platform/liveness.hpp"
#include "shmpool/platform/seam.hpp"

namespace shmpool::detail {

using platform::crash_site;
using platform::mo;

enum class slot_state : std::uint64_t { free = 0, claiming = 1, allocated = 2, releasing = 3 };

constexpr std::uint64_t make_slot_word(slot_state s, std::uint64_t identity) noexcept {
  return (static_cast<std::uint64_t>(s) << 62) | (identity & platform::identity_mask);
}
constexpr slot_state state_of(std::uint64_t word) noexcept {
  return static_cast<slot_state>(word >> 62);
}
constexpr std::uint64_t identity_of(std::uint64_t word) noexcept {
  return word & platform::identity_mask;
}

// The memory order of every ordering point, by what it orders.  A model test
// instantiates the protocol with one of them weakened and must fail; a
// mutant build (SHMPOOL_MUTANT_WEAK_*) weakens one in the library itself.
struct pool_orders {
#if defined(SHMPOOL_MUTANT_WEAK_CLAIM)
  static constexpr mo claim = mo::relaxed;
#else
  // seq_cst, not just acquire: O1 is one side of C1's store-buffer pair
  // (the claim CAS, then the gate read, against the checked free's gate
  // raise, then its word read).  On x86 the same locked instruction.
  static constexpr mo claim = mo::seq_cst;        // O1 claim CAS; pairs with O3
#endif
  // O2 orders no data for the application: an owner writes its data after
  // O1, and a freer's writes reach the next claimer through O3/O1.  It is a
  // release for one reader: a checked free (O11) that reads the slot's
  // allocs after its CAS must see the increment made before O2.
  static constexpr mo publish = mo::release;      // O2 ALLOCATED store; pairs with O11
#if defined(SHMPOOL_MUTANT_WEAK_RELEASE_FENCE)
  static constexpr mo release = mo::release;
#elif defined(SHMPOOL_MUTANT_RELAXED_RELEASE)
  static constexpr mo release = mo::relaxed;
#else
  static constexpr mo release = mo::seq_cst;      // O3 every CAS to FREE: data to the next
                                                  //    claimer (release), W1 and G (seq_cst)
#endif
  static constexpr mo group_check = mo::seq_cst;  // O4 freer reads the group mark after O3 (G)
  static constexpr mo group_clear = mo::seq_cst;  // O5 mark cleared (freer, undoing scanner)
  static constexpr mo group_mark = mo::seq_cst;   // O6 scanner marks a group full (G)
  static constexpr mo mark_reread = mo::seq_cst;  // O7 scanner re-reads the group after O6
  static constexpr mo waiter_check = mo::seq_cst; // O8 W1, freer reads waiters
  static constexpr mo waiter_register = mo::seq_cst;  // O9 W1, waiter side
  static constexpr mo waiter_scan = mo::seq_cst;  // O10 W1, waiter's re-scan
  static constexpr mo wake_bump = mo::release;    // O12 wake_seq bump; pairs with O13
  static constexpr mo wake_read = mo::acquire;    // O13 waiter reads wake_seq
  static constexpr mo checked_read = mo::seq_cst; // O11 checked free reads the word after raising
                                                  //     its gate (C1); acquire pairs with O2
  static constexpr mo gate_raise = mo::seq_cst;   // O14 checked free raises its gate (C1)
  static constexpr mo gate_read = mo::seq_cst;    // O15 claimant reads the gate after O1 (C1)
  static constexpr mo gate_lower = mo::release;   // O16 checked free lowers its gate
  static constexpr mo mark_confirm = mo::seq_cst; // O17 scanner's MARKING -CAS-> GROUP_FULL (G)
};

template <class P>
struct slot_meta {
  typename P::template atomic<std::uint64_t> word;    // state | identity
  typename P::template atomic<std::uint64_t> allocs;  // times claimed; written by the claimant only
};

// A group's mark: 0 or group_full (G).  One per cache line, so marking one
// group never disturbs the scans of another.
inline constexpr std::uint64_t group_full = 1;
// A tentative mark: a scanner's claim to mark the group, with a token
// unique to that attempt (pool_control::mark_seq).  Scanned as unmarked, so
// a scanner stopped before it confirms hides nothing (progress rule P1).
inline constexpr std::uint64_t group_marking = std::uint64_t{1} << 63;
constexpr bool is_tentative_mark(std::uint64_t m) noexcept { return (m & group_marking) != 0; }
inline constexpr std::uint64_t group_slots = 64;

template <class P>
struct alignas(64) group_word {
  typename P::template atomic<std::uint64_t> mark;
};

// Waiter entries: one cache line, so a freer reads them all with one miss.
inline constexpr unsigned waiter_slots = 8;

template <class P>
struct pool_control {
  alignas(64) typename P::template atomic<std::uint64_t> waiter[waiter_slots];  // I7: identity or 0
  alignas(64) typename P::template atomic<int> wake_seq;
  // I7: entry k's revocations; whoever clears another thread's entry bumps
  // it first, so a waiter tells its own registration from a later one of a
  // thread of the same process (the same identity).  In the line's padding,
  // which format 3 zero-fills.
  typename P::template atomic<std::uint32_t> entry_revokes[waiter_slots];
  alignas(64) typename P::template atomic<std::uint64_t> waits;
  typename P::template atomic<std::uint64_t> timeouts;
  typename P::template atomic<std::uint64_t> recoveries;
  typename P::template atomic<std::uint64_t> frees_mark;  // raised by stats() only (CAS-max)
  // Tokens of tentative marks (G): one fetch_add per marking attempt.  In
  // the line's padding, which format 3 zero-fills, so a format-3 file reads
  // 0 here and any value is valid.
  typename P::template atomic<std::uint64_t> mark_seq;
};

// Where the shared state is, as bounds the handle validated at open.
template <class P>
struct pool_view {
  group_word<P>* groups = nullptr;  // group_count(capacity) entries
  slot_meta<P>* meta = nullptr;     // capacity entries
  pool_control<P>* control = nullptr;
  std::uint64_t capacity = 0;
};

constexpr std::uint64_t group_count(std::uint64_t capacity) noexcept {
  return (capacity + group_slots - 1) / group_slots;
}

enum class claim_outcome { claimed, full, in_flux };

// What a waiting caller knows about itself (W2): its waiter entry (-1: none,
// or not waiting) and the wake_seq value it will sleep on.
struct waiter_ctx {
  int entry = -1;
  int seq = 0;
  std::uint32_t revokes = 0;  // the entry's revocations when this thread took it (I7)
};

template <class P, class O = pool_orders>
class slot_protocol {
 public:
  explicit slot_protocol(pool_view<P> v) noexcept : v_(v), groups_(group_count(v.capacity)) {}

  std::uint64_t capacity() const noexcept { return v_.capacity; }
  const pool_view<P>& view() const noexcept { return v_; }
  std::uint64_t groups() const noexcept { return groups_; }

  // ---- alloc ---------------------------------------------------------------
  // Claims one slot.  timeout_ns < 0 waits forever, 0 never waits.  `start`
  // is the caller's hint: the slot to try first (the one it used last).
  std::optional<std::uint64_t> alloc(std::int64_t timeout_ns, std::uint64_t start) {
    const std::uint64_t slot = alloc_index(timeout_ns, start, P::self_identity());
    return slot == no_slot ? std::nullopt : std::optional<std::uint64_t>(slot);
  }
  // The same, returning no_slot instead of an empty optional: the hot path
  // builds no optional in memory (GCC 12 assembles one on the stack and
  // reads it back whole, a store-forwarding stall that cost more than both
  // CASes together).
  // `me` is P::self_identity(), read once by the caller.
  // `generation`, when given, receives the claim's generation (the slot's
  // allocs as this claim counted it, I6): what a guard must carry (C2).
  std::uint64_t alloc_index(std::int64_t timeout_ns, std::uint64_t start, std::uint64_t me,
                            std::uint64_t* generation = nullptr) {
    if (claim_hint(v_, start, me, generation)) [[likely]]
      return start;
    return alloc_scan(timeout_ns, start, generation);
  }

  // ---- the fast path, on a view alone --------------------------------------
  // Static so that a handle can run it inline (pool.hpp) on the view it
  // keeps: the same code as the members below, with no call around the
  // locked instructions (a call's stores before a locked instruction, and
  // its return after one, cost more than the instruction itself).

  // The hint slot s: one CAS (O1), then the count and publish; `generation`
  // (when given) receives the claim's generation (C2).
  [[gnu::always_inline]] static bool claim_hint(const pool_view<P>& v, std::uint64_t s, std::uint64_t me,
                                                std::uint64_t* generation = nullptr) {
    // No load before the CAS: the hint is the slot this handle used last,
    // usually free, and a load right before a locked instruction only
    // delays it (a failed CAS costs what the load would have saved).
    return s < v.capacity && try_claim_in(v, s, me, /*publish=*/true, generation);
  }
  // free(s) up to its waiter read: ALLOCATED(x) -CAS-> FREE (O3), the group
  // check (O4/O5), the waiter entries (O8).  The caller wakes (wake()) when
  // it returns released_waiter_seen.
  enum class release_result { not_allocated, released, released_waiter_seen };
  [[gnu::always_inline]] static release_result release_in(const pool_view<P>& v, std::uint64_t s) {
    if (!release_word(v, s)) return release_result::not_allocated;
    return waiter_seen(v, -1) ? release_result::released_waiter_seen : release_result::released;
  }
  // Bumps wake_seq (O12) and wakes every sleeper; returns the value before the bump.
  static int wake(const pool_view<P>& v) {
    const int before = P::fetch_add(v.control->wake_seq, 1, O::wake_bump);  // O12
    P::futex_wake(v.control->wake_seq, INT_MAX);
    return before;
  }
  static constexpr std::uint64_t no_slot = ~std::uint64_t{0};

  // Out of line, so the fast path above needs few registers and no frame.
  [[gnu::noinline]] std::uint64_t alloc_scan(std::int64_t timeout_ns, std::uint64_t start,
                                             std::uint64_t* generation = nullptr) {
    claimed_slot got;
    if (claim_one(start, mo::acquire, got) != claim_outcome::claimed) {
      if (timeout_ns == 0) return no_slot;
      if (!wait_until_claimed(timeout_ns, [&](mo scan, waiter_ctx&) { return claim_one(start, scan, got); }))
        return no_slot;
    }
    if (generation != nullptr) *generation = got.generation;
    return got.slot;
  }

  // Claims n slots or none.  n must be 1..capacity (the handle checks).
  std::optional<std::vector<std::uint64_t>> alloc_n(std::size_t n, std::int64_t timeout_ns,
                                                    std::uint64_t start) {
    std::vector<std::uint64_t> got;
    got.reserve(n);
    auto attempt = [&](mo scan, waiter_ctx& self) { return claim_batch(n, start, scan, got, self); };
    waiter_ctx not_waiting;
    if (attempt(mo::acquire, not_waiting) == claim_outcome::claimed) return got;
    if (timeout_ns == 0 || !wait_until_claimed(timeout_ns, attempt)) return std::nullopt;
    return got;
  }

  // ---- free ----------------------------------------------------------------
  // The seed's free: frees the slot whoever holds it.  Names no owner, so it
  // needs no identity.
  bool free(std::uint64_t slot) {
    const release_result r = release_in(v_, slot);
    if (r == release_result::released_waiter_seen) wake(v_);
    return r != release_result::not_allocated;
  }

  // Frees slot s only if it is ALLOCATED(owner), owner is this process, and
  // (generation != 0) the slot's allocs equals generation: the allocation a
  // guard or a checked free was given, and no later one.
  //
  // C1 (the checked free changes the word only to free it): the word cannot
  // carry the generation, so between reading "ALLOCATED(me), generation g"
  // and the CAS, a plain free and a re-claim by THIS process (the only one
  // that can write ALLOCATED(me)) would make the CAS free a later
  // allocation.  The gate closes that window without touching the word:
  //   checked free: raise gate (O14) ; read word (O11), allocs ; CAS ; lower (O16)
  //   claimant:     claim CAS (O1) ; read gate (O15) ; count ; publish
  //                 (gate raised: CLAIMING(me) -CAS-> FREE, look elsewhere)
  // All four of O14, O11, O1, O15 are seq_cst: either the claimant reads the
  // raised gate and gives the slot back (the CAS sees CLAIMING or FREE and
  // fails), or its claim precedes the word read, which then sees CLAIMING,
  // or ALLOCATED(me) with allocs > g (acquire of O2).  Nobody ever waits for
  // the gate: a signal handler that allocates while its own thread is in
  // here, or a real-time thread above a preempted one, would wait forever.
  // The gate is this process's own memory (P::checked_free_gate): another
  // process never waits on it, and a fork child starts with it lowered.
  bool free_if_held(std::uint64_t s, std::uint64_t owner, std::uint64_t generation) {
    if (P::self_identity() != owner) return false;  // e.g. a guard copied into a fork child
    const std::uint64_t held = make_slot_word(slot_state::allocated, owner);
    auto& gate = P::checked_free_gate();
#if defined(SHMPOOL_MUTANT_CHECKED_FREE_TRANSIENT)
    (void)gate;
    // Defect (the design before C1): mark RELEASING(me), re-check, restore
    // with a plain store: the word changes although nothing is freed.
    std::uint64_t cur = P::load(v_.meta[s].word, mo::acquire);
    if (cur != held) return false;
    if (generation != 0 && P::load(v_.meta[s].allocs, mo::acquire) != generation) return false;
    const std::uint64_t deciding = make_slot_word(slot_state::releasing, owner);
    if (!P::cas(v_.meta[s].word, cur, deciding, mo::acquire)) return false;
    if (generation != 0 && P::load(v_.meta[s].allocs, mo::relaxed) != generation) {
      P::store(v_.meta[s].word, held, mo::relaxed);
      return false;
    }
    P::crash_point(crash_site::free_marked);
    std::uint64_t expected = deciding;
    if (!P::cas(v_.meta[s].word, expected, std::uint64_t{0}, O::release)) return false;
    const bool freed = true;
#else
    P::fetch_add(gate, std::uint32_t{1}, O::gate_raise);  // O14
    std::uint64_t cur = P::load(v_.meta[s].word, O::checked_read);  // O11
    const bool freed = cur == held &&
                       (generation == 0 || P::load(v_.meta[s].allocs, mo::acquire) == generation) &&
                       P::cas(v_.meta[s].word, cur, std::uint64_t{0}, O::release);  // O3
    P::fetch_sub(gate, std::uint32_t{1}, O::gate_lower);  // O16
    if (!freed) return false;
#endif
    P::crash_point(crash_site::free_done);
    after_free(s);
    wake_waiters();
    return freed;
  }

  // Frees each allocated slot of the batch, then wakes once.
  std::size_t free_n(std::span<const std::uint64_t> slots) {
    std::size_t freed = 0;
    for (const std::uint64_t s : slots) {
      if (release(s)) ++freed;
      P::crash_point(crash_site::free_n_partial);
    }
#if !defined(SHMPOOL_MUTANT_FREE_N_NO_WAKE)
    if (freed != 0) wake_waiters();
#endif
    return freed;
  }

  // ---- recovery ------------------------------------------------------------
  // Frees every slot whose owner is certainly dead, and clears the marks of
  // groups that have a FREE word (G1: stale marks of killed scanners and
  // freers, or corruption).  Returns slots freed.
  std::size_t recover_stale() {
    const std::uint64_t me = P::self_identity();
    std::size_t freed = 0;
    for (std::uint64_t s = 0; s < v_.capacity; ++s) {
      std::uint64_t cur = P::load(v_.meta[s].word, mo::acquire);
      if (cur == 0 || identity_of(cur) == me || !P::certainly_dead(identity_of(cur))) continue;
      // A live process cannot be racing on a dead one's word (I3): one CAS frees it.
      if (!P::cas(v_.meta[s].word, cur, std::uint64_t{0}, O::release)) continue;  // O3
      P::crash_point(crash_site::recover_freed);
      after_free(s);
      ++freed;
    }
    repair_group_marks();
    if (freed != 0) P::fetch_add(v_.control->recoveries, std::uint64_t{freed}, mo::relaxed);
    clear_dead_waiters();
    // Wake even when nothing was freed here: a freer killed between its CAS
    // and its wake (crash_site::free_done) left sleepers behind a free
    // slot.  Regression: stress.sweep_wakeup_after_killed_freer.
    wake_waiters();
    return freed;
  }

  // Frees every slot whatever its owner.  Meant for exclusive access; each
  // slot is freed by one CAS, so a reset killed midway leaves whole slots.
  void reset() {
    (void)P::self_identity();  // as every operator action: refuses an unknowable identity
    for (std::uint64_t s = 0; s < v_.capacity; ++s) {
      std::uint64_t cur = P::load(v_.meta[s].word, mo::acquire);
      while (cur != 0 && !P::cas(v_.meta[s].word, cur, std::uint64_t{0}, O::release)) {
      }
      if (cur == 0) continue;
      P::crash_point(crash_site::reset_freed);
      after_free(s);
    }
    repair_group_marks();
    // I7: reset takes every entry; a live waiter whose entry it took is
    // woken by the bump below and registers again (wait_until_claimed).
    for (unsigned k = 0; k < waiter_slots; ++k) {
      const std::uint64_t id = P::load(v_.control->waiter[k], mo::acquire);
      if (id != 0) revoke_entry(k, id);
    }
    wake(v_);
  }

  // Frees every slot whose word names `pid` of this pid namespace, live or
  // not: an operator's decision (e.g. slots an image held before exec,
  // which keeps pid and start time; PROTOCOL.md "exec").  One CAS per slot,
  // as in recovery.  Returns slots freed.
  std::size_t release_owner(pid_t pid) {
    const std::uint64_t me = P::self_identity();
    std::size_t freed = 0;
    for (std::uint64_t s = 0; s < v_.capacity; ++s) {
      std::uint64_t cur = P::load(v_.meta[s].word, mo::acquire);
      const std::uint64_t owner = identity_of(cur);
      if (cur == 0 || platform::identity_pid(owner) != pid ||
          platform::identity_ns_tag(owner) != platform::identity_ns_tag(me))
        continue;
      if (!P::cas(v_.meta[s].word, cur, std::uint64_t{0}, O::release)) continue;  // O3
      P::crash_point(crash_site::recover_freed);
      after_free(s);
      ++freed;
    }
    if (freed != 0) P::fetch_add(v_.control->recoveries, std::uint64_t{freed}, mo::relaxed);
    // An image that exec'd between a free's CAS and its group check left a
    // mark over the freed slot: the operator's release covers it too.
    repair_group_marks();
    // I7: the entries naming pid go with its slots (an image before exec
    // left them: the same identity).  A live waiter among them is woken by
    // the bump and registers again.
#if !defined(SHMPOOL_MUTANT_EXEC_WAITERS_KEPT)
    for (unsigned k = 0; k < waiter_slots; ++k) {
      const std::uint64_t id = P::load(v_.control->waiter[k], mo::acquire);
      if (id != 0 && platform::identity_pid(id) == pid &&
          platform::identity_ns_tag(id) == platform::identity_ns_tag(me))
        revoke_entry(k, id);
    }
#endif
    wake(v_);
    return freed;
  }

  // I7: a waiter killed while registered leaves its entry behind; clear
  // every entry whose identity is certainly dead (or that names no process:
  // pid 0 is never an identity's, e.g. an older format's waiter count), and
  // the entries naming this process when no thread of this image waits (an
  // image before exec left them: exec keeps the identity) or when no entry
  // is free (a waiter of this image could not register beside them): a live
  // thread among them is sent by the revocation and the wake below to
  // register again.  Returns the entries cleared.
  std::size_t clear_dead_waiters() {
    std::size_t cleared = 0;
    const std::uint64_t me = P::self_identity();
    const bool revoke_mine = P::load(P::image_waiters(), mo::seq_cst) == 0 || !entry_free();
    bool mine_revoked = false;
    for (unsigned k = 0; k < waiter_slots; ++k) {
      const std::uint64_t id = P::load(v_.control->waiter[k], mo::acquire);
      if (id == 0) continue;
      if (id == me) {
#if !defined(SHMPOOL_MUTANT_EXEC_WAITERS_KEPT)
        if (revoke_mine && revoke_entry(k, id)) {
          ++cleared;
          mine_revoked = true;
        }
#endif
        continue;
      }
      if (platform::identity_pid(id) != 0 && !P::certainly_dead(id)) continue;
      if (revoke_entry(k, id)) ++cleared;
    }
    if (mine_revoked) wake(v_);
    return cleared;
  }

  // I7: clears entry k if it still names `id`, bumping its revocations
  // first: a live holder (woken by the caller) sees the count moved and
  // registers again, never mistaking a later registration of a thread of
  // its own process (the same value) for its own.
  bool revoke_entry(unsigned k, std::uint64_t id) {
    P::fetch_add(v_.control->entry_revokes[k], std::uint32_t{1}, mo::seq_cst);
    return P::cas(v_.control->waiter[k], id, std::uint64_t{0}, mo::seq_cst);
  }

  // ---- status --------------------------------------------------------------
  bool is_allocated(std::uint64_t slot) const {
    return state_of(P::load(v_.meta[slot].word, mo::acquire)) == slot_state::allocated;
  }
  std::uint64_t word(std::uint64_t slot) const { return P::load(v_.meta[slot].word, mo::acquire); }
  std::uint64_t group_mark(std::uint64_t group) const { return P::load(v_.groups[group].mark, mo::acquire); }

  // I5: non-FREE words (allocated or in flight); exact when quiescent.
  // O(capacity): one load per slot.
  std::uint64_t used() const {
    std::uint64_t n = 0;
    for (std::uint64_t s = 0; s < v_.capacity; ++s) n += P::load(v_.meta[s].word, mo::relaxed) != 0;
    return n;
  }
  // The slot's generation: its allocs count (I6).  Stable while held.
  std::uint64_t generation(std::uint64_t slot) const { return P::load(v_.meta[slot].allocs, mo::acquire); }

  // Waiter entries in use: threads registered to sleep in alloc.
  std::uint64_t waiters() const {
    std::uint64_t n = 0;
    for (unsigned k = 0; k < waiter_slots; ++k) n += P::load(v_.control->waiter[k], mo::relaxed) != 0;
    return n;
  }

  // allocs and frees, both monotonic across calls and processes.  allocs is
  // the sum of the per-slot counts (each monotonic, I6).  frees: each slot
  // contributes allocs - (word is ALLOCATED or RELEASING), its frees at the
  // time of the read (I6; allocs is read first, and its acquire pairs with
  // the claimant's release so a later word read is no older than the
  // count), ahead by one for a claimant between its count and its publish
  // (a claimant killed there: until recovery frees its slot).  The sum is
  // raised into frees_mark by CAS-max, so a later call, in any process,
  // never returns less.  Exact when no operation is in flight.
  struct counters {
    std::uint64_t allocs = 0, frees = 0;
  };
  counters monotonic_counters() {
    counters c = counters_seen();
    std::uint64_t mark = P::load(v_.control->frees_mark, mo::relaxed);
    while (mark < c.frees && !P::cas(v_.control->frees_mark, mark, c.frees, mo::relaxed)) {
    }
    return c;
  }
  // The same reading without raising the mark (read-only mappings, e.g. the
  // CLI): never below what a monotonic_counters() before it returned.
  counters counters_seen() const {
    counters c;
    std::uint64_t bound = 0;
    for (std::uint64_t s = 0; s < v_.capacity; ++s) {
      const std::uint64_t a = P::load(v_.meta[s].allocs, mo::acquire);
      const slot_state st = state_of(P::load(v_.meta[s].word, mo::acquire));
      // CLAIMING counts as outstanding too: a claimant between its count
      // and its publish has raised allocs for an allocation not yet freed
      // (I6), so a FREE-looking reading would put frees one ahead, and the
      // mark would keep it there (C3: a bound, never ahead).
#if defined(SHMPOOL_MUTANT_FREES_AHEAD_OF_CLAIM)
      const bool outstanding = st == slot_state::allocated || st == slot_state::releasing;
#else
      const bool outstanding = st != slot_state::free;
#endif
      c.allocs += a;
      bound += outstanding && a != 0 ? a - 1 : a;
    }
    const std::uint64_t mark = P::load(v_.control->frees_mark, mo::relaxed);
    c.frees = mark > bound ? mark : bound;
    if (c.allocs < c.frees) c.allocs = c.frees;  // the mark may come from a later reading elsewhere
    return c;
  }

  // Every way the slot words and the group marks can be wrong; empty when
  // healthy.  Exact when no operation is in flight.
  std::vector<std::string> check() const {
    std::vector<std::string> problems;
    for (std::uint64_t g = 0; g < groups_; ++g) {
      const std::uint64_t m = P::load(v_.groups[g].mark, mo::acquire);
      if (m == 0) continue;
      if (is_tentative_mark(m)) {
        problems.push_back("group " + std::to_string(g) +
                           " has a tentative mark (a scanner stopped or killed between its mark and its confirm)");
        continue;
      }
      if (m != group_full) {
        problems.push_back("group " + std::to_string(g) + " has a malformed mark");
        continue;
      }
      const std::uint64_t free_slot = first_free_in(g);
      if (free_slot != no_slot)
        problems.push_back("group " + std::to_string(g) + " is marked full but slot " + std::to_string(free_slot) +
                           " is free");
    }
    for (std::uint64_t s = 0; s < v_.capacity; ++s) check_slot(s, problems);
    check_waiters(problems);
    return problems;
  }

 private:

  std::uint64_t group_begin(std::uint64_t g) const noexcept { return g * group_slots; }
  std::uint64_t group_end(std::uint64_t g) const noexcept {
    const std::uint64_t e = (g + 1) * group_slots;
#if defined(SHMPOOL_MUTANT_GROUP_END_UNCLAMPED)
    return e;  // defect: the last, partial group runs past capacity
#else
    return e < v_.capacity ? e : v_.capacity;
#endif
  }
  std::uint64_t first_free_in(std::uint64_t g) const {
    for (std::uint64_t s = group_begin(g); s < group_end(g); ++s)
      if (P::load(v_.meta[s].word, mo::acquire) == 0) return s;
    return no_slot;
  }
  bool marked_full(std::uint64_t g, mo order) const { return P::load(v_.groups[g].mark, order) == group_full; }

  // Claims the first FREE slot found from the hint `start` (a slot index),
  // skipping groups marked full; marks a group it found full (G).
  // FREE -CAS-> CLAIMING(me) -> ALLOCATED(me).
  struct claimed_slot {
    std::uint64_t slot = 0;
    std::uint64_t generation = 0;  // C2: the generation this claim counted
  };
  claim_outcome claim_one(std::uint64_t start, mo scan, claimed_slot& slot) {
    const std::uint64_t me = P::self_identity();
    bool in_flux = false;
    if (start >= v_.capacity) start = 0;
    // Segments: the rest of the start group, every other group, then the
    // start group's head.  A group is marked only when the whole of it was
    // seen (both segments of the start group) with nothing FREE or in flux.
    std::uint64_t s = start;
    std::uint64_t left = v_.capacity;
    bool start_rest_clean = false;  // the first segment saw nothing FREE or in flux
    while (left != 0) {
      const std::uint64_t g = s / group_slots;
      std::uint64_t stop = group_end(g);
      const bool head = s < start && start < stop;  // wrapped round to the start group's head
      if (head) stop = start;
      if (!marked_full(g, scan)) {
        bool flux_here = false;
        if (claim_in(s, stop, me, scan, flux_here, slot)) return claim_outcome::claimed;
        if (s == start) start_rest_clean = !flux_here;
        const bool whole_seen = head ? start_rest_clean : (s == group_begin(g) && stop == group_end(g));
        // Nothing FREE or in flux in the whole group: mark it.  If the
        // re-read undoes the mark, a slot was freed meanwhile: look once more.
        if (whole_seen && !flux_here && mark_group_full(g) &&
            claim_in(group_begin(g), group_end(g), me, scan, flux_here, slot))
          return claim_outcome::claimed;
        in_flux |= flux_here;
      }
      left -= stop - s;
      s = stop == v_.capacity ? 0 : stop;
    }
    return in_flux ? claim_outcome::in_flux : claim_outcome::full;
  }

  // Tries every FREE word of slots [s, stop); notes RELEASING ones.
  bool claim_in(std::uint64_t s, std::uint64_t stop, std::uint64_t me, mo scan, bool& flux, claimed_slot& slot) {
    for (std::uint64_t t = s; t < stop; ++t) {
      const std::uint64_t w = P::load(v_.meta[t].word, scan);
      if (w == 0) {
        if (try_claim(t, me, /*publish=*/true, &slot.generation)) {
          slot.slot = t;
          return true;
        }
        // Refused at this process's checked-free gate (C1): back in a moment.
        if (P::load(v_.meta[t].word, scan) == 0 && P::load(P::checked_free_gate(), mo::relaxed) != 0) flux = true;
      } else if (state_of(w) == slot_state::releasing) {
        flux = true;
      }
    }
    return false;
  }

  // G: stores a tentative mark with a token of its own (O6), re-reads the
  // group (O7), then confirms it: token -CAS-> GROUP_FULL (O17).  True when
  // the re-read found a FREE or RELEASING word: the mark is undone and
  // waiters woken.  P1: a scanner stopped anywhere in here hides nothing:
  // a tentative mark is scanned as no mark, and the confirm succeeds only
  // if no freer cleared the token since O6 (a freer whose CAS came after the
  // re-read passed its slot clears the mark after O6, so before or after
  // the confirm).  A unique token per attempt: a scanner stopped before its
  // confirm must not confirm a later scanner's tentative mark.
  bool mark_group_full(std::uint64_t g) {
#if defined(SHMPOOL_MUTANT_MARK_BLOCKS_WHEN_STOPPED)
    // Defect (format 3's mark): GROUP_FULL at once, before the re-read.
    const std::uint64_t token = group_full;
#else
    const std::uint64_t token =
        group_marking | (P::fetch_add(v_.control->mark_seq, std::uint64_t{1}, mo::relaxed) & ~group_marking);
#endif
    P::store(v_.groups[g].mark, token, O::group_mark);  // O6
    P::crash_point(crash_site::group_marked);
    for (std::uint64_t t = group_begin(g); t < group_end(g); ++t) {
      const std::uint64_t w = P::load(v_.meta[t].word, O::mark_reread);  // O7
      if (w == 0 || state_of(w) == slot_state::releasing) {
        P::store(v_.groups[g].mark, std::uint64_t{0}, O::group_clear);  // O5
        wake_waiters();
        return true;
      }
    }
    std::uint64_t expected = token;
    if (token != group_full) P::cas(v_.groups[g].mark, expected, group_full, O::mark_confirm);  // O17
    return false;
  }

  // FREE words seen by one scan (in-flux slots included), skipping marked
  // groups; stops counting at `enough`.
  std::uint64_t free_words_seen(mo scan, std::uint64_t enough) const {
    std::uint64_t n = 0;
    for (std::uint64_t g = 0; g < groups_ && n < enough; ++g) {
      if (marked_full(g, scan)) continue;
      for (std::uint64_t t = group_begin(g); t < group_end(g) && n < enough; ++t) {
        const std::uint64_t w = P::load(v_.meta[t].word, scan);
        n += w == 0 || state_of(w) == slot_state::releasing;
      }
    }
    return n;
  }

  // Claims n slots, or none.  The batch stays CLAIMING(me) until all n are
  // claimed, so a failed batch rolls back slots nobody else can touch (I3)
  // and counts no allocation (I6: allocs rises at publish); a dead
  // batcher's slots are CLAIMING(dead).  W2: a scan that sees fewer than n
  // free words claims nothing (so nothing to roll back, nobody to wake).
  // A batch marks no group: single claims do.
  claim_outcome claim_batch(std::size_t n, std::uint64_t start, mo scan, std::vector<std::uint64_t>& got,
                            waiter_ctx& self) {
    const std::uint64_t me = P::self_identity();
    bool in_flux = false;
    got.clear();
    if (free_words_seen(scan, n) < n) return claim_outcome::full;
    if (start >= v_.capacity) start = 0;
    for (std::uint64_t k = 0; k < v_.capacity && got.size() < n; ++k) {
      const std::uint64_t t = start + k < v_.capacity ? start + k : start + k - v_.capacity;
      if ((k == 0 || t % group_slots == 0) && marked_full(t / group_slots, scan)) {
        k += group_end(t / group_slots) - t - 1;  // the rest of a group marked full
        continue;
      }
      const std::uint64_t w = P::load(v_.meta[t].word, scan);
      if (w != 0) {
        in_flux |= state_of(w) == slot_state::releasing;
        continue;
      }
      if (try_claim(t, me, /*publish=*/false)) {
        got.push_back(t);
        P::crash_point(crash_site::alloc_n_partial);
      }
    }
    // C1: one gate read after every claim CAS of the batch; raised, the
    // batch rolls back (in flux) rather than wait for another thread.
    const bool gate_raised = got.size() == n && P::load(P::checked_free_gate(), O::gate_read) != 0;  // O15
    if (got.size() == n && !gate_raised) {
      for (const std::uint64_t s : got) publish_claim(s, me);
      return claim_outcome::claimed;
    }
    in_flux |= gate_raised;
    for (const std::uint64_t s : got) {
      std::uint64_t expected = make_slot_word(slot_state::claiming, me);
      // Only we write CLAIMING(me) (I3), unless a reset took it: then it is not ours.
      if (P::cas(v_.meta[s].word, expected, std::uint64_t{0}, O::release)) after_free(s);  // O3
      P::crash_point(crash_site::alloc_n_rollback);
    }
    // Others may have slept on the slots we held: wake them, not us (W2).
#if defined(SHMPOOL_MUTANT_ROLLBACK_WAKES_SELF)
    // Mutant: the rollback's wake counts the caller, whose next wait returns at once.
    if (!got.empty()) (void)wake_waiters();
#else
    if (!got.empty()) {
      const std::optional<int> bumped_from = wake_waiters(self.entry);
      if (bumped_from && *bumped_from == self.seq)
        self.seq = static_cast<int>(static_cast<unsigned>(self.seq) + 1u);
    }
#endif
    got.clear();
    return in_flux ? claim_outcome::in_flux : claim_outcome::full;
  }

  // One slot: FREE -CAS-> CLAIMING(me) [-> ALLOCATED(me), the generation
  // counted into *generation when given (C2)].
  bool try_claim(std::uint64_t s, std::uint64_t me, bool publish, std::uint64_t* generation = nullptr) {
    return try_claim_in(v_, s, me, publish, generation);
  }
  [[gnu::always_inline]] static bool try_claim_in(const pool_view<P>& v, std::uint64_t s, std::uint64_t me,
                                                  bool publish, std::uint64_t* generation = nullptr) {
    std::uint64_t expected = 0;
#if defined(SHMPOOL_MUTANT_OWNER_AFTER_CLAIM)
    // Defect: claim anonymously and name the owner later (the seed's window).
    if (!P::cas(v.meta[s].word, expected, make_slot_word(slot_state::claiming, 0), O::claim)) return false;
    P::crash_point(crash_site::alloc_claimed);
    P::store(v.meta[s].word, make_slot_word(slot_state::claiming, me), mo::relaxed);
#else
    if (!P::cas(v.meta[s].word, expected, make_slot_word(slot_state::claiming, me), O::claim)) return false;  // O1
    P::crash_point(crash_site::alloc_claimed);
#endif
    if (publish) {
      // C1: no ALLOCATED(me) may appear while a checked free of this process
      // stands between its word read and its CAS.  The gate read (O15)
      // follows O1; a raised gate makes the claim give the slot back rather
      // than wait for another thread (see free_if_held).
      if (P::load(P::checked_free_gate(), O::gate_read) != 0) [[unlikely]] {  // O15
        unclaim_in(v, s, me);
        return false;
      }
      const std::uint64_t g = publish_claim_in(v, s, me);
      if (generation != nullptr) *generation = g;
    }
    return true;
  }
  // C1's refusal: CLAIMING(me) -CAS-> FREE with a free's duties (a scanner
  // or waiter may have passed the slot while it was ours).
  [[gnu::noinline, gnu::cold]] static void unclaim_in(const pool_view<P>& v, std::uint64_t s, std::uint64_t me) {
    std::uint64_t expected = make_slot_word(slot_state::claiming, me);
    if (!P::cas(v.meta[s].word, expected, std::uint64_t{0}, O::release)) return;  // O3; a reset took it
    after_free_in(v, s);
    if (waiter_seen(v, -1)) wake(v);
  }

  // CLAIMING(me) -> ALLOCATED(me), counting the allocation first (I6).
  // Returns the generation counted (C2).  The caller has read the gate
  // (O15) after its claim CAS and found it lowered (C1).
  std::uint64_t publish_claim(std::uint64_t s, std::uint64_t me) { return publish_claim_in(v_, s, me); }
  [[gnu::always_inline]] static std::uint64_t publish_claim_in(const pool_view<P>& v, std::uint64_t s,
                                                               std::uint64_t me) {
    // Only the claimant writes allocs (I3), so load+store suffices; release:
    // a stats() that reads the new count then reads a word no older (I6).
    const std::uint64_t generation = P::load(v.meta[s].allocs, mo::relaxed) + 1;
    P::store(v.meta[s].allocs, generation, mo::release);
    P::store(v.meta[s].word, make_slot_word(slot_state::allocated, me), O::publish);  // O2
    P::crash_point(crash_site::alloc_published);
    return generation;
  }


  // ALLOCATED(x) -CAS-> FREE, then the group check.  False if not allocated.
  bool release(std::uint64_t s) { return release_word(v_, s); }
  [[gnu::always_inline]] static bool release_word(const pool_view<P>& v, std::uint64_t s) {
    auto& word = v.meta[s].word;
    std::uint64_t cur = P::load(word, mo::relaxed);
    for (;;) {
      if (state_of(cur) != slot_state::allocated) return false;
#if defined(SHMPOOL_MUTANT_FREE_BY_STORE)
      // Defect: check, then store: two frees of one allocation both succeed,
      // and the second frees whatever was claimed in between.
      P::store(word, std::uint64_t{0}, mo::seq_cst);
      break;
#else
      if (P::cas(word, cur, std::uint64_t{0}, O::release)) break;  // O3
#endif
    }
    P::crash_point(crash_site::free_done);
    after_free_in(v, s);
    return true;
  }

  // G: after a word of group g became FREE (O3), clear the group's mark if
  // it is set, before the waiter read that follows (W1).
  void after_free(std::uint64_t s) { after_free_in(v_, s); }
  [[gnu::always_inline]] static void after_free_in(const pool_view<P>& v, std::uint64_t s) {
#if !defined(SHMPOOL_MUTANT_MARK_NOT_CLEARED)
    const std::uint64_t g = s / group_slots;
    if (P::load(v.groups[g].mark, O::group_check) != 0) {  // O4
      P::store(v.groups[g].mark, std::uint64_t{0}, O::group_clear);  // O5
      P::crash_point(crash_site::free_group_cleared);
    }
#else
    (void)v;
    (void)s;
#endif
  }

  // G1 repair: clears every mark that is malformed or names a group with a
  // FREE word (left by a killed scanner or freer, or corruption).
  void repair_group_marks() {
    for (std::uint64_t g = 0; g < groups_; ++g) {
      const std::uint64_t m = P::load(v_.groups[g].mark, mo::acquire);
      if (m == 0) continue;
#if !defined(SHMPOOL_MUTANT_STALE_MARK_KEPT)
      if (m != group_full || first_free_in(g) != no_slot)
        P::store(v_.groups[g].mark, std::uint64_t{0}, O::group_clear);
#endif
    }
  }

  // W1: the freer's CAS (O3) precedes this read of the waiter entries (O8),
  // all but `skip` (the caller's own, W2).  Returns wake_seq's value before
  // the bump, or nothing if no waiter was seen.
  std::optional<int> wake_waiters(int skip = -1) {
    if (!waiter_seen(v_, skip)) return std::nullopt;
    return wake(v_);
  }
  // Every entry but `skip`, without an early exit: eight loads of one line
  // and their OR, no branch per entry (the fast path of every free).
  [[gnu::always_inline]] static bool waiter_seen(const pool_view<P>& v, int skip) {
    // (A local pointer: an atomic load may not be moved across, but a
    // register copy of the view need not be reloaded after each one.)
    auto* const waiter = v.control->waiter;
    std::uint64_t anyone = 0;
#pragma GCC unroll 8
    for (unsigned k = 0; k < waiter_slots; ++k)
      anyone |= static_cast<int>(k) == skip ? 0 : P::load(waiter[k], O::waiter_check);  // O8
    return anyone != 0;
  }

  bool entry_free() const {
    for (unsigned k = 0; k < waiter_slots; ++k)
      if (P::load(v_.control->waiter[k], mo::relaxed) == 0) return true;
    return false;
  }
  // Takes a free waiter entry (O9, I7) and notes its revocations; entry -1
  // when all are taken.
  void register_waiter(std::uint64_t me, waiter_ctx& self) {
    self.entry = -1;
    for (unsigned k = 0; k < waiter_slots; ++k) {
      std::uint64_t expected = 0;
      if (P::load(v_.control->waiter[k], mo::relaxed) == 0 &&
          P::cas(v_.control->waiter[k], expected, me, O::waiter_register)) {
        self.entry = static_cast<int>(k);
        self.revokes = P::load(v_.control->entry_revokes[k], mo::seq_cst);
        return;
      }
    }
  }
  // Still this thread's: the entry names us and nobody revoked it since.
  bool still_registered(const waiter_ctx& self, std::uint64_t me) const {
    return self.entry >= 0 && P::load(v_.control->waiter[self.entry], mo::seq_cst) == me &&
           P::load(v_.control->entry_revokes[self.entry], mo::seq_cst) == self.revokes;
  }
  // Gives the entry back if it is still ours.  A revoker may clear it and a
  // thread of ours take it again between our check and our CAS (the same
  // value): then the revocation count has moved by our second look, and the
  // wake makes that thread see its entry gone and register again.
  void leave_entry(const waiter_ctx& self, std::uint64_t me) {
    if (self.entry < 0) return;
    auto& revokes = v_.control->entry_revokes[self.entry];
    if (P::load(revokes, mo::seq_cst) != self.revokes) return;  // revoked: not ours to clear
    std::uint64_t mine = me;
    P::cas(v_.control->waiter[self.entry], mine, std::uint64_t{0}, mo::seq_cst);
    if (P::load(revokes, mo::seq_cst) != self.revokes) wake(v_);
  }

  // The slow path shared by alloc and alloc_n: register, re-scan, sleep.
  template <class Attempt>
  bool wait_until_claimed(std::int64_t timeout_ns, Attempt&& attempt) {
    const std::int64_t deadline = timeout_ns < 0 ? -1 : P::now_ns() + timeout_ns;
    P::fetch_add(v_.control->waits, std::uint64_t{1}, mo::relaxed);
    const std::uint64_t me = P::self_identity();
    // Every entry taken: some may be left by the dead or by this identity's
    // earlier image (I7); clear those before this thread joins the image's
    // waiters (after that, its own ticket keeps the image's entries).
    if (!entry_free()) clear_dead_waiters();
    P::fetch_add(P::image_waiters(), 1, mo::seq_cst);  // for check(): this image has a waiter
    waiter_ctx self;
    register_waiter(me, self);  // O9
    P::crash_point(crash_site::wait_registered);
    std::int64_t poll_ns = 50'000;  // in-flux poll, doubling to 10 ms
    bool claimed = false;
    for (;;) {
      self.seq = P::load(v_.control->wake_seq, O::wake_read);  // O13
      // Unregistered, or reset()/release_owner() took the entry (they bump
      // wake_seq after, so a sleeper wakes and gets here): register again
      // before the scan (W1).
      if (!still_registered(self, me)) register_waiter(me, self);  // O9
      const claim_outcome got = attempt(O::waiter_scan, self);  // O10
      if (got == claim_outcome::claimed) {
        claimed = true;
        break;
      }
      std::int64_t wait_ns = -1;
      if (deadline >= 0) {
        wait_ns = deadline - P::now_ns();
        if (wait_ns <= 0) break;
      }
      // Unregistered (every entry taken) or in flux: poll, never sleep unbounded.
      if (got == claim_outcome::in_flux || self.entry < 0) {
        wait_ns = wait_ns < 0 ? poll_ns : (wait_ns < poll_ns ? wait_ns : poll_ns);
        poll_ns = poll_ns < 10'000'000 ? poll_ns * 2 : poll_ns;
      }
      P::futex_wait(v_.control->wake_seq, self.seq, wait_ns);
    }
    leave_entry(self, me);
    P::fetch_sub(P::image_waiters(), 1, mo::seq_cst);
    if (!claimed) P::fetch_add(v_.control->timeouts, std::uint64_t{1}, mo::relaxed);
    return claimed;
  }

  // I7: every entry names a process that may be waiting; report the rest.
  void check_waiters(std::vector<std::string>& problems) const {
    // check() needs no identity of its own (a process without /proc may
    // still check a pool); without one, "this process's earlier image"
    // cannot be told and is not reported.
    std::uint64_t me = 0;
    try {
      me = P::self_identity();
    } catch (...) {
    }
    for (unsigned k = 0; k < waiter_slots; ++k) {
      const std::uint64_t id = P::load(v_.control->waiter[k], mo::acquire);
      if (id == 0) continue;
      const std::string at = "waiter entry " + std::to_string(k) + ": ";
      if (platform::identity_pid(id) == 0)
        problems.push_back(at + "malformed (names no process)");
      else if (me != 0 && id == me && P::load(P::image_waiters(), mo::acquire) == 0)
        problems.push_back(at + "names this process, but no thread of it waits (left by an image before exec)");
      else if (id != me && P::certainly_dead(id))
        problems.push_back(at + "names pid " + std::to_string(platform::identity_pid(id)) + ", which is gone");
    }
  }

  void check_slot(std::uint64_t s, std::vector<std::string>& problems) const {
    const std::uint64_t w = P::load(v_.meta[s].word, mo::acquire);
    const std::string at = "slot " + std::to_string(s) + ": ";
    const auto pid = std::to_string(platform::identity_pid(identity_of(w)));
    switch (state_of(w)) {
      case slot_state::free:
        if (w != 0) problems.push_back(at + "malformed slot word (free state with an owner)");
        break;
      case slot_state::allocated:
        if (platform::identity_pid(identity_of(w)) == 0) problems.push_back(at + "allocated with no owner");
        break;
      case slot_state::claiming:
        problems.push_back(at + "claim in flight by pid " + pid);
        break;
      case slot_state::releasing:
        problems.push_back(at + "release in flight by pid " + pid);
        break;
    }
  }

  pool_view<P> v_;
  std::uint64_t groups_;
};

}  // namespace shmpool::detail
