// The stable_reference_buffer registry: one reference count per heap block
// for the whole process, whichever static copy of the core touches it.
// Production (linux_platform) and a model checker (a Relacy platform) run
// this one template; it reaches shared state only through the seam
// (platform/seam.hpp).  How a copy finds the registry (the anchor page) and
// the fork handlers live in srb_anchor.cpp, srb_registry.cpp and
// core/PROTOCOL.md.
//
// WHERE IT LIVES
//   The registry object and everything it points to are process-private
//   anonymous memory (Pages).  Every static copy of the core in the process
//   finds the same object through the anchor page, so pointers into it are
//   valid for all of them; a fork child gets a copy-on-write snapshot taken
//   by the kernel at the instant of the fork.  A published registry is
//   never destroyed while the process lives (copies only detach), so a
//   block created by a copy that was unloaded stays counted.
//
// LAYOUT
//   id_        magic, format, own address, nonce: checked by a new copy before
//              it trusts the address it read from the anchor page
//   L          a futex mutex (0 free, 1 held, 2 held with sleepers)
//   entries    32-byte records in chunks that never move: chunk k holds
//              first_chunk_entries << k records, so 40 chunks never run out.
//              An instance caches a pointer to its entry.
//   index      open-addressing hash (linear probing, backward-shift delete)
//              block address -> entry; doubles at half load.
//   free list  recycled entries;  pending list: released, not yet freed.
//   scopes     the live delay scopes (srb_scope, doubly linked), for fork.
//   tokens     the caller's per-thread key and the count of thread tokens
//              handed out (scope openers, G7).
//
// ENTRY STATES (where the entry is: the index, the pending list, the free list)
//   unused  -> live      insert: in the index, count 1, next == nullptr
//   live    -> pending   last reference dropped inside a delay scope: stays
//                        in the index, joins the pending list (next != nullptr)
//   live    -> free      last reference dropped, no delay scope: block freed
//   pending -> live      adopt inside the scope (the seed's re-adoption): count 1
//   pending -> free      outermost delay scope ended: block freed
//   free    -> live      insert reuses it
//
// INVARIANTS
//   G1  every access to block, next, the index, the lists and the
//       bookkeeping counters happens under L.
//   G2  an entry is in the index iff it is live or pending; its key is its
//       block.  It is pending iff next != nullptr (the list's last entry
//       points to itself).
//   G3  count > 0  =>  live.  A copy needs a holder (count >= 1 already) and
//       adopt increments a live count only from count > 0, by CAS under L.
//       count == 0 is terminal except for a pending entry, which adopt (under
//       L, so never racing retire or drain) makes live again with count 1.
//   G4  a block is freed exactly once: by whoever takes its entry out of the
//       live state with depth == 0 (retire), or by the exit that brings
//       depth to 0 (drain); both under L, and each entry leaves live once.
//   G5  depth == number of counted scopes on the scope list; while depth > 0,
//       retire moves entries to pending instead of freeing (checked under L,
//       so a scope entered before a retire takes L is always seen).  A scope
//       may be exited on any thread: it carries its own record.
//   G6  live_ == number of live entries; pending_ == length of the pending
//       list.  Exact whenever L is free.
//   G7  a scope's opener is its thread's token: handed out once under L
//       (new_thread_token), never 0 and never reused while the process
//       lives, so a thread made later (even one glibc gives a dead thread's
//       pthread_t) never owns an older thread's scope.
//
// ORDERING POINTS (R1..R7, named in srb_orders)
//   R1 copy      fetch_add relaxed: the copier is a holder; nothing to publish.
//   R2 drop      fetch_sub acq_rel: release orders this holder's uses of the
//                block before the free; the acquire on the last drop sees
//                every other holder's uses.  No standalone fence (TSan).
//   R3/R4 L      acquire on lock, release on unlock.  Everything under L
//                (G1) is ordered by it, including the count of a new entry
//                and adopt's increment.
//   R5 guarded   relaxed accesses made while holding L: L orders them.
//   R6 peek      relaxed reads of use_count and depth for reports.
//   R7 sole      acquire load of count == 1 before an exclusive append
//                reallocates: pairs with the R2 of every holder that left,
//                so their writes happen before realloc reads the block.
//
// FORK (the caller runs these from pthread_atfork, once per static copy)
//   prepare takes L (nesting on the forking thread's id, unique among live
//   threads, since every copy's handler runs), so no structural change is
//   half done in the snapshot, and counts the counted scopes whose opener is
//   the forking thread's token (G7); the parent's last handler releases L.
//   In the child, the first handler marks every other scope uncounted (its
//   thread did not survive; if the child ever exits it, nothing changes),
//   sets depth to the forking thread's scopes, and frees pending blocks if
//   that is 0; the last handler releases L.  Counts need no work: the
//   snapshot is exact.  The caller makes sure no thread can take L between
//   its prepare handlers and the fork (srb_registry.cpp: attach and fork
//   exclude each other).
//
// MUTANTS (mutation checks only; production defines none)
//   SHMPOOL_MUTANT_REGISTRY_NO_ZERO_CHECK      every drop retires the block
//   SHMPOOL_MUTANT_DELAY_FREES_AT_INNER_EXIT   any scope exit drains pending
//   SHMPOOL_MUTANT_REGISTRY_SECOND_WHEN_UNSEEN a copy that does not find the
//                                              anchor at once makes a second registry (srb_anchor.cpp)
//   SHMPOOL_MUTANT_SCOPE_BY_THREAD_ID          scope openers are pthread_self(), which glibc
//                                              reuses (srb_registry.cpp; breaks G7)
//   SHMPOOL_MUTANT_FORK_LOCK_UNHELD            the prepare handler does not wait for an attach
//                                              in progress (srb_registry.cpp)
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <new>

#include "shmpool/platform/seam.hpp"

namespace shmpool::detail {

using platform::crash_site;
using platform::mo;

// "SHMPSRB1" read as a little-endian word.
inline constexpr std::uint64_t srb_registry_magic = 0x3142'5253'504D'4853ULL;
inline constexpr std::uint64_t srb_version = 3;  // 3: scope openers are thread tokens (G7)

// The memory order of every ordering point, by what it orders.
struct srb_orders {
  static constexpr mo copy = mo::relaxed;     // R1 add a reference; pairs with nothing
  static constexpr mo drop = mo::acq_rel;     // R2 drop a reference; pairs with other R2s
  static constexpr mo lock_take = mo::acquire;  // R3 take L; pairs with R4
  static constexpr mo lock_give = mo::release;  // R4 give L back; pairs with R3
  static constexpr mo guarded = mo::relaxed;  // R5 accesses under L; L (R3/R4) orders them
  static constexpr mo peek = mo::relaxed;     // R6 advisory reads
  static constexpr mo sole = mo::acquire;     // R7 "am I the only holder?"; pairs with R2 of those who left
};

// Read first by a copy that found the registry's address in the anchor
// page; all four words are written once, before the address is published.
struct srb_registry_id {
  std::uint64_t magic;
  std::uint64_t format;
  std::uint64_t self;   // the registry's own address
  std::uint64_t nonce;  // the same value is in the anchor page
};

// One live delay scope: where it was opened, and its links on the
// registry's scope list (G1: all fields under L).
struct srb_scope {
  std::uint64_t opener = 0;  // the opening thread's token (G7); compared at fork
  srb_scope* prev = nullptr;
  srb_scope* next = nullptr;
  bool counted = false;      // in depth (G5); false once a fork left its thread behind
};

template <class P>
struct srb_entry {
  typename P::template atomic<std::uint64_t> count;  // references held (R1, R2; G3)
  void* block;         // G1: the memory counted
  void* home;          // the registry; written once when the entry is first used
  srb_entry* next;     // G1: next entry on the pending or free list
};

template <class P>
struct srb_index_slot {
  std::uint64_t key;   // block address; 0 = empty
  srb_entry<P>* entry;
};

struct srb_stats {
  std::uint64_t live = 0;         // blocks with references
  std::uint64_t pending = 0;      // released blocks a delay scope keeps
  std::uint64_t frees = 0;        // blocks freed since the registry was made
  std::uint64_t entries = 0;      // entry records ever handed out (high-water mark)
  std::uint64_t index_slots = 0;  // capacity of the hash index
  std::uint64_t copies = 0;       // static copies of the core attached now
  std::int64_t depth = 0;         // delay scopes alive
};

enum class srb_adopt { adopted, unknown, released };
enum class srb_grow { done, shared, failed };

// Pages: static void* map(std::size_t bytes) -> zeroed memory or nullptr;
//        static void unmap(void*, std::size_t bytes).
template <class P, class Pages, class O = srb_orders>
class srb_registry {
 public:
  using entry = srb_entry<P>;
  using slot = srb_index_slot<P>;
  static constexpr std::uint64_t first_chunk_entries = 1024;
  static constexpr unsigned max_chunks = 40;
  static constexpr std::uint64_t first_index_slots = 2048;

  // Version and the sizes of every shared record: two copies of the core
  // share a registry only if they agree on all of them.
  static constexpr std::uint64_t format_word() noexcept {
    return (srb_version << 56) | (std::uint64_t{sizeof(srb_registry)} << 32) | (std::uint64_t{sizeof(entry)} << 20) |
           (std::uint64_t{sizeof(srb_scope)} << 10) | sizeof(slot);
  }
  static_assert(sizeof(srb_registry_id) == 32);

  explicit srb_registry(std::uint64_t nonce) noexcept
      : id_{srb_registry_magic, format_word(), reinterpret_cast<std::uintptr_t>(this), nonce} {
    static_assert(format_word() != 0 && format_word() != ~std::uint64_t{0});  // all-0 and all-1 are invalid
    static_assert(sizeof(entry) < 1024 && sizeof(srb_scope) < 1024 && sizeof(slot) < 1024);
    // Initial values (R5): the registry reaches other threads only through
    // the anchor page or this copy's registry pointer, both published later.
    P::store(lock_word_, 0, O::guarded);
    P::store(depth_, std::int64_t{0}, O::guarded);
    P::store(fork_tid_, std::uint64_t{0}, O::guarded);
  }
  // Production never destroys a registry that was published (instances in
  // any copy may still point into it); a model or a discarded fresh
  // registry does.  Releases the memory, not the blocks.
  ~srb_registry() {
    for (unsigned k = 0; k < chunk_count_; ++k) {
      const std::uint64_t made = k + 1 == chunk_count_ ? chunk_used_ : chunk_entries(k);
      for (std::uint64_t i = 0; i < made; ++i) chunks_[k][i].~entry();
      Pages::unmap(chunks_[k], chunk_entries(k) * sizeof(entry));
    }
    if (index_ != nullptr) Pages::unmap(index_, index_cap_ * sizeof(slot));
  }
  srb_registry(const srb_registry&) = delete;
  srb_registry& operator=(const srb_registry&) = delete;

  const srb_registry_id& id() const noexcept { return id_; }

  // ---- the hot path: no lock ------------------------------------------------
  static void add_ref(entry& e) noexcept { P::fetch_add(e.count, std::uint64_t{1}, O::copy); }  // R1

  // True when the caller dropped the last reference and must call retire.
  static bool drop_ref(entry& e) noexcept {
    const std::uint64_t before = P::fetch_sub(e.count, std::uint64_t{1}, O::drop);  // R2
#if defined(SHMPOOL_MUTANT_REGISTRY_NO_ZERO_CHECK)
    (void)before;
    return true;
#else
    return before == 1;
#endif
  }
  static std::uint64_t use_count(const entry& e) noexcept { return P::load(e.count, O::peek); }  // R6
  static srb_registry& home_of(const entry& e) noexcept { return *static_cast<srb_registry*>(e.home); }
  bool delaying() const noexcept { return P::load(depth_, O::peek) > 0; }  // R6

  // ---- creation and release -------------------------------------------------
  // A live entry for block with count 1, or nullptr when out of memory.
  entry* insert(void* block) noexcept {
    held h(*this);
    entry* e = take_entry();
    if (e == nullptr) return nullptr;
    if (!index_put(key_of(block), e)) {
      push(free_head_, *e);
      return nullptr;
    }
    e->block = block;
    e->next = nullptr;
    P::store(e->count, std::uint64_t{1}, O::guarded);  // R5; published by R4 or by handing the instance over
    ++live_;
    P::crash_point(crash_site::registry_inserted);
    return e;
  }

  // After drop_ref returned true: the block is freed now (it leaves the
  // index; free_block(block), under L) or parked on the pending list, still
  // in the index, until the outermost scope ends (G2).
  template <class Free>
  void retire(entry& e, Free&& free_block) noexcept {
    P::crash_point(crash_site::registry_decremented);
    held h(*this);
    if (index_find(key_of(e.block)) != &e || e.next != nullptr) return;  // not live: only a mutant retires twice
    --live_;
    if (P::load(depth_, O::guarded) > 0) {  // R5 under L: sees every scope entered before (G5)
      e.next = pending_head_ == nullptr ? &e : pending_head_;  // the last pending entry points to itself (G2)
      pending_head_ = &e;
      ++pending_;
      return;
    }
    index_erase(key_of(e.block));
    release_block(e, free_block);
  }

  // ---- lookups (under L) ------------------------------------------------------
  srb_adopt adopt(const void* block, entry*& out) noexcept {
    held h(*this);
    entry* e = index_find(key_of(block));
    if (e == nullptr) return srb_adopt::unknown;
    if (e->next != nullptr) {  // pending: released inside a live scope, not yet freed (G3)
      revive(*e);
      out = e;
      return srb_adopt::adopted;
    }
    std::uint64_t c = P::load(e->count, O::guarded);  // R5; a racing drop is caught by the CAS
    do {
      if (c == 0) return srb_adopt::released;  // G3: dropping to zero, retire waits for L
    } while (!P::cas(e->count, c, c + 1, O::guarded));  // R5: ordered by L with insert
    out = e;
    return srb_adopt::adopted;
  }

  bool known(const void* block) noexcept {
    held h(*this);
    const entry* e = index_find(key_of(block));
    if (e == nullptr) return false;
    return e->next != nullptr || P::load(e->count, O::guarded) > 0;  // R5; pending, or live (0 = being retired)
  }

  // Grows an exclusively held block in place: when e has one reference and
  // no delay scope is alive, calls regrow(old) -> new block or nullptr,
  // under L (so no adopter can take the old address meanwhile), and moves
  // the index key if the block moved.  `shared` asks for copy-on-write.
  template <class Regrow>
  srb_grow grow_exclusive(entry& e, Regrow&& regrow) noexcept {
    held h(*this);
    // R7: acquires the releases (R2) of holders that let go, so their
    // writes to the block happen before regrow reads it.  With L held no
    // adopter can raise a count of 1, and the caller is the only holder.
    if (P::load(e.count, O::sole) != 1 || P::load(depth_, O::guarded) > 0) return srb_grow::shared;
    const std::uint64_t old_key = key_of(e.block);  // taken before regrow may free the block
    void* const moved = regrow(e.block);
    if (moved == nullptr) return srb_grow::failed;
    if (key_of(moved) != old_key) {
      index_erase(old_key);
      index_put(key_of(moved), &e);  // cannot fail: the erase made room
    }
    e.block = moved;
    return srb_grow::done;
  }

  // ---- delay scopes -------------------------------------------------------------
  // s is the scope's own record (it outlives the scope's exit, on any thread);
  // opener is the opening thread's token (G7), for fork.
  void enter_delay(srb_scope& s, std::uint64_t opener) noexcept {
    held h(*this);
    s = srb_scope{opener, nullptr, scopes_, true};
    if (scopes_ != nullptr) scopes_->prev = &s;
    scopes_ = &s;
    P::fetch_add(depth_, std::int64_t{1}, O::guarded);  // R5 under L (G5)
  }

  template <class Free>
  void exit_delay(srb_scope& s, Free&& free_block) noexcept {
    held h(*this);
    (s.prev != nullptr ? s.prev->next : scopes_) = s.next;
    if (s.next != nullptr) s.next->prev = s.prev;
    if (!s.counted) return;  // opened by a thread a fork left behind: never in this depth
    const std::int64_t left = P::fetch_sub(depth_, std::int64_t{1}, O::guarded) - 1;  // R5 under L (G4, G5)
#if defined(SHMPOOL_MUTANT_DELAY_FREES_AT_INNER_EXIT)
    (void)left;
    drain(free_block);
#else
    if (left == 0) drain(free_block);
#endif
  }

  // ---- static copies attached (for reports; a registry is never retired) ------
  void attach_copy() noexcept {
    held h(*this);
    ++copies_;
  }
  void detach_copy() noexcept {
    held h(*this);
    if (copies_ != 0) --copies_;
  }

  // ---- thread tokens (G7) --------------------------------------------------------
  // The word in which the caller keeps the key of its per-thread tokens,
  // made once per process by the first caller: make() -> the word, 0 when
  // it cannot (then the next caller tries again).  Under L (G1).
  template <class MakeKey>
  std::uint64_t thread_key(MakeKey&& make) noexcept {
    held h(*this);
    if (thread_key_ == 0) thread_key_ = make();
    return thread_key_;
  }
  // A token no thread of this process had before (G7).
  std::uint64_t new_thread_token() noexcept {
    held h(*this);
    return ++tokens_made_;
  }

  // ---- fork ----------------------------------------------------------------------
  // forker: the forking thread's id, unique among live threads (the nesting
  // of this fork's handlers).  token_of(key word) -> the forking thread's
  // token, 0 if it has none; called under L, so it must not take L.
  template <class TokenOf>
  void fork_prepare(std::uint64_t forker, TokenOf&& token_of) noexcept {
    // R5: fork_tid_ changes only under L, and only this thread can have
    // stored its own id there, so a stale value can never look like ours.
    if (P::load(fork_tid_, O::guarded) == forker) {  // an earlier copy's handler of this fork holds L
      ++fork_holds_;
      return;
    }
    lock();
    P::store(fork_tid_, forker, O::guarded);  // R5 under L; read back only by this thread
    fork_holds_ = 1;
    fork_token_ = thread_key_ == 0 ? 0 : token_of(thread_key_);  // no key: no thread has a token yet
    fork_scopes_ = 0;
    for (const srb_scope* s = scopes_; s != nullptr; s = s->next)
      fork_scopes_ += s->counted && s->opener == fork_token_;  // openers are never 0 (G7)
    fork_child_first_ = true;
  }
  void fork_parent() noexcept {
    if (fork_holds_ == 0 || --fork_holds_ != 0) return;
    P::store(fork_tid_, std::uint64_t{0}, O::guarded);  // R5 under L, before R4 below
    unlock();
  }
  // In the child, once per copy's handler; the first does the work.
  template <class Free>
  void fork_child(Free&& free_block) noexcept {
    if (fork_child_first_) {
      fork_child_first_ = false;
      for (srb_scope* s = scopes_; s != nullptr; s = s->next)
        if (s->opener != fork_token_) s->counted = false;  // its thread is gone (G5, G7)
      P::store(depth_, fork_scopes_, O::guarded);
      if (fork_scopes_ == 0) drain(free_block);
    }
    if (fork_holds_ != 0 && --fork_holds_ == 0) {
      P::store(fork_tid_, std::uint64_t{0}, O::guarded);  // single-threaded child
      P::store(lock_word_, 0, O::lock_give);  // R4; no sleeper survived the fork
    }
  }

  srb_stats stats() noexcept {
    held h(*this);
    return {live_, pending_, frees_, entries_made_, index_cap_, copies_, P::load(depth_, O::guarded)};  // R5
  }

 private:
  class held {  // L for one scope
   public:
    explicit held(srb_registry& r) noexcept : r_(r) { r_.lock(); }
    ~held() { r_.unlock(); }
    held(const held&) = delete;
    held& operator=(const held&) = delete;

   private:
    srb_registry& r_;
  };

  void lock() noexcept {
    int expected = 0;
    if (P::cas(lock_word_, expected, 1, O::lock_take)) return;  // R3
    while (P::exchange(lock_word_, 2, O::lock_take) != 0) P::futex_wait(lock_word_, 2, -1);  // R3
  }
  void unlock() noexcept {
    if (P::exchange(lock_word_, 0, O::lock_give) == 2) P::futex_wake(lock_word_, 1);  // R4
  }

  static std::uint64_t key_of(const void* block) noexcept { return reinterpret_cast<std::uintptr_t>(block); }
  static void push(entry*& head, entry& e) noexcept {
    e.next = head;
    head = &e;
  }

  template <class Free>
  void release_block(entry& e, Free& free_block) noexcept {
    void* const block = e.block;
    e.block = nullptr;
    push(free_head_, e);
    ++frees_;
    free_block(block);
  }

  // Frees every pending block (G4: the exit that brought depth to 0).
  template <class Free>
  void drain(Free& free_block) noexcept {
    while (entry* e = pending_head_) {
      pending_head_ = e->next == e ? nullptr : e->next;
      --pending_;
      index_erase(key_of(e->block));
      release_block(*e, free_block);
    }
  }

  // pending -> live with count 1 (G3): off the pending list, still indexed.
  void revive(entry& e) noexcept {
    entry* before = nullptr;
    for (entry* at = pending_head_; at != &e; at = at->next) before = at;  // e is on the list (G2)
    entry* const after = e.next == &e ? nullptr : e.next;
    if (before == nullptr)
      pending_head_ = after;
    else
      before->next = after == nullptr ? before : after;  // a new last entry points to itself
    e.next = nullptr;
    --pending_;
    ++live_;
    P::store(e.count, std::uint64_t{1}, O::guarded);  // R5: L orders it with retire and drain
    P::crash_point(crash_site::registry_revived);
  }

  // ---- entries: chunks that never move ------------------------------------------
  static constexpr std::uint64_t chunk_entries(unsigned k) noexcept { return first_chunk_entries << k; }

  entry* take_entry() noexcept {
    if (entry* e = free_head_) {
      free_head_ = e->next;
      return e;
    }
    if (chunk_count_ == 0 || chunk_used_ == chunk_entries(chunk_count_ - 1)) {
      if (!add_chunk()) return nullptr;
    }
    entry* e = new (&chunks_[chunk_count_ - 1][chunk_used_++]) entry{};
    e->home = this;
    P::store(e->count, std::uint64_t{0}, O::guarded);  // R5; nobody can see the entry yet
    ++entries_made_;
    return e;
  }

  bool add_chunk() noexcept {
    if (chunk_count_ == max_chunks) return false;
    void* mem = Pages::map(chunk_entries(chunk_count_) * sizeof(entry));
    if (mem == nullptr) return false;
    chunks_[chunk_count_++] = static_cast<entry*>(mem);
    chunk_used_ = 0;
    return true;
  }

  // ---- index: linear probing, backward-shift deletion ----------------------------
  std::uint64_t home_slot(std::uint64_t key) const noexcept {
    return ((key >> 4) * 0x9E37'79B9'7F4A'7C15ULL) >> (64 - std::countr_zero(index_cap_));
  }

  entry* index_find(std::uint64_t key) const noexcept {
    if (key == 0 || index_cap_ == 0) return nullptr;
    for (std::uint64_t i = home_slot(key);; i = (i + 1) & (index_cap_ - 1)) {
      if (index_[i].key == key) return index_[i].entry;
      if (index_[i].key == 0) return nullptr;
    }
  }

  bool index_put(std::uint64_t key, entry* e) noexcept {
    if (2 * (index_size_ + 1) > index_cap_ && !index_grow()) return false;
    std::uint64_t i = home_slot(key);
    while (index_[i].key != 0) i = (i + 1) & (index_cap_ - 1);
    index_[i] = {key, e};
    ++index_size_;
    return true;
  }

  void index_erase(std::uint64_t key) noexcept {
    const std::uint64_t mask = index_cap_ - 1;
    std::uint64_t hole = home_slot(key);
    while (index_[hole].key != key) {
      if (index_[hole].key == 0) return;
      hole = (hole + 1) & mask;
    }
    // Pull later members of the probe run back over the hole.
    for (std::uint64_t j = (hole + 1) & mask; index_[j].key != 0; j = (j + 1) & mask) {
      const std::uint64_t want = home_slot(index_[j].key);
      const bool stays = hole <= j ? (hole < want && want <= j) : (hole < want || want <= j);
      if (stays) continue;
      index_[hole] = index_[j];
      hole = j;
    }
    index_[hole] = {0, nullptr};
    --index_size_;
  }

  bool index_grow() noexcept {
    const std::uint64_t cap = index_cap_ == 0 ? first_index_slots : 2 * index_cap_;
    auto* fresh = static_cast<slot*>(Pages::map(cap * sizeof(slot)));
    if (fresh == nullptr) return false;
    slot* const old = index_;
    const std::uint64_t old_cap = index_cap_;
    index_ = fresh;
    index_cap_ = cap;
    index_size_ = 0;
    for (std::uint64_t i = 0; i < old_cap; ++i)
      if (old[i].key != 0) index_put(old[i].key, old[i].entry);
    if (old != nullptr) Pages::unmap(old, old_cap * sizeof(slot));
    return true;
  }

  srb_registry_id id_;
  typename P::template atomic<int> lock_word_;  // L
  typename P::template atomic<std::int64_t> depth_;  // G5; written under L, peeked by safe_get
  typename P::template atomic<std::uint64_t> fork_tid_;  // thread whose fork handlers hold L
  std::uint64_t fork_holds_ = 0;   // handlers of the current fork that hold L
  std::uint64_t fork_token_ = 0;   // the forking thread's token (G7); 0: it has none
  std::int64_t fork_scopes_ = 0;   // counted delay scopes the forking thread opened
  bool fork_child_first_ = false;
  srb_scope* scopes_ = nullptr;    // live scopes (G5), newest first
  std::uint64_t thread_key_ = 0;   // the caller's per-thread key word (G7); 0: not made yet
  std::uint64_t tokens_made_ = 0;  // thread tokens handed out (G7)
  std::uint64_t copies_ = 1;  // the creator is attached
  std::uint64_t live_ = 0, pending_ = 0, frees_ = 0, entries_made_ = 0;
  entry* free_head_ = nullptr;
  entry* pending_head_ = nullptr;
  entry* chunks_[max_chunks] = {};
  unsigned chunk_count_ = 0;
  std::uint64_t chunk_used_ = 0;
  slot* index_ = nullptr;
  std::uint64_t index_cap_ = 0, index_size_ = 0;
};

}  // namespace shmpool::detail
