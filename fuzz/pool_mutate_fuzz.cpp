// fuzz_mutate_valid: corruptions of valid pools rather than random noise.
//
// The input is a recipe (bytes, front to back):
//   [0] variant   [1] state   [2] capacity 1..130   [3] elem_size / max_len
//   [4] flags: bit 0 recomputes the header checksum after patching
//   [5] patch count (0..16), then per patch: kind, offset (u16), value (u64)
//   the rest steers the workout (pool_fuzz_exercise.hpp)
// A patch kind byte: bits 0-2 the region (mod 5: header, control, group marks,
// meta, data), bit 3 the width (1 or 8 bytes), bits 4-6 the value source
// (a literal, a slot word naming this process or a dead incarnation of it,
// or a neighbour of the capacity).  States: empty, partly full, full,
// waiters' counters left by a dead waiter, dead owners, dead owners caught
// in every crash window of the protocol.
//
// Oracles: the attach verdict agrees with FORMAT.md for every variant; when
// no patch touched the group marks, the slot words or the pool's parameters,
// recover_stale frees exactly the dead owners' slots and leaves exactly the
// live ones, and the rest of the pool fills exactly; always, the workout.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <set>
#include <vector>

#include "pool_fuzz_exercise.hpp"
#include "pool_fuzz_support.hpp"

namespace {

using namespace shmpool_fuzz;

enum class pool_state { empty, partial, full, waiters, dead_owners, crash_windows, count };

struct recipe {
  pool_variant variant;
  pool_state state;
  std::uint64_t capacity, size_param;
  bool reseal;
};

recipe read_recipe(byte_reader& in) {
  recipe r{};
  r.variant = all_variants[in.u8() % 5];
  r.state = static_cast<pool_state>(in.u8() % static_cast<unsigned>(pool_state::count));
  r.capacity = 1 + in.u8() % 130;
  r.size_param = 1 + in.u8() % 40;
  r.reseal = (in.u8() & 1) != 0;
  return r;
}

// What the harness built: which slots a live owner (us) holds and which a dead one.
struct built_state {
  std::set<slot_index> live, dead;
};

template <class Pool>
Pool create(const recipe& r) {
  if constexpr (std::is_same_v<Pool, shmpool::pool>) return Pool::memfd("fuzz-mutate", r.capacity, r.size_param);
  else if constexpr (std::is_same_v<Pool, shmpool::str_pool>) return Pool::memfd("fuzz-mutate", r.capacity, r.size_param);
  else return Pool::memfd("fuzz-mutate", r.capacity);
}

void take(shmpool::detail::pool_base& p, std::uint64_t n, built_state& st) {
  for (std::uint64_t k = 0; k < n; ++k) {
    const auto i = p.try_alloc();
    require(i.has_value(), "building: a fresh pool ran out of slots", k);
    st.live.insert(*i);
  }
}

// Hands a third of the live slots to a dead incarnation; with crash windows
// also leaves a dead claimer and a dead releaser before and after the bit.
void kill_owners(const region_map& m, const format_layout& l, built_state& st, bool windows) {
  const std::uint64_t dead = dead_identity();
  std::vector<slot_index> victims;
  for (const slot_index i : st.live) if (i % 3 == 0) victims.push_back(i);
  for (std::size_t k = 0; k < victims.size(); ++k) {
    const slot_index i = victims[k];
    slot_kind kind = allocated;
    bool clear_bit = false;
    if (windows) {
      kind = k % 3 == 0 ? allocated : k % 3 == 1 ? claiming : releasing;
      clear_bit = (k / 3) % 2 == 1 && kind != allocated;
    }
    m.word_at(l.meta_offset + 16 * i).store(slot_word(kind, dead));
    if (clear_bit) m.word_at(320 + 64 * (i / 64)).fetch_and(~(std::uint64_t{1} << (i % 64)));
    st.live.erase(i);
    st.dead.insert(i);
  }
}

template <class Pool>
built_state build(Pool& p, const region_map& m, const format_layout& l, pool_state s) {
  built_state st;
  const std::uint64_t cap = p.capacity();
  if (s == pool_state::full || s == pool_state::waiters) take(p, cap, st);
  if (s == pool_state::partial || s == pool_state::dead_owners || s == pool_state::crash_windows) take(p, (cap + 1) / 2, st);
  if (s == pool_state::waiters) {
    require(!p.alloc(std::chrono::microseconds(10)), "building: a full pool allocated");
    for (slot_index i = 0; i < cap; i += 2) { require(p.free(i), "building: free failed", i); st.live.erase(i); }
    m.word_at(128).store(2);  // two waiters that died asleep (a crash window the protocol allows)
  }
  if (s == pool_state::dead_owners || s == pool_state::crash_windows) kill_owners(m, l, st, s == pool_state::crash_windows);
  return st;
}

struct patch_effect {
  bool slots = false;  // the group marks or the slot meta
};

std::uint64_t patch_value(std::uint8_t source, byte_reader& in, const format_layout& l) {
  const std::uint64_t literal = in.u64();
  switch (source) {
    case 1: return slot_word(allocated, self_identity());
    case 2: return slot_word(allocated, dead_identity());
    case 3: return slot_word(claiming, dead_identity());
    case 4: return slot_word(releasing, dead_identity());
    case 5: return slot_word(releasing, self_identity());
    case 6: return l.capacity + literal % 3 - 1;  // off-by-one neighbours of the capacity
    default: return literal;
  }
}

// Applies up to 16 patches; says which parts of the pool they touched.
patch_effect apply_patches(const region_map& m, const format_layout& l, byte_reader& in) {
  const std::uint64_t words = (l.capacity + 63) / 64;
  const std::uint64_t start[] = {0, 128, 320, l.meta_offset, l.data_offset};
  const std::uint64_t length[] = {128, 192, 64 * words, 16 * l.capacity, l.elem_size * l.capacity};
  patch_effect e;
  const unsigned n = in.u8() % 17;
  for (unsigned k = 0; k < n; ++k) {
    const std::uint8_t kind = in.u8();
    const unsigned region = (kind & 7) % 5;
    const bool wide = (kind & 8) != 0 || (kind >> 4) % 8 != 0;
    const std::uint64_t len = length[region];
    std::uint64_t off = in.u16() % len;
    const std::uint64_t value = patch_value(static_cast<std::uint8_t>((kind >> 4) % 8), in, l);
    if (wide && len < 8) continue;
    if (wide) off = std::min(off / 8 * 8, len - 8);
    write_le(m.base() + start[region] + off, wide ? 8 : 1, value);
    e.slots |= region == 2 || region == 3;
  }
  return e;
}

// The untouched-state oracle: recovery frees the dead, keeps the living,
// and the free remainder fills exactly.
void require_state_kept(shmpool::detail::pool_base& p, const built_state& st) {
  require(p.recover_stale() == st.dead.size(), "recover_stale did not free exactly the dead owners' slots",
          st.dead.size());
  const auto now = p.allocated_slots();
  require(std::set<slot_index>(now.begin(), now.end()) == st.live, "the live owners' slots changed", now.size());
  require(p.used() == st.live.size() && slot_problems(p) == 0, "used() or check() disagree after recovery", p.used());
  std::vector<slot_index> got;
  for (std::uint64_t k = st.live.size(); k < p.capacity(); ++k) {
    const auto i = p.try_alloc();
    require(i && *i < p.capacity() && st.live.count(*i) == 0, "the free remainder did not fill", k);
    got.push_back(*i);
  }
  require(!p.try_alloc(), "a full pool handed out another slot");
  require(p.free_n(got) == got.size(), "freeing the remainder failed");
}

template <class Built>
void run_recipe(const recipe& r, byte_reader& in) {
  Built pool = create<Built>(r);
  const int fd = pool.memfd();
  region_map m(fd, pool.stats().mmap_size);
  const auto layout = format_says_valid(m.base(), m.size());
  require(layout.has_value(), "a pool the core just created is invalid by FORMAT.md");
  const built_state st = build(pool, m, *layout, r.state);
  const patch_effect e = apply_patches(m, *layout, in);
  if (r.reseal) reseal_checksum(m.base());
  const auto law = format_says_valid(m.base(), m.size());
  const bool same_params = law && law->variant == layout->variant && law->capacity == layout->capacity &&
                           law->elem_size == layout->elem_size && law->max_len == layout->max_len;
  for (const pool_variant v : all_variants) {
    with_variant(v, [&](auto tag) {
      using Pool = typename decltype(tag)::type;
      auto p = attach<Pool>(fd);
      require_attach_agrees(p, law, v);
      if (!p) return;
      if (same_params && !e.slots) require_state_kept(*p, st);
      exercise(*p, in);
    });
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  byte_reader in(data, size);
  const recipe r = read_recipe(in);
  with_variant(r.variant, [&](auto tag) { run_recipe<typename decltype(tag)::type>(r, in); });
  return 0;
}
