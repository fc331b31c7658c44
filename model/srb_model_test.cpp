// RapidCheck state-machine model of shmpool::stable_reference_buffer.
//
// THE SUT: four instance slots (s0..s3), a stack of delay_deallocation
// scopes, and a list of HELD POINTERS: addresses that the test took with
// safe_get() or get() and keeps reading for as long as the documented
// guarantees say the memory behind them is alive.
//
// THE MODEL (sut.shadow; RapidCheck's own model is empty):
//   per slot   the block it holds (an id), its size, whether it was adopted
//   per block  bytes and current address; a block is LIVE while a slot holds
//              it, PENDING when its last holder let go inside a delay scope
//              (kept until the OUTERMOST scope ends), then DEAD.
//   held       (pointer, block id, bytes that were valid when taken)
//
// WHAT THE HEADER PROMISES, AS MODELLED
//   M1  use_count == holders; get() null iff empty; size; bytes.
//   M2  safe_get() == get() iff holders > 1 or a scope is alive, else null.
//   M3  a block is freed when its last holder lets go with no scope alive,
//       or at the end of the outermost scope if it let go inside one; never
//       earlier.  So a held pointer stays readable while its block is live
//       at that address or pending.  A pointer from safe_get() whose
//       instance then lets go must still be alive (M2 + M3 agree).
//   M4  an exclusive append (holders == 1, no scope) grows in place and may
//       move the block: pointers to the old address are dropped; anything
//       else appends copy-on-write into a new block.
//   M5  is_known: true for live and pending blocks; false for dead
//       addresses no live block reuses, for interior addresses and null;
//       adopting any of those throws std::invalid_argument.  Adopting a
//       pending block makes it live again with one holder (the seed's
//       re-adoption inside a scope): it outlives the scope.
//   M6  (in the test cases that draw it) the registry's live / pending /
//       depth counters equal the model's, and frees grows by one per block
//       that went dead: every block freed exactly once.
//
// Every command ends with expect_same(): all of M1..M6 for every slot,
// every held pointer and every remembered address.  Built with
// AddressSanitizer; before any read of memory the test asks ASan whether
// the bytes are poisoned (freed), so an early free is a RapidCheck failure
// that shrinks, not an abort.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <iterator>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/stable_reference_buffer.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SRB_MODEL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define SRB_MODEL_ASAN 1
#endif
#endif

namespace {

using shmpool::stable_reference_buffer;
constexpr int slots = 4;
constexpr std::size_t max_held = 16;   // oldest held pointer dropped beyond this
constexpr std::size_t max_dead = 64;   // dead addresses remembered for is_known

// True when ASan says some byte of [p, p+n) was freed (or never allocated).
bool freed_memory(const void* p, std::size_t n) {
#if defined(SRB_MODEL_ASAN)
  return __asan_region_is_poisoned(const_cast<void*>(p), n) != nullptr;
#else
  (void)p;
  (void)n;
  return false;
#endif
}

// Reads n bytes at p and compares them with want; fails (without touching
// freed memory) if the block behind p was freed.
void read_alive(const void* p, const std::string& want, const char* what) {
  if (freed_memory(p, want.size())) RC_FAIL(std::string(what) + ": memory the model says is alive was freed");
  RC_ASSERT(std::memcmp(p, want.data(), want.size()) == 0);
}

// How often each interesting branch ran (printed once at exit).
struct coverage_counts {
  long append_exclusive = 0, append_shared = 0, append_delayed = 0, append_to_empty = 0, append_from_self = 0;
  long held_safe = 0, held_safe_let_go = 0, held_raw = 0, held_dropped_as_freed = 0, held_moved = 0;
  long nested_exit = 0, outermost_exit_freed = 0, bad_adopts = 0, readopted = 0;
  ~coverage_counts() {
    std::fprintf(stderr,
                 "srb_model coverage: append exclusive=%ld shared=%ld in-scope=%ld to-empty=%ld own-bytes=%ld; "
                 "held safe_get=%ld safe_get+let-go=%ld get=%ld (dropped as freed=%ld, moved by append=%ld); "
                 "inner exits=%ld outermost exits that freed=%ld; rejected adopts=%ld; pending adopted again=%ld\n",
                 append_exclusive, append_shared, append_delayed, append_to_empty, append_from_self, held_safe,
                 held_safe_let_go, held_raw, held_dropped_as_freed, held_moved, nested_exit, outermost_exit_freed,
                 bad_adopts, readopted);
  }
};
coverage_counts coverage;

struct slot_model {
  int block = -1;  // -1: empty
  std::size_t size = 0;
  bool adopted = false;
};
struct block_model {
  std::string bytes;
  const void* address = nullptr;
};
struct held_pointer {
  const void* p;
  int block;
  std::size_t len;  // bytes valid at p (a later exclusive append may add more)
};

struct shadow_model {
  slot_model slot[slots];
  std::map<int, block_model> blocks;   // live: holders > 0
  std::map<int, block_model> pending;  // let go inside a scope; freed at the outermost exit
  std::vector<const void*> dead;       // addresses of freed blocks
  std::vector<held_pointer> held;
  std::uint64_t freed = 0;             // blocks that went dead (M6)
  int next_id = 0;
  int depth = 0;

  int holders(int b) const {
    int n = 0;
    for (const auto& s : slot) n += s.block == b;
    return n;
  }
  const block_model* alive(int b) const {
    if (auto it = blocks.find(b); it != blocks.end()) return &it->second;
    if (auto it = pending.find(b); it != pending.end()) return &it->second;
    return nullptr;
  }
  void bury(const block_model& bm) {
    dead.push_back(bm.address);
    if (dead.size() > max_dead) dead.erase(dead.begin());
    ++freed;
  }
  // M3: a block without holders is pending inside a scope, dead outside.
  // Run at the end of every command; depth changes only in Enter/Exit,
  // which change no holders, so the depth now is the depth of the release.
  void collect() {
    for (auto it = blocks.begin(); it != blocks.end();) {
      if (holders(it->first) != 0) {
        ++it;
        continue;
      }
      if (depth > 0)
        pending.insert(*it);
      else
        bury(it->second);
      it = blocks.erase(it);
    }
    forget_freed_pointers();
  }
  // The outermost scope ended: every pending block is freed.
  void drain() {
    if (!pending.empty()) ++coverage.outermost_exit_freed;
    for (const auto& [id, bm] : pending) bury(bm);
    pending.clear();
    forget_freed_pointers();
  }
  void forget_freed_pointers() {
    std::erase_if(held, [&](const held_pointer& h) {
      const block_model* bm = alive(h.block);
      const bool gone = bm == nullptr || bm->address != h.p;
      if (gone && bm == nullptr) ++coverage.held_dropped_as_freed;
      return gone;
    });
  }
  void hold(const void* p, int block, std::size_t len) {
    held.push_back({p, block, len});
    if (held.size() > max_held) held.erase(held.begin());
  }
};

struct registry_baseline {
  std::uint64_t live, pending, frees;
  std::int64_t depth;
};

struct srb_sut {
  stable_reference_buffer s[slots];
  std::vector<std::unique_ptr<stable_reference_buffer::delay_deallocation>> scopes;
  shadow_model shadow;
  bool check_registry_counters = false;
  registry_baseline base{};

  explicit srb_sut(bool counters) : check_registry_counters(counters) {
    const auto st = shmpool::detail::srb_current_stats();
    base = {st.live, st.pending, st.frees, st.depth};
  }
};

void expect_same(srb_sut& sut) {
  shadow_model& m = sut.shadow;
  m.collect();
  for (int i = 0; i < slots; ++i) {
    const slot_model& sm = m.slot[i];
    const stable_reference_buffer& b = sut.s[i];
    if (sm.block < 0) {  // M1, M2 for an empty slot
      RC_ASSERT((b.get() == nullptr));
      RC_ASSERT(b.use_count() == 0u);
      RC_ASSERT(b.size() == 0u);
      RC_ASSERT((b.safe_get() == nullptr));
      continue;
    }
    const block_model& bm = m.blocks.at(sm.block);
    RC_ASSERT((b.get() == bm.address));  // M1
    RC_ASSERT(b.use_count() == static_cast<std::size_t>(m.holders(sm.block)));
    RC_ASSERT(b.size() == sm.size);
    const bool kept = m.holders(sm.block) > 1 || m.depth > 0;  // M2
    RC_ASSERT((b.safe_get() == (kept ? b.get() : nullptr)));
    read_alive(b.get(), bm.bytes, "a held instance's block");
    if (!sm.adopted) RC_ASSERT(sm.size == bm.bytes.size());
  }
  for (const held_pointer& h : m.held)  // M3
    read_alive(h.p, m.alive(h.block)->bytes.substr(0, h.len), "a held pointer");
  for (const auto& [id, bm] : m.blocks) RC_ASSERT(stable_reference_buffer::is_known(bm.address));  // M5
  for (const auto& [id, bm] : m.pending) RC_ASSERT(stable_reference_buffer::is_known(bm.address));
  for (const void* a : m.dead) {
    bool reused = false;
    for (const auto& [id, bm] : m.blocks) reused |= bm.address == a;
    for (const auto& [id, bm] : m.pending) reused |= bm.address == a;
    if (!reused) RC_ASSERT(!stable_reference_buffer::is_known(a));
  }
  RC_ASSERT(!stable_reference_buffer::is_known(nullptr));
  if (sut.check_registry_counters) {  // M6
    const auto st = shmpool::detail::srb_current_stats();
    RC_ASSERT(st.live == sut.base.live + m.blocks.size());
    RC_ASSERT(st.pending == sut.base.pending + m.pending.size());
    RC_ASSERT(st.depth == sut.base.depth + m.depth);
    RC_ASSERT(st.frees == sut.base.frees + m.freed);
  }
}

struct no_state {};
using cmd = rc::state::Command<no_state, srb_sut>;

int pick() { return *rc::gen::inRange(0, slots); }

// srb(count, size_of_type); now and then a product that overflows size_t.
struct Create : cmd {
  int i = pick();
  std::size_t n = *rc::gen::inRange<std::size_t>(0, 9);
  std::size_t elem = *rc::gen::element<std::size_t>(1, 1, 1, 2, 3);
  bool overflow = *rc::gen::weightedOneOf<bool>({{15, rc::gen::just(false)}, {1, rc::gen::just(true)}});
  void run(const no_state&, srb_sut& sut) const override {
    auto& m = sut.shadow;
    if (overflow) {
      RC_ASSERT_THROWS_AS(stable_reference_buffer(std::numeric_limits<std::size_t>::max() / 2 + 1, 2),
                          std::length_error);
      expect_same(sut);
      return;
    }
    sut.s[i] = stable_reference_buffer(n, elem);
    if (n * elem == 0) {
      m.slot[i] = {};
    } else {
      const int id = m.next_id++;
      m.blocks[id] = {std::string(n * elem, '\0'), sut.s[i].get()};
      m.slot[i] = {id, n * elem, false};
    }
    expect_same(sut);
  }
  void show(std::ostream& os) const override {
    if (overflow)
      os << "EXPECT_THROW(srb(SIZE_MAX / 2 + 1, 2), std::length_error);";
    else
      os << "s" << i << " = srb(" << n << ", " << elem << ");";
  }
};

// Copy-assign, or copy-construct a temporary and move-assign it.
struct Copy : cmd {
  int d = pick(), src = pick();
  bool construct = *rc::gen::arbitrary<bool>();
  void run(const no_state&, srb_sut& sut) const override {
    if (construct) {
      stable_reference_buffer tmp(sut.s[src]);
      sut.s[d] = std::move(tmp);
    } else {
      sut.s[d] = sut.s[src];
    }
    sut.shadow.slot[d] = sut.shadow.slot[src];
    expect_same(sut);
  }
  void show(std::ostream& os) const override {
    if (construct)
      os << "{ srb t(s" << src << "); s" << d << " = std::move(t); }";
    else
      os << "s" << d << " = s" << src << ";";
  }
};

// Move-assign, or move-construct a temporary and copy-assign it (the
// temporary's reference goes at the end of the block).  d == src: self-move.
struct Move : cmd {
  int d = pick(), src = pick();
  bool construct = *rc::gen::arbitrary<bool>();
  void run(const no_state&, srb_sut& sut) const override {
    if (construct) {
      stable_reference_buffer tmp(std::move(sut.s[src]));
      sut.s[d] = tmp;
    } else {
      sut.s[d] = std::move(sut.s[src]);
    }
    if (d != src) {
      sut.shadow.slot[d] = sut.shadow.slot[src];
      sut.shadow.slot[src] = {};
    }
    expect_same(sut);
  }
  void show(std::ostream& os) const override {
    if (construct)
      os << "{ srb t(std::move(s" << src << ")); s" << d << " = t; }";
    else
      os << "s" << d << " = std::move(s" << src << ");";
  }
};

struct Swap : cmd {
  int a = pick(), b = pick();
  void run(const no_state&, srb_sut& sut) const override {
    swap(sut.s[a], sut.s[b]);
    std::swap(sut.shadow.slot[a], sut.shadow.slot[b]);
    expect_same(sut);
  }
  void show(std::ostream& os) const override { os << "swap(s" << a << ", s" << b << ");"; }
};

struct Reset : cmd {
  int i = pick();
  void run(const no_state&, srb_sut& sut) const override {
    sut.s[i].reset();
    sut.shadow.slot[i] = {};
    expect_same(sut);
  }
  void show(std::ostream& os) const override { os << "s" << i << ".reset();"; }
};

// M4.  The model decides exclusive (grow in place) vs shared / in a scope /
// empty (a new block); the SUT must agree on bytes, address and counts.
struct Append : cmd {
  int i = pick();
  std::string data = *rc::gen::container<std::string>(rc::gen::inRange<char>('a', 'z'));
  bool from_self = *rc::gen::arbitrary<bool>();
  bool null_data = *rc::gen::weightedOneOf<bool>({{12, rc::gen::just(false)}, {1, rc::gen::just(true)}});
  void run(const no_state&, srb_sut& sut) const override {
    auto& m = sut.shadow;
    slot_model& sm = m.slot[i];
    if (sm.adopted) {
      RC_ASSERT_THROWS_AS(sut.s[i].append(data.data(), data.size()), std::logic_error);
      expect_same(sut);
      return;
    }
    if (null_data) {
      RC_ASSERT_THROWS_AS(sut.s[i].append(nullptr, 1), std::invalid_argument);
      expect_same(sut);
      return;
    }
    // from_self: append the instance's own leading bytes (realloc may move them).
    const bool self = from_self && sm.block >= 0 && sm.size > 0;
    const std::string add = self ? m.blocks.at(sm.block).bytes.substr(0, std::min(sm.size, data.size() + 1)) : data;
    const void* src = self ? sut.s[i].get() : static_cast<const void*>(data.data());
    sut.s[i].append(src, add.size());
    if (add.empty()) {
      expect_same(sut);
      return;
    }
    coverage.append_from_self += self;
    const std::string old = sm.block >= 0 ? m.blocks.at(sm.block).bytes : std::string();
    if (sm.block >= 0 && m.holders(sm.block) == 1 && m.depth == 0) {  // exclusive: grows in place
      ++coverage.append_exclusive;
      block_model& bm = m.blocks.at(sm.block);
      bm.bytes = old + add;
      if (bm.address != sut.s[i].get()) ++coverage.held_moved;
      bm.address = sut.s[i].get();  // pointers to the old address go in collect()
    } else {  // empty, shared or delayed: a new block
      if (sm.block < 0)
        ++coverage.append_to_empty;
      else if (m.holders(sm.block) > 1)
        ++coverage.append_shared;
      else
        ++coverage.append_delayed;
      const int id = m.next_id++;
      m.blocks[id] = {old + add, sut.s[i].get()};
      sm.block = id;
    }
    sm.size = old.size() + add.size();
    expect_same(sut);
  }
  void show(std::ostream& os) const override {
    if (null_data)
      os << "s" << i << ".append(nullptr, 1);  // throws unless adopted";
    else
      os << "s" << i << ".append(" << (from_self ? "<own bytes or>" : "") << "\"" << data << "\");";
  }
};

// Adopt by the address of another slot's block (null throws).
struct Adopt : cmd {
  int d = pick(), src = pick();
  void run(const no_state&, srb_sut& sut) const override {
    auto& m = sut.shadow;
    const void* a = sut.s[src].get();
    if (a == nullptr) {
      RC_ASSERT_THROWS_AS(stable_reference_buffer{a}, std::invalid_argument);
    } else {
      sut.s[d] = stable_reference_buffer(a);
      m.slot[d] = {m.slot[src].block, 0, true};
    }
    expect_same(sut);
  }
  void show(std::ostream& os) const override { os << "s" << d << " = srb(s" << src << ".get());"; }
};

// M5: a pending block adopted again from its address is live again, one
// holder in slot d, and outlives the scope.  Skipped when none is pending.
struct AdoptPending : cmd {
  int d = pick();
  std::size_t pick_index = *rc::gen::inRange<std::size_t>(0, 64);
  void run(const no_state&, srb_sut& sut) const override {
    auto& m = sut.shadow;
    if (m.pending.empty()) return;
    auto it = m.pending.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(pick_index % m.pending.size()));
    const auto [id, bm] = *it;
    sut.s[d] = stable_reference_buffer(bm.address);
    m.pending.erase(it);
    m.blocks[id] = bm;
    m.slot[d] = {id, 0, true};
    ++coverage.readopted;
    expect_same(sut);
  }
  void show(std::ostream& os) const override {
    os << "s" << d << " = srb(<pending block #" << pick_index << ">);  // adopted again";
  }
};

// M5: adopting an address the registry must not know throws
// invalid_argument and leaves everything as it was.  Which address: an
// interior one of a live block, a dead one (not reused), or a stack
// address.  Skipped when no such address exists.
struct AdoptUnknown : cmd {
  int kind = *rc::gen::inRange(0, 4);
  std::size_t pick_index = *rc::gen::inRange<std::size_t>(0, 64);
  void run(const no_state&, srb_sut& sut) const override {
    auto& m = sut.shadow;
    std::vector<const void*> candidates;
    if (kind == 0)
      for (const auto& [id, bm] : m.blocks)
        if (bm.bytes.size() > 1) candidates.push_back(static_cast<const char*>(bm.address) + 1);
    if (kind == 1 || kind == 2)
      for (const void* a : m.dead) {
        bool reused = false;
        for (const auto& [id, bm] : m.blocks) reused |= bm.address == a;
        for (const auto& [id, bm] : m.pending) reused |= bm.address == a;
        if (!reused) candidates.push_back(a);
      }
    int on_stack = 0;
    if (kind == 3) candidates.push_back(&on_stack);
    if (candidates.empty()) return;
    const void* a = candidates[pick_index % candidates.size()];
    RC_ASSERT_THROWS_AS(stable_reference_buffer{a}, std::invalid_argument);
    ++coverage.bad_adopts;
    expect_same(sut);
  }
  void show(std::ostream& os) const override {
    static const char* const what[] = {"interior address", "dead block", "dead block", "stack address"};
    os << "EXPECT_THROW(srb(<" << what[kind] << " #" << pick_index << ">), std::invalid_argument);";
  }
};

struct Enter : cmd {
  void run(const no_state&, srb_sut& sut) const override {
    sut.scopes.push_back(std::make_unique<stable_reference_buffer::delay_deallocation>());
    ++sut.shadow.depth;
    expect_same(sut);
  }
  void show(std::ostream& os) const override { os << "{ delay_deallocation"; }
};

// Ends the innermost scope; only the outermost one frees pending blocks (M3).
struct Exit : cmd {
  void run(const no_state&, srb_sut& sut) const override {
    if (sut.scopes.empty()) return;
    sut.scopes.pop_back();
    if (--sut.shadow.depth == 0)
      sut.shadow.drain();
    else
      ++coverage.nested_exit;
    expect_same(sut);
  }
  void show(std::ostream& os) const override { os << "}  // end of a delay scope"; }
};

// safe_get, let go, then read the pointer at once: valid iff safe_get said so.
struct SafeRead : cmd {
  int i = pick();
  void run(const no_state&, srb_sut& sut) const override {
    auto& m = sut.shadow;
    const void* p = sut.s[i].safe_get();
    const std::string bytes = m.slot[i].block >= 0 ? m.blocks.at(m.slot[i].block).bytes : std::string();
    sut.s[i].reset();
    m.slot[i] = {};
    if (p != nullptr) read_alive(p, bytes, "safe_get's pointer right after reset");
    expect_same(sut);
  }
  void show(std::ostream& os) const override { os << "{ p = s" << i << ".safe_get(); s" << i << ".reset(); read(p); }"; }
};

// Takes a pointer to slot i's block and keeps it (M3): safe_get() (and,
// if let_go, the slot then lets go, which safe_get promised is harmless),
// or a raw get() while the slot keeps holding.  Every later command reads
// through it until the model says the block was freed or moved.
struct Hold : cmd {
  int i = pick();
  int how = *rc::gen::inRange(0, 3);  // 0 safe_get, 1 safe_get + reset, 2 get
  void run(const no_state&, srb_sut& sut) const override {
    auto& m = sut.shadow;
    const int block = m.slot[i].block;
    const void* p = how == 2 ? sut.s[i].get() : sut.s[i].safe_get();
    if (how == 1) {
      sut.s[i].reset();
      m.slot[i] = {};
    }
    if (p != nullptr) {
      m.hold(p, block, m.blocks.at(block).bytes.size());
      (how == 0 ? coverage.held_safe : how == 1 ? coverage.held_safe_let_go : coverage.held_raw)++;
    }
    expect_same(sut);
    // safe_get's promise: the block outlives this instance's reference.
    if (how == 1 && p != nullptr) RC_ASSERT(m.alive(block) != nullptr);
  }
  void show(std::ostream& os) const override {
    static const char* const text[] = {"held.push_back(s%d.safe_get());",
                                       "held.push_back(s%d.safe_get()); s%d.reset();", "held.push_back(s%d.get());"};
    char line[96];
    std::snprintf(line, sizeof line, text[how], i, i);
    os << line << "  // read after every later command";
  }
};

void run_model(bool check_registry_counters) {
  srb_sut sut(check_registry_counters);
  rc::state::check(no_state{}, sut,
                   rc::state::gen::execOneOfWithArgs<Create, Create, Copy, Move, Swap, Reset, Append, Append, Adopt,
                                                     AdoptPending, AdoptUnknown, Enter, Enter, Exit, Exit, SafeRead, Hold, Hold>());
  // Close scopes (frees pending blocks), then drop every instance.
  sut.shadow.held.clear();
  sut.scopes.clear();
  for (auto& s : sut.s) s.reset();
  for (const auto& [id, bm] : sut.shadow.blocks) RC_ASSERT(!stable_reference_buffer::is_known(bm.address));
  for (const auto& [id, bm] : sut.shadow.pending) RC_ASSERT(!stable_reference_buffer::is_known(bm.address));
  const auto st = shmpool::detail::srb_current_stats();
  RC_ASSERT(st.live == sut.base.live);
  RC_ASSERT(st.pending == sut.base.pending);
  RC_ASSERT(st.depth == sut.base.depth);
  // Every block the run created was freed exactly once.
  RC_ASSERT(st.frees == sut.base.frees + static_cast<std::uint64_t>(sut.shadow.next_id));
}

// Each test case draws whether it also compares the registry's counters
// (M6).  RapidCheck shrinks the flag to false when the public API alone
// shows the failure, so a counterexample says which kind of check found it.
// SRB_MODEL_PUBLIC_API_ONLY=1 never compares them (what an application sees).
RC_GTEST_PROP(SrbModel, MatchesPlainModel, ()) {
  const bool counters = *rc::gen::arbitrary<bool>().as("also compare the registry's counters");
  run_model(counters && std::getenv("SRB_MODEL_PUBLIC_API_ONLY") == nullptr);
}

}  // namespace
