// RapidCheck state-machine model of shmpool::stable_reference_buffer.
// Four instance slots (s0..s3) and a stack of delay_deallocation scopes are
// the SUT; the plain model (sut.shadow) knows, per slot, which block it
// holds (an id), its size and whether it was adopted, and per block its
// bytes and current address.  After every command each slot is compared:
// get() null iff empty, use_count == holders of the block, size, safe_get
// (non-null iff holders > 1 or a scope is alive), the bytes, is_known of
// every live block (true) and of dead addresses no live block reuses
// (false).  Built with AddressSanitizer: a block freed too early (e.g. by a
// delay scope that does not keep it) is a heap-use-after-free in SafeRead.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "shmpool/stable_reference_buffer.hpp"

namespace {

using shmpool::stable_reference_buffer;
constexpr int slots = 4;

struct slot_model {
  int block = -1;  // -1: empty
  std::size_t size = 0;
  bool adopted = false;
};
struct block_model {
  std::string bytes;
  const void* address = nullptr;
};
struct shadow_model {
  slot_model slot[slots];
  std::map<int, block_model> blocks;  // live blocks (holders > 0)
  std::vector<const void*> dead;      // addresses of released blocks
  int next_id = 0;
  int depth = 0;

  int holders(int b) const {
    int n = 0;
    for (const auto& s : slot) n += s.block == b;
    return n;
  }
  // Forget blocks nobody holds any more.
  void collect() {
    for (auto it = blocks.begin(); it != blocks.end();) {
      if (holders(it->first) == 0) {
        dead.push_back(it->second.address);
        if (dead.size() > 64) dead.erase(dead.begin());
        it = blocks.erase(it);
      } else {
        ++it;
      }
    }
  }
};

struct srb_sut {
  stable_reference_buffer s[slots];
  std::vector<std::unique_ptr<stable_reference_buffer::delay_deallocation>> scopes;
  shadow_model shadow;
};

void expect_same(srb_sut& sut) {
  shadow_model& m = sut.shadow;
  m.collect();
  for (int i = 0; i < slots; ++i) {
    const slot_model& sm = m.slot[i];
    const stable_reference_buffer& b = sut.s[i];
    if (sm.block < 0) {
      RC_ASSERT((b.get() == nullptr));
      RC_ASSERT(b.use_count() == 0u);
      RC_ASSERT(b.size() == 0u);
      RC_ASSERT((b.safe_get() == nullptr));
      continue;
    }
    const block_model& bm = m.blocks.at(sm.block);
    RC_ASSERT((b.get() == bm.address));
    RC_ASSERT(b.use_count() == static_cast<std::size_t>(m.holders(sm.block)));
    RC_ASSERT(b.size() == sm.size);
    const bool kept = m.holders(sm.block) > 1 || m.depth > 0;
    RC_ASSERT((b.safe_get() == (kept ? b.get() : nullptr)));
    RC_ASSERT(std::memcmp(b.get(), bm.bytes.data(), bm.bytes.size()) == 0);
    if (!sm.adopted) RC_ASSERT(sm.size == bm.bytes.size());
  }
  for (const auto& [id, bm] : m.blocks) RC_ASSERT(stable_reference_buffer::is_known(bm.address));
  for (const void* a : m.dead) {
    bool reused = false;
    for (const auto& [id, bm] : m.blocks) reused |= bm.address == a;
    if (!reused) RC_ASSERT(!stable_reference_buffer::is_known(a));
  }
  RC_ASSERT(!stable_reference_buffer::is_known(nullptr));
}

struct no_state {};
using cmd = rc::state::Command<no_state, srb_sut>;

int pick() { return *rc::gen::inRange(0, slots); }

struct Create : cmd {
  int i = pick();
  std::size_t n = *rc::gen::inRange<std::size_t>(0, 9);
  void run(const no_state&, srb_sut& sut) const override {
    sut.s[i] = stable_reference_buffer(n);
    auto& m = sut.shadow;
    if (n == 0) {
      m.slot[i] = {};
    } else {
      const int id = m.next_id++;
      m.blocks[id] = {std::string(n, '\0'), sut.s[i].get()};
      m.slot[i] = {id, n, false};
    }
    expect_same(sut);
  }
  void show(std::ostream& os) const override { os << "s" << i << " = srb(" << n << ");"; }
};

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

struct Move : cmd {
  int d = pick(), src = pick();
  void run(const no_state&, srb_sut& sut) const override {
    sut.s[d] = std::move(sut.s[src]);
    if (d != src) {
      sut.shadow.slot[d] = sut.shadow.slot[src];
      sut.shadow.slot[src] = {};
    }
    expect_same(sut);
  }
  void show(std::ostream& os) const override { os << "s" << d << " = std::move(s" << src << ");"; }
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

struct Append : cmd {
  int i = pick();
  std::string data = *rc::gen::container<std::string>(rc::gen::inRange<char>('a', 'z'));
  bool from_self = *rc::gen::arbitrary<bool>();
  void run(const no_state&, srb_sut& sut) const override {
    auto& m = sut.shadow;
    slot_model& sm = m.slot[i];
    if (sm.adopted) {
      RC_ASSERT_THROWS_AS(sut.s[i].append(data.data(), data.size()), std::logic_error);
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
    const std::string old = sm.block >= 0 ? m.blocks.at(sm.block).bytes : std::string();
    if (sm.block >= 0 && m.holders(sm.block) == 1 && m.depth == 0) {  // exclusive: grows in place
      block_model& bm = m.blocks.at(sm.block);
      bm.bytes = old + add;
      bm.address = sut.s[i].get();
    } else {  // empty, shared or delayed: a new block
      const int id = m.next_id++;
      m.blocks[id] = {old + add, sut.s[i].get()};
      sm.block = id;
    }
    sm.size = old.size() + add.size();
    expect_same(sut);
  }
  void show(std::ostream& os) const override {
    os << "s" << i << ".append(" << (from_self ? "<own bytes or>" : "") << "\"" << data << "\");";
  }
};

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

struct Enter : cmd {
  void run(const no_state&, srb_sut& sut) const override {
    sut.scopes.push_back(std::make_unique<stable_reference_buffer::delay_deallocation>());
    ++sut.shadow.depth;
    expect_same(sut);
  }
  void show(std::ostream& os) const override { os << "{ delay_deallocation"; }
};

struct Exit : cmd {
  void run(const no_state&, srb_sut& sut) const override {
    if (sut.scopes.empty()) return;
    sut.scopes.pop_back();
    --sut.shadow.depth;
    expect_same(sut);
  }
  void show(std::ostream& os) const override { os << "}  // end of a delay scope"; }
};

// safe_get, let go, then read the pointer: valid iff safe_get said so.
struct SafeRead : cmd {
  int i = pick();
  void run(const no_state&, srb_sut& sut) const override {
    auto& m = sut.shadow;
    const void* p = sut.s[i].safe_get();
    const std::string bytes = m.slot[i].block >= 0 ? m.blocks.at(m.slot[i].block).bytes : std::string();
    sut.s[i].reset();
    m.slot[i] = {};
    if (p != nullptr) RC_ASSERT(std::memcmp(p, bytes.data(), bytes.size()) == 0);  // ASan: no use after free
    expect_same(sut);
  }
  void show(std::ostream& os) const override { os << "{ p = s" << i << ".safe_get(); s" << i << ".reset(); read(p); }"; }
};

RC_GTEST_PROP(SrbModel, MatchesPlainModel, ()) {
  srb_sut sut;
  rc::state::check(no_state{}, sut,
                   rc::state::gen::execOneOfWithArgs<Create, Create, Copy, Move, Swap, Reset, Append, Append, Adopt,
                                                     Enter, Exit, SafeRead>());
  // Close scopes (frees pending blocks), then drop every instance.
  sut.scopes.clear();
  for (auto& s : sut.s) s.reset();
  for (const auto& [id, bm] : sut.shadow.blocks) RC_ASSERT(!stable_reference_buffer::is_known(bm.address));
}

}  // namespace
