// The slot protocol: lock-free claim and release of pool slots, owner
// recording, futex waiting, stale recovery.  Production, the Relacy model and
// the crash-point sweep all run this one template (see platform/seam.hpp).
//
// SHARED STATE (per pool; layout in format.hpp and core/FORMAT.md)
//   slot word   one 64-bit word per slot: state (bits 63..62) | identity (61..0)
//                 FREE      = 0
//                 CLAIMING  (me)  claimed, bitmap bit maybe not yet set
//                 ALLOCATED (me)  the slot is mine; data may be used
//                 RELEASING (me)  I am freeing or recovering it
//   bitmap      one bit per slot, 64 to a word, one word per cache line: a
//               summary of the slot words that makes finding a free slot one
//               load per 64 slots.  Bits >= capacity are never used (tail mask
//               kept in the handle, never read from the mapping).
//   waiter ids  waiter_slots entries: the identity of a thread about to sleep
//               or asleep in alloc, 0 when the entry is free.  A waiter that
//               finds every entry taken does not sleep unbounded: it polls
//               (<= 10 ms), so nothing depends on counting it.
//   wake_seq    futex word; bumped by every free that sees a waiter entry
//   allocs      per slot (slot meta word 2): how many times the slot was
//               published ALLOCATED; monotonic, and the slot's generation
//   frees mark  the highest lower bound of frees any stats() computed
//
// TRANSITIONS (the only writers of a slot word)
//   alloc:   FREE -CAS-> CLAIMING(me); set bit; store ALLOCATED(me)
//   alloc_n: claims each slot as above but publishes ALLOCATED only once all
//            n are CLAIMING(me); a short batch is unclaimed (bit, then FREE)
//   free:    ALLOCATED(x) -CAS-> RELEASING(me); clear bit; store FREE; wake
//   free_if_held(owner, gen): as free, but only from ALLOCATED(owner) with
//            owner == me and (gen != 0) allocs == gen; an allocation of ours
//            with another generation (found after the CAS) is restored
//   recover: W(dead) -CAS-> RELEASING(me); clear bit; store FREE; wake
//            (W is any non-free word whose identity is certainly dead,
//             RELEASING(dead) included: a dead recoverer's work is finished)
//   reset:   W -CAS-> RELEASING(me); clear bit; store FREE  (any owner)
//   release_owner(pid): as reset, for the words naming pid (an operator's
//            decision: the owner may be alive, e.g. after exec)
//
// INVARIANTS
//   I1  bit set  =>  slot word != FREE.  (Set only while CLAIMING(me); cleared
//       only while RELEASING(me); so a FREE word never has its bit set.)
//   I2  slot word == ALLOCATED  =>  bit set.
//   I3  a slot word is changed only by the identity it names, except
//       FREE -> CLAIMING (anyone, by CAS) and W(dead) -> RELEASING (recovery,
//       by CAS).  Hence no two live processes ever own one slot.  (reset
//       and release_owner break it on purpose, at an operator's request.)
//       Every operation asks P::self_identity() before it touches a slot;
//       it is never 0 (it throws instead), so no word ever names nobody.
//   I4  every non-FREE slot word names an identity; recovery frees exactly the
//       words whose identity is certainly dead, so after one recover_stale()
//       by a survivor every slot is FREE or names a live process.
//   I5  used() is a popcount of the bitmap; with no operation in flight I1
//       and I2 make it equal the number of ALLOCATED words (check()).
//   I6  allocs of a slot changes only while its word is CLAIMING(me), by +1,
//       just before the publish: it never decreases, and a slot holds at most
//       one counted allocation not yet freed: none when its word is FREE or
//       CLAIMING (but for the step between the count and the publish), one
//       when ALLOCATED or RELEASING.  Hence allocs - (word is ALLOCATED or
//       RELEASING) is the slot's frees, ahead by one only inside that step.
//   I7  a waiter entry names a thread's process; it is set (0 -CAS-> me) and
//       cleared only by that thread, or cleared by recovery when the
//       identity is certainly dead (or is no identity at all).
//   W1  no lost wake-up: a freer clears the bit (seq_cst) then reads every
//       waiter entry (seq_cst); a waiter registers in an entry (seq_cst CAS)
//       then scans (seq_cst).  Either the freer sees the waiter and bumps
//       wake_seq, or the waiter's scan sees the cleared bit.  A cleared bit
//       whose word is still RELEASING is "in flux": the waiter polls with a
//       short timeout instead of sleeping.
//   W2  a waiter never wakes itself: an alloc_n that rolls back a partial
//       batch wakes only other waiters, and if its own bump was the only
//       change to wake_seq since it read it, it sleeps on the bumped value.
//       A batch also claims nothing unless its scan counted n free bits, so
//       two batches that cannot both fit do not wake each other forever.
//
// CRASH WINDOWS (a process may die between any two steps; crash_site names them)
//   after CLAIMING(me)        word names me: recovery frees it when I am dead
//   after bit set             same
//   after RELEASING(me)       recovery (seeing me dead) takes it over and finishes
//   after bit cleared         same; the slot is unclaimable until then (never leaked)
//   after FREE, before wake   sleepers may miss this free: recover_stale()
//                             always wakes waiters, so a survivor's recovery
//                             closes it (stress.sweep_wakeup_after_killed_freer)
//   asleep, registered        the waiter entry names a dead identity: frees
//                             make a wake syscall nobody needs until a
//                             recover_stale() or reset() clears it (I7).
// There is no window where a slot is taken but names nobody (the seed's
// bit-then-owner order has one; SHMPOOL_MUTANT_OWNER_AFTER_CLAIM reopens it).
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
  static constexpr mo claim = mo::acquire;        // O1 claim CAS; pairs with O5
#endif
  // O2 and O3 order no data: an owner writes its data after O2, so only the
  // application's own hand-off of an index can order it for a freer (and a
  // freer's writes reach the next claimer through O5/O1).  The Relacy
  // models confirm that no invariant needs more (model/README.md).
  // O2 is a release for one reader only: a checked free (O11) that reads the
  // slot's allocs after its CAS must see the increment made before O2.
  static constexpr mo publish = mo::release;      // O2 ALLOCATED store; pairs with O11
  static constexpr mo mark = mo::relaxed;         // O3 RELEASING CAS
#if defined(SHMPOOL_MUTANT_WEAK_BIT_CLEAR)
  static constexpr mo bit_clear = mo::relaxed;
#else
  static constexpr mo bit_clear = mo::seq_cst;    // O4 W1, freer side
#endif
#if defined(SHMPOOL_MUTANT_WEAK_FREE_STORE)
  static constexpr mo free_store = mo::relaxed;
#else
  static constexpr mo free_store = mo::release;   // O5 FREE store; pairs with O1
#endif
  static constexpr mo waiter_check = mo::seq_cst; // O6 W1, freer reads waiters
  static constexpr mo waiter_register = mo::seq_cst;  // O7 W1, waiter side
  static constexpr mo waiter_scan = mo::seq_cst;  // O8 W1, waiter's re-scan
  static constexpr mo wake_bump = mo::release;    // O9 wake_seq bump; pairs with O10
  static constexpr mo wake_read = mo::acquire;    // O10 waiter reads wake_seq
  static constexpr mo checked_mark = mo::acquire; // O11 checked free's CAS; pairs with O2
};

template <class P>
struct slot_meta {
  typename P::template atomic<std::uint64_t> word;    // state | identity
  typename P::template atomic<std::uint64_t> allocs;  // times claimed; written by the claimant only
};

template <class P>
struct alignas(64) bitmap_word {
  typename P::template atomic<std::uint64_t> bits;
};

// Waiter entries: one cache line, so a freer reads them all with one miss.
inline constexpr unsigned waiter_slots = 8;

template <class P>
struct pool_control {
  alignas(64) typename P::template atomic<std::uint64_t> waiter[waiter_slots];  // I7: identity or 0
  alignas(64) typename P::template atomic<int> wake_seq;
  alignas(64) typename P::template atomic<std::uint64_t> waits;
  typename P::template atomic<std::uint64_t> timeouts;
  typename P::template atomic<std::uint64_t> recoveries;
  typename P::template atomic<std::uint64_t> frees_mark;  // raised by stats() only (CAS-max)
};

// Where the shared state is, as bounds the handle validated at open.
template <class P>
struct pool_view {
  bitmap_word<P>* bitmap = nullptr;  // bitmap_words(capacity) entries
  slot_meta<P>* meta = nullptr;      // capacity entries
  pool_control<P>* control = nullptr;
  std::uint64_t capacity = 0;
};

constexpr std::uint64_t bitmap_words(std::uint64_t capacity) noexcept { return (capacity + 63) / 64; }

// Bits of the last bitmap word that lie beyond capacity (always "taken").
constexpr std::uint64_t tail_mask(std::uint64_t capacity) noexcept {
#if defined(SHMPOOL_MUTANT_BITMAP_TAIL_OFF_BY_ONE)
  const std::uint64_t rem = (capacity + 1) % 64;
#else
  const std::uint64_t rem = capacity % 64;
#endif
  return rem == 0 ? 0 : ~std::uint64_t{0} << rem;
}

enum class claim_outcome { claimed, full, in_flux };

// What a waiting caller knows about itself (W2): its waiter entry (-1: none,
// or not waiting) and the wake_seq value it will sleep on.
struct waiter_ctx {
  int entry = -1;
  int seq = 0;
};

template <class P, class O = pool_orders>
class slot_protocol {
 public:
  explicit slot_protocol(pool_view<P> v) noexcept
      : v_(v), words_(bitmap_words(v.capacity)), tail_(tail_mask(v.capacity)) {}

  std::uint64_t capacity() const noexcept { return v_.capacity; }
  std::uint64_t words() const noexcept { return words_; }

  // ---- alloc ---------------------------------------------------------------
  // Claims one slot.  timeout_ns < 0 waits forever, 0 never waits.
  std::optional<std::uint64_t> alloc(std::int64_t timeout_ns, std::uint64_t start) {
    std::uint64_t slot = 0;
    if (claim_one(start, mo::acquire, slot) == claim_outcome::claimed) return slot;
    if (timeout_ns == 0) return std::nullopt;
    const bool ok =
        wait_until_claimed(timeout_ns, [&](mo scan, waiter_ctx&) { return claim_one(start, scan, slot); });
    return ok ? std::optional<std::uint64_t>(slot) : std::nullopt;
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
  bool free(std::uint64_t slot) {
    if (!release(slot, /*only_allocated=*/true)) return false;
    wake_waiters();
    return true;
  }

  // Frees slot s only if it is ALLOCATED(owner), owner is this process, and
  // (generation != 0) the slot's allocs equals generation: the allocation a
  // guard or a checked free was given, and no later one.  The generation is
  // checked before the CAS (cheap refusal) and after it (O11): if another
  // allocation of ours took the slot in between, its word is restored.
  bool free_if_held(std::uint64_t s, std::uint64_t owner, std::uint64_t generation) {
    if (P::self_identity() != owner) return false;  // e.g. a guard copied into a fork child
    const std::uint64_t held = make_slot_word(slot_state::allocated, owner);
    std::uint64_t cur = P::load(v_.meta[s].word, mo::acquire);
    if (cur != held) return false;
    if (generation != 0 && P::load(v_.meta[s].allocs, mo::acquire) != generation) return false;
    if (!P::cas(v_.meta[s].word, cur, make_slot_word(slot_state::releasing, owner), O::checked_mark)) return false;
    if (generation != 0 && P::load(v_.meta[s].allocs, mo::relaxed) != generation) {
      P::store(v_.meta[s].word, held, mo::relaxed);  // another allocation of ours: untouched
      return false;
    }
    P::crash_point(crash_site::free_marked);
    finish_release(s, crash_site::free_bit_cleared);
    wake_waiters();
    return true;
  }

  // Frees each allocated slot of the batch, then wakes once.
  std::size_t free_n(std::span<const std::uint64_t> slots) {
    std::size_t freed = 0;
    for (const std::uint64_t s : slots) {
      if (release(s, true)) ++freed;
      P::crash_point(crash_site::free_n_partial);
    }
#if !defined(SHMPOOL_MUTANT_FREE_N_NO_WAKE)
    if (freed != 0) wake_waiters();
#endif
    return freed;
  }

  // ---- recovery ------------------------------------------------------------
  // Frees every slot whose owner is certainly dead, and repairs bits set over
  // FREE words (I1 broken by a corrupted mapping).  Returns slots freed.
  std::size_t recover_stale() {
    const std::uint64_t me = P::self_identity();
    std::size_t freed = 0;
    for (std::uint64_t s = 0; s < v_.capacity; ++s) {
      std::uint64_t cur = P::load(v_.meta[s].word, mo::acquire);
      if (cur == 0 || identity_of(cur) == me || !P::certainly_dead(identity_of(cur))) continue;
      // Take it over by CAS: a live process cannot be racing on a dead one's word (I3).
      if (!P::cas(v_.meta[s].word, cur, make_slot_word(slot_state::releasing, me), O::mark)) continue;
      P::crash_point(crash_site::recover_marked);
      finish_release(s, crash_site::recover_bit_cleared);
      ++freed;
    }
    freed += repair_orphan_bits(me);
    if (freed != 0) P::fetch_add(v_.control->recoveries, std::uint64_t{freed}, mo::relaxed);
    clear_dead_waiters();
    // Wake even when nothing was freed here: a freer killed between its FREE
    // store and its wake (crash_site::free_done) left sleepers behind a free
    // slot.  Regression: stress.sweep_wakeup_after_killed_freer.
    wake_waiters();
    return freed;
  }

  // Frees every slot whatever its owner.  Meant for exclusive access; each
  // slot goes through RELEASING(me), so a reset killed midway is finished
  // by recovery.
  void reset() {
    const std::uint64_t me = P::self_identity();
    for (std::uint64_t s = 0; s < v_.capacity; ++s) {
      std::uint64_t cur = P::load(v_.meta[s].word, mo::acquire);
      while (cur != 0 && !P::cas(v_.meta[s].word, cur, make_slot_word(slot_state::releasing, me), O::mark)) {
      }
      if (cur == 0) continue;
      P::crash_point(crash_site::reset_marked);
      finish_release(s, crash_site::free_bit_cleared);
    }
    repair_orphan_bits(me);
    clear_dead_waiters();
    wake_waiters();
  }

  // Frees every slot whose word names `pid` of this pid namespace, live or
  // not: an operator's decision (e.g. slots an image held before exec,
  // which keeps pid and start time; PROTOCOL.md "exec").  Each slot goes
  // through RELEASING(me) as in recovery.  Returns slots freed.
  std::size_t release_owner(pid_t pid) {
    const std::uint64_t me = P::self_identity();
    std::size_t freed = 0;
    for (std::uint64_t s = 0; s < v_.capacity; ++s) {
      std::uint64_t cur = P::load(v_.meta[s].word, mo::acquire);
      const std::uint64_t owner = identity_of(cur);
      if (cur == 0 || platform::identity_pid(owner) != pid ||
          platform::identity_ns_tag(owner) != platform::identity_ns_tag(me))
        continue;
      if (!P::cas(v_.meta[s].word, cur, make_slot_word(slot_state::releasing, me), O::mark)) continue;
      P::crash_point(crash_site::recover_marked);
      finish_release(s, crash_site::recover_bit_cleared);
      ++freed;
    }
    if (freed != 0) P::fetch_add(v_.control->recoveries, std::uint64_t{freed}, mo::relaxed);
    wake_waiters();
    return freed;
  }

  // I7: a waiter killed while registered leaves its entry behind; clear
  // every entry whose identity is certainly dead (or that names no process:
  // pid 0 is never an identity's, e.g. an older format's waiter count).
  // Returns the entries cleared.
  std::size_t clear_dead_waiters() {
    std::size_t cleared = 0;
    for (unsigned k = 0; k < waiter_slots; ++k) {
      std::uint64_t id = P::load(v_.control->waiter[k], mo::acquire);
      if (id == 0) continue;
      if (platform::identity_pid(id) != 0 && !P::certainly_dead(id)) continue;
      if (P::cas(v_.control->waiter[k], id, std::uint64_t{0}, mo::relaxed)) ++cleared;
    }
    return cleared;
  }

  // ---- status --------------------------------------------------------------
  bool is_allocated(std::uint64_t slot) const {
    return state_of(P::load(v_.meta[slot].word, mo::acquire)) == slot_state::allocated;
  }
  std::uint64_t word(std::uint64_t slot) const { return P::load(v_.meta[slot].word, mo::acquire); }

  // I5: allocated-or-in-flight count; exact when quiescent.
  std::uint64_t used() const {
    std::uint64_t n = 0;
    for (std::uint64_t w = 0; w < words_; ++w)
      n += static_cast<std::uint64_t>(std::popcount(P::load(v_.bitmap[w].bits, mo::relaxed) & ~mask_of(w)));
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
      const bool outstanding = st == slot_state::allocated || st == slot_state::releasing;
      c.allocs += a;
      bound += outstanding && a != 0 ? a - 1 : a;
    }
    const std::uint64_t mark = P::load(v_.control->frees_mark, mo::relaxed);
    c.frees = mark > bound ? mark : bound;
    if (c.allocs < c.frees) c.allocs = c.frees;  // the mark may come from a later reading elsewhere
    return c;
  }

  // Every way the slot words and the bitmap can disagree; empty when
  // healthy.  Exact when no operation is in flight.
  std::vector<std::string> check() const {
    std::vector<std::string> problems;
    for (std::uint64_t w = 0; w < words_; ++w) {
      const std::uint64_t bits = P::load(v_.bitmap[w].bits, mo::acquire);
      if ((bits & mask_of(w)) != 0)
        problems.push_back("bitmap word " + std::to_string(w) + " has bits set beyond capacity");
    }
    for (std::uint64_t s = 0; s < v_.capacity; ++s) check_slot(s, problems);
    return problems;
  }

 private:
  std::uint64_t mask_of(std::uint64_t w) const noexcept { return w + 1 == words_ ? tail_ : 0; }
  bool bit_is_set(std::uint64_t s, mo order) const {
    return (P::load(v_.bitmap[s / 64].bits, order) >> (s % 64)) & 1u;
  }

  // The next word to scan after w, without a divide.
  std::uint64_t next_word(std::uint64_t w) const noexcept { return w + 1 == words_ ? 0 : w + 1; }

  // The free bit to try first in a word: the lowest at or above `from`
  // (processes start at different bits, so they do not all race for one
  // slot), else the lowest.
  static unsigned pick_bit(std::uint64_t taken, unsigned from) noexcept {
    const std::uint64_t free_bits = ~taken;
    const std::uint64_t above = from == 0 ? free_bits : free_bits & (~std::uint64_t{0} << from);
    return static_cast<unsigned>(std::countr_zero(above != 0 ? above : free_bits));
  }

  // Claims the first FREE slot found from the hint `start` (a slot index):
  // FREE -CAS-> CLAIMING(me) -> ALLOCATED(me).
  claim_outcome claim_one(std::uint64_t start, mo scan, std::uint64_t& slot) {
    const std::uint64_t me = P::self_identity();
    bool in_flux = false;
    std::uint64_t w = (start / 64) < words_ ? start / 64 : 0;
    unsigned from = static_cast<unsigned>(start % 64);
    for (std::uint64_t k = 0; k < words_; ++k, w = next_word(w), from = 0) {
      std::uint64_t taken = P::load(v_.bitmap[w].bits, scan) | mask_of(w);
      while (taken != ~std::uint64_t{0}) {
        const unsigned b = pick_bit(taken, from);
        taken |= std::uint64_t{1} << b;
        if (try_claim(w * 64 + b, me, in_flux, /*publish=*/true)) {
          slot = w * 64 + b;
          return claim_outcome::claimed;
        }
      }
    }
    return in_flux ? claim_outcome::in_flux : claim_outcome::full;
  }

  // Free bits seen by one scan (in-flux slots included).
  std::uint64_t free_bits_seen(mo scan) const {
    std::uint64_t n = 0;
    for (std::uint64_t w = 0; w < words_; ++w)
      n += static_cast<std::uint64_t>(std::popcount(~(P::load(v_.bitmap[w].bits, scan) | mask_of(w))));
    return n;
  }

  // Claims n slots, or none.  The batch stays CLAIMING(me) until all n are
  // claimed, so a failed batch rolls back slots nobody else can touch (I3)
  // and counts no allocation (I6: allocs rises at publish); a dead
  // batcher's slots are CLAIMING(dead).  W2: a scan that sees fewer than n
  // free bits claims nothing (so nothing to roll back, nobody to wake).
  claim_outcome claim_batch(std::size_t n, std::uint64_t start, mo scan, std::vector<std::uint64_t>& got,
                            waiter_ctx& self) {
    const std::uint64_t me = P::self_identity();
    bool in_flux = false;
    got.clear();
    if (free_bits_seen(scan) < n) return claim_outcome::full;
    std::uint64_t w = (start / 64) < words_ ? start / 64 : 0;
    for (std::uint64_t k = 0; k < words_ && got.size() < n; ++k, w = next_word(w)) {
      std::uint64_t taken = P::load(v_.bitmap[w].bits, scan) | mask_of(w);
      while (taken != ~std::uint64_t{0} && got.size() < n) {
        const unsigned b = static_cast<unsigned>(std::countr_one(taken));
        taken |= std::uint64_t{1} << b;
        if (try_claim(w * 64 + b, me, in_flux, /*publish=*/false)) {
          got.push_back(w * 64 + b);
          P::crash_point(crash_site::alloc_n_partial);
        }
      }
    }
    if (got.size() == n) {
      for (const std::uint64_t s : got) publish_claim(s, me);
      return claim_outcome::claimed;
    }
    for (const std::uint64_t s : got) finish_release(s, crash_site::alloc_n_rollback);
    // Others may have slept on the bits we held: wake them, not us (W2).
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

  // One slot: FREE -> CLAIMING(me) -> (bit) -> ALLOCATED(me).
  bool try_claim(std::uint64_t s, std::uint64_t me, bool& in_flux, bool publish) {
    std::uint64_t expected = 0;
#if defined(SHMPOOL_MUTANT_OWNER_AFTER_CLAIM)
    // Defect: claim anonymously and name the owner later (the seed's window).
    if (!P::cas(v_.meta[s].word, expected, make_slot_word(slot_state::claiming, 0), O::claim)) {
#else
    if (!P::cas(v_.meta[s].word, expected, make_slot_word(slot_state::claiming, me), O::claim)) {  // O1
#endif
      in_flux |= state_of(expected) == slot_state::releasing;
      return false;
    }
    P::crash_point(crash_site::alloc_claimed);
    P::fetch_or(v_.bitmap[s / 64].bits, std::uint64_t{1} << (s % 64), mo::relaxed);  // summary only (I1)
    P::crash_point(crash_site::alloc_bit_set);
    if (publish) publish_claim(s, me);
    return true;
  }

  // CLAIMING(me) -> ALLOCATED(me), counting the allocation first (I6).
  void publish_claim(std::uint64_t s, std::uint64_t me) {
    // Only the claimant writes allocs (I3), so load+store suffices; release:
    // a stats() that reads the new count then reads a word no older (I6).
    P::store(v_.meta[s].allocs, P::load(v_.meta[s].allocs, mo::relaxed) + 1, mo::release);
    P::store(v_.meta[s].word, make_slot_word(slot_state::allocated, me), O::publish);  // O2
    P::crash_point(crash_site::alloc_published);
  }

  // ALLOCATED(x) -CAS-> RELEASING(me), then finish.  False if not allocated.
  bool release(std::uint64_t s, bool only_allocated) {
    const std::uint64_t me = P::self_identity();
    std::uint64_t cur = P::load(v_.meta[s].word, mo::relaxed);
    for (;;) {
      if (only_allocated && state_of(cur) != slot_state::allocated) return false;
#if defined(SHMPOOL_MUTANT_OWNER_CLEARED_AFTER_RELEASE)
      // Defect: release the bit first and clear the owner afterwards.
      (void)me;
      P::fetch_and(v_.bitmap[s / 64].bits, ~(std::uint64_t{1} << (s % 64)), O::bit_clear);
      P::crash_point(crash_site::free_bit_cleared);
      if (P::cas(v_.meta[s].word, cur, std::uint64_t{0}, O::mark)) return true;
#else
      if (P::cas(v_.meta[s].word, cur, make_slot_word(slot_state::releasing, me), O::mark)) break;  // O3
#endif
    }
    P::crash_point(crash_site::free_marked);
    finish_release(s, crash_site::free_bit_cleared);
    return true;
  }

  // RELEASING(me) -> clear bit -> FREE.
  void finish_release(std::uint64_t s, crash_site after_clear) {
    P::fetch_and(v_.bitmap[s / 64].bits, ~(std::uint64_t{1} << (s % 64)), O::bit_clear);  // O4 (W1)
    P::crash_point(after_clear);
    P::store(v_.meta[s].word, std::uint64_t{0}, O::free_store);  // O5: slot claimable again
    P::crash_point(crash_site::free_done);
  }

  // Bits set over FREE words break I1, and bits beyond capacity break the
  // tail rule (only corruption does either): own the word by CAS, clear the
  // bit, release it.
  std::size_t repair_orphan_bits(std::uint64_t me) {
    std::size_t repaired = 0;
    // Bits beyond capacity are never set by the protocol: clear them.
    if (tail_ != 0 && (P::load(v_.bitmap[words_ - 1].bits, mo::relaxed) & tail_) != 0)
      P::fetch_and(v_.bitmap[words_ - 1].bits, ~tail_, mo::relaxed);
    for (std::uint64_t w = 0; w < words_; ++w) {
      std::uint64_t bits = P::load(v_.bitmap[w].bits, mo::acquire) & ~mask_of(w);
      while (bits != 0) {
        const unsigned b = static_cast<unsigned>(std::countr_zero(bits));
        bits &= bits - 1;
        const std::uint64_t s = w * 64 + b;
        std::uint64_t expected = 0;
        if (!P::cas(v_.meta[s].word, expected, make_slot_word(slot_state::releasing, me), O::mark)) continue;
        // Our view of the bitmap may be stale: the slot may have been freed
        // legitimately since.  Owning the word now, look again.
        if (!bit_is_set(s, mo::acquire)) {
          P::store(v_.meta[s].word, std::uint64_t{0}, O::free_store);
          continue;
        }
        finish_release(s, crash_site::recover_bit_cleared);
        ++repaired;
      }
    }
    return repaired;
  }

  // W1: the freer clears a bit (O4) and then reads the waiter entries (O6),
  // all but `skip` (the caller's own, W2).  Returns wake_seq's value before
  // the bump, or nothing if no waiter was seen.
  std::optional<int> wake_waiters(int skip = -1) {
    bool anyone = false;
    for (unsigned k = 0; k < waiter_slots && !anyone; ++k)
      anyone = static_cast<int>(k) != skip && P::load(v_.control->waiter[k], O::waiter_check) != 0;  // O6
    if (!anyone) return std::nullopt;
    const int before = P::fetch_add(v_.control->wake_seq, 1, O::wake_bump);  // O9
    P::futex_wake(v_.control->wake_seq, INT_MAX);
    return before;
  }

  // Takes a free waiter entry (O7, I7); -1 when all are taken.
  int register_waiter(std::uint64_t me) {
    for (unsigned k = 0; k < waiter_slots; ++k) {
      std::uint64_t expected = 0;
      if (P::load(v_.control->waiter[k], mo::relaxed) == 0 &&
          P::cas(v_.control->waiter[k], expected, me, O::waiter_register))
        return static_cast<int>(k);
    }
    return -1;
  }

  // The slow path shared by alloc and alloc_n: register, re-scan, sleep.
  template <class Attempt>
  bool wait_until_claimed(std::int64_t timeout_ns, Attempt&& attempt) {
    const std::int64_t deadline = timeout_ns < 0 ? -1 : P::now_ns() + timeout_ns;
    P::fetch_add(v_.control->waits, std::uint64_t{1}, mo::relaxed);
    waiter_ctx self;
    self.entry = register_waiter(P::self_identity());  // O7
    P::crash_point(crash_site::wait_registered);
    std::int64_t poll_ns = 50'000;  // in-flux poll, doubling to 10 ms
    bool claimed = false;
    for (;;) {
      self.seq = P::load(v_.control->wake_seq, O::wake_read);  // O10
      const claim_outcome got = attempt(O::waiter_scan, self);  // O8
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
    if (self.entry >= 0) P::store(v_.control->waiter[self.entry], std::uint64_t{0}, mo::relaxed);
    if (!claimed) P::fetch_add(v_.control->timeouts, std::uint64_t{1}, mo::relaxed);
    return claimed;
  }

  void check_slot(std::uint64_t s, std::vector<std::string>& problems) const {
    const std::uint64_t w = P::load(v_.meta[s].word, mo::acquire);
    const bool bit = bit_is_set(s, mo::acquire);
    const std::string at = "slot " + std::to_string(s) + ": ";
    const auto pid = std::to_string(platform::identity_pid(identity_of(w)));
    switch (state_of(w)) {
      case slot_state::free:
        if (w != 0) problems.push_back(at + "malformed slot word (free state with an owner)");
        else if (bit) problems.push_back(at + "bitmap bit set but the slot is free");
        break;
      case slot_state::allocated:
        if (!bit) problems.push_back(at + "allocated by pid " + pid + " but its bitmap bit is clear");
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
  std::uint64_t words_;
  std::uint64_t tail_;
};

}  // namespace shmpool::detail
