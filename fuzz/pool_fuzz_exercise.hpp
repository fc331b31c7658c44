// The bounded workout every accepted region gets, whatever its slot state:
// a run of operations that must keep within the handle's bounds and answer
// consistently, then reset() and a fill that must hand out every slot once.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "pool_fuzz_support.hpp"
#include "pool_fuzz_typed.hpp"

namespace shmpool_fuzz {

inline constexpr int max_ops_per_input = 48;

inline void require_index(const shmpool::detail::pool_base& p, slot_index i) {
  require(i < p.capacity(), "an index at or beyond capacity was handed out", i, p.capacity());
}

inline void require_sane_status(const shmpool::detail::pool_base& p) {
  const std::uint64_t cap = p.capacity(), used = p.used();
  require(used <= cap, "used() exceeds capacity", used, cap);
  const auto s = p.stats();
  require(s.capacity == cap && s.used <= cap && s.available == cap - s.used, "stats() disagree with capacity",
          s.used, cap);
  const auto slots = p.allocated_slots();
  for (std::size_t k = 0; k < slots.size(); ++k) {
    require_index(p, slots[k]);
    require(k == 0 || slots[k - 1] < slots[k], "allocated_slots() not strictly increasing", slots[k]);
  }
}

// Data access must throw std::logic_error exactly when the slot is not
// allocated, and read back what it just wrote when it is.
template <class Pool>
void touch_data(Pool& p, slot_index i, byte_reader& in) {
  const bool allocated = p.is_allocated(i);
  try {
    const std::string wrote = in.u8() & 1 ? typed<Pool>::update(p, i, in) : typed<Pool>::write(p, i, in);
    require(typed<Pool>::read(p, i) == wrote, "get() does not return what was just written", i);
    require(allocated, "data access to a free slot did not throw", i);
  } catch (const std::logic_error&) {
    require(!allocated, "data access to an allocated slot threw", i);
  }
}

// Any index, in range or not: out of range must throw std::out_of_range.
template <class F>
void with_index(const shmpool::detail::pool_base& p, slot_index i, F&& fn) {
  try {
    fn(i);
    require(i < p.capacity(), "an index beyond capacity was accepted", i);
  } catch (const std::out_of_range&) {
    require(i >= p.capacity(), "an index in range was refused", i);
  }
}

template <class Pool>
void one_op(Pool& p, byte_reader& in, std::vector<slot_index>& mine) {
  const std::uint64_t cap = p.capacity();
  const slot_index any = in.u16() % (cap + 2);
  switch (in.u8() % 10) {
    case 0: if (auto i = p.try_alloc()) { require_index(p, *i); mine.push_back(*i); } break;
    case 1: if (auto i = p.alloc(std::chrono::microseconds(20))) { require_index(p, *i); mine.push_back(*i); } break;
    case 2: with_index(p, any, [&](slot_index i) { p.free(i); }); break;
    case 3: {
      const std::size_t n = in.u8() % (cap + 2);
      try {
        if (auto got = p.alloc_n(n, std::chrono::seconds(0))) {
          require(got->size() == n, "alloc_n returned another count", got->size(), n);
          for (const slot_index i : *got) { require_index(p, i); mine.push_back(i); }
        }
        require(n <= cap, "alloc_n beyond capacity did not throw", n);
      } catch (const std::invalid_argument&) {
        require(n > cap, "alloc_n within capacity threw", n);
      }
      break;
    }
    case 4: require(p.free_n(mine) <= mine.size(), "free_n freed more than it was given"); mine.clear(); break;
    case 5: with_index(p, any, [&](slot_index i) { touch_data(p, i, in); }); break;
    case 6: require_sane_status(p); break;
    case 7: (void)p.check(); break;
    case 8: require(p.recover_stale() <= cap, "recover_stale freed more slots than exist"); break;
    default: with_index(p, any, [&](slot_index i) { (void)p.owner(i); (void)p.is_allocated(i); }); break;
  }
}

// check()'s findings about slots (not about bits beyond capacity, which
// neither reset nor recover_stale clears: fuzz/FINDINGS.md, F2).
inline std::size_t slot_problems(const shmpool::detail::pool_base& p) {
  std::size_t n = 0;
  for (const std::string& problem : p.check()) n += problem.rfind("slot ", 0) == 0 ? 1 : 0;
  return n;
}

// After reset every slot is free, and a fill hands out each index once.
inline void require_fill_exact(shmpool::detail::pool_base& p) {
  const std::uint64_t cap = p.capacity();
  require(p.used() == 0 && p.allocated_slots().empty(), "slots still taken after reset", p.used());
  require(p.check().empty(), "check() reports a problem after reset");
  std::vector<bool> seen(cap, false);
  std::vector<slot_index> all;
  for (std::uint64_t k = 0; k < cap; ++k) {
    const auto i = p.try_alloc();
    require(i.has_value(), "a free slot could not be allocated", k, cap);
    require_index(p, *i);
    require(!seen[*i], "one slot handed out twice", *i);
    seen[*i] = true;
    all.push_back(*i);
  }
  const auto extra = p.try_alloc();
  require(!extra, "a full pool handed out another slot", extra.value_or(0), cap);
  require(p.used() == cap && p.check().empty(), "a full pool is not healthy", p.used(), cap);
  require(p.free_n(all) == cap && p.used() == 0, "freeing every slot did not empty the pool", p.used());
  require(p.recover_stale() == 0, "recover_stale found work in a healthy empty pool");
}

template <class Pool>
void exercise(Pool& p, byte_reader& in) {
  std::vector<slot_index> mine;
  for (int k = 0; k < max_ops_per_input && !in.empty(); ++k) one_op(p, in, mine);
  require_sane_status(p);
  p.reset();
  require_fill_exact(p);
}

}  // namespace shmpool_fuzz
