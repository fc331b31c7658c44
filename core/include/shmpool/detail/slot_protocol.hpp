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
//   waiters     processes registered as about to sleep or asleep
//   wake_seq    futex word; bumped by every free that sees waiters
//
// TRANSITIONS (the only writers of a slot word)
//   alloc:   FREE -CAS-> CLAIMING(me); set bit; store ALLOCATED(me)
//   alloc_n: claims each slot as above but publishes ALLOCATED only once all
//            n are CLAIMING(me); a short batch is unclaimed (bit, then FREE)
//   free:    ALLOCATED(x) -CAS-> RELEASING(me); clear bit; store FREE; wake
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
//   W1  no lost wake-up: a freer clears the bit (seq_cst) then reads waiters
//       (seq_cst); a waiter registers (seq_cst) then scans (seq_cst).  Either
//       the freer sees the waiter and bumps wake_seq, or the waiter's scan
//       sees the cleared bit.  A cleared bit whose word is still RELEASING is
//       "in flux": the waiter polls with a short timeout instead of sleeping.
//
// CRASH WINDOWS (a process may die between any two steps; crash_site names them)
//   after CLAIMING(me)        word names me: recovery frees it when I am dead
//   after bit set             same
//   after RELEASING(me)       recovery (seeing me dead) takes it over and finishes
//   after bit cleared         same; the slot is unclaimable until then (never leaked)
//   after FREE, before wake   sleepers may miss this free: recover_stale()
//                             always wakes waiters, so a survivor's recovery
//                             closes it (stress.sweep_wakeup_after_killed_freer)
//   asleep, registered        waiters stays one too high: frees make a wake
//                             syscall they did not need; nothing is lost.
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
  static constexpr mo publish = mo::relaxed;      // O2 ALLOCATED store
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

template <class P>
struct pool_control {
  alignas(64) typename P::template atomic<std::uint32_t> waiters;
  alignas(64) typename P::template atomic<int> wake_seq;
  alignas(64) typename P::template atomic<std::uint64_t> waits;
  typename P::template atomic<std::uint64_t> timeouts;
  typename P::template atomic<std::uint64_t> recoveries;
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
    const bool ok = wait_until_claimed(timeout_ns, [&](mo scan) { return claim_one(start, scan, slot); });
    return ok ? std::optional<std::uint64_t>(slot) : std::nullopt;
  }

  // Claims n slots or none.  n must be 1..capacity (the handle checks).
  std::optional<std::vector<std::uint64_t>> alloc_n(std::size_t n, std::int64_t timeout_ns,
                                                    std::uint64_t start) {
    std::vector<std::uint64_t> got;
    got.reserve(n);
    auto attempt = [&](mo scan) { return claim_batch(n, start, scan, got); };
    if (attempt(mo::acquire) == claim_outcome::claimed) return got;
    if (timeout_ns == 0 || !wait_until_claimed(timeout_ns, attempt)) return std::nullopt;
    return got;
  }

  // ---- free ----------------------------------------------------------------
  bool free(std::uint64_t slot) {
    if (!release(slot, /*only_allocated=*/true)) return false;
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
  std::uint64_t total_allocs() const {
    std::uint64_t n = 0;
    for (std::uint64_t s = 0; s < v_.capacity; ++s) n += P::load(v_.meta[s].allocs, mo::relaxed);
    return n;
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

  // Claims n slots, or none.  The batch stays CLAIMING(me) until all n are
  // claimed, so a failed batch rolls back slots nobody else can touch (I3)
  // and counts no allocation; a dead batcher's slots are CLAIMING(dead).
  claim_outcome claim_batch(std::size_t n, std::uint64_t start, mo scan, std::vector<std::uint64_t>& got) {
    const std::uint64_t me = P::self_identity();
    bool in_flux = false;
    got.clear();
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
      for (const std::uint64_t s : got) P::store(v_.meta[s].word, make_slot_word(slot_state::allocated, me), O::publish);
      return claim_outcome::claimed;
    }
    for (const std::uint64_t s : got) {
      P::store(v_.meta[s].allocs, P::load(v_.meta[s].allocs, mo::relaxed) - 1, mo::relaxed);  // not an allocation
      finish_release(s, crash_site::alloc_n_rollback);
    }
    if (!got.empty()) wake_waiters();
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
    // Only the claimant writes this counter (I3), so load+store suffices.
    P::store(v_.meta[s].allocs, P::load(v_.meta[s].allocs, mo::relaxed) + 1, mo::relaxed);
    P::fetch_or(v_.bitmap[s / 64].bits, std::uint64_t{1} << (s % 64), mo::relaxed);  // summary only (I1)
    P::crash_point(crash_site::alloc_bit_set);
    if (!publish) return true;
    P::store(v_.meta[s].word, make_slot_word(slot_state::allocated, me), O::publish);  // O2
    P::crash_point(crash_site::alloc_published);
    return true;
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

  // W1: the freer clears a bit (O4) and then reads waiters (O6).
  void wake_waiters() {
    if (P::load(v_.control->waiters, O::waiter_check) == 0) return;  // O6
    P::fetch_add(v_.control->wake_seq, 1, O::wake_bump);              // O9
    P::futex_wake(v_.control->wake_seq, INT_MAX);
  }

  // The slow path shared by alloc and alloc_n: register, re-scan, sleep.
  template <class Attempt>
  bool wait_until_claimed(std::int64_t timeout_ns, Attempt&& attempt) {
    const std::int64_t deadline = timeout_ns < 0 ? -1 : P::now_ns() + timeout_ns;
    P::fetch_add(v_.control->waits, std::uint64_t{1}, mo::relaxed);
    P::fetch_add(v_.control->waiters, std::uint32_t{1}, O::waiter_register);  // O7
    P::crash_point(crash_site::wait_registered);
    std::int64_t poll_ns = 50'000;  // in-flux poll, doubling to 10 ms
    bool claimed = false;
    for (;;) {
      const int seq = P::load(v_.control->wake_seq, O::wake_read);  // O10
      const claim_outcome got = attempt(O::waiter_scan);             // O8
      if (got == claim_outcome::claimed) {
        claimed = true;
        break;
      }
      std::int64_t wait_ns = -1;
      if (deadline >= 0) {
        wait_ns = deadline - P::now_ns();
        if (wait_ns <= 0) break;
      }
      if (got == claim_outcome::in_flux) {
        wait_ns = wait_ns < 0 ? poll_ns : (wait_ns < poll_ns ? wait_ns : poll_ns);
        poll_ns = poll_ns < 10'000'000 ? poll_ns * 2 : poll_ns;
      }
      P::futex_wait(v_.control->wake_seq, seq, wait_ns);
    }
    P::fetch_sub(v_.control->waiters, std::uint32_t{1}, mo::relaxed);
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
