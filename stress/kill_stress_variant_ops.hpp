// What a stress worker writes into and expects back from a slot it holds,
// for each pool variant.  Integer pools use the typed atomics (set, add,
// cas, xchg, cmpxchg): each must see exactly the value the holder left.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "shmpool/pool.hpp"

namespace stress {

template <class Pool>
struct variant_ops;

template <class Pool>
struct integer_variant_ops {
  using T = decltype(std::declval<Pool&>().get(0));
  static constexpr bool is_integer = true;
  static void stamp(Pool& p, shmpool::slot_index s, std::int64_t v) { p.set(s, static_cast<T>(v)); }
  static bool matches(const Pool& p, shmpool::slot_index s, std::int64_t v) { return p.get(s) == static_cast<T>(v); }
  // One typed atomic, chosen by r; returns the value the slot now holds
  // (or the old one when the operation's own result is already wrong,
  // which the next matches() reports).
  static std::int64_t mutate(Pool& p, shmpool::slot_index s, std::int64_t v, std::uint64_t r) {
    const T cur = static_cast<T>(v);
    const T next = static_cast<T>(r % 100000);
    switch (r >> 60) {
      case 0: case 1: case 2: case 3:
        return p.add(s, static_cast<T>(r % 7)) == static_cast<T>(cur + static_cast<T>(r % 7)) ? cur + static_cast<T>(r % 7) : v + 1'000'001;
      case 4: case 5:
        return p.incr(s) == static_cast<T>(cur + 1) ? cur + 1 : v + 1'000'001;
      case 6: case 7:
        return p.cas(s, cur, next) ? next : v + 1'000'001;
      case 8: case 9:
        return p.xchg(s, next) == cur ? next : v + 1'000'001;
      case 10: case 11:
        return p.cmpxchg(s, cur, next) == cur ? next : v + 1'000'001;
      default:
        return p.cas(s, static_cast<T>(cur + 1), next) ? v + 1'000'001 : v;  // must fail: cur+1 is not there
    }
  }
};

template <>
struct variant_ops<shmpool::i64_pool> : integer_variant_ops<shmpool::i64_pool> {};
template <>
struct variant_ops<shmpool::i32_pool> : integer_variant_ops<shmpool::i32_pool> {};

template <>
struct variant_ops<shmpool::f64_pool> {
  static constexpr bool is_integer = false;
  static void stamp(shmpool::f64_pool& p, shmpool::slot_index s, std::int64_t v) { p.set(s, static_cast<double>(v) + 0.25); }
  static bool matches(const shmpool::f64_pool& p, shmpool::slot_index s, std::int64_t v) {
    return p.get(s) == static_cast<double>(v) + 0.25;
  }
  static std::int64_t mutate(shmpool::f64_pool& p, shmpool::slot_index s, std::int64_t, std::uint64_t r) {
    const auto next = static_cast<std::int64_t>(r % 100000);
    stamp(p, s, next);
    return next;
  }
};

template <>
struct variant_ops<shmpool::str_pool> {
  static constexpr bool is_integer = false;
  static std::string text_of(std::int64_t v) { return "value-" + std::to_string(v) + "-end"; }
  static void stamp(shmpool::str_pool& p, shmpool::slot_index s, std::int64_t v) { p.set(s, text_of(v)); }
  static bool matches(const shmpool::str_pool& p, shmpool::slot_index s, std::int64_t v) {
    return p.get(s) == text_of(v).substr(0, p.max_len());
  }
  static std::int64_t mutate(shmpool::str_pool& p, shmpool::slot_index s, std::int64_t, std::uint64_t r) {
    const auto next = static_cast<std::int64_t>(r % 100000);
    stamp(p, s, next);
    return next;
  }
};

template <>
struct variant_ops<shmpool::pool> {
  static constexpr bool is_integer = false;
  static void stamp(shmpool::pool& p, shmpool::slot_index s, std::int64_t v) {
    std::byte bytes[16];
    for (int k = 0; k < 2; ++k) std::memcpy(bytes + 8 * k, &v, 8);
    p.set(s, std::span<const std::byte>(bytes, sizeof bytes));
  }
  static bool matches(const shmpool::pool& p, shmpool::slot_index s, std::int64_t v) {
    const auto got = p.get(s);
    if (got.size() < 16) return false;
    std::int64_t a = 0, b = 0;
    std::memcpy(&a, got.data(), 8);
    std::memcpy(&b, got.data() + 8, 8);
    return a == v && b == v;
  }
  static std::int64_t mutate(shmpool::pool& p, shmpool::slot_index s, std::int64_t, std::uint64_t r) {
    const auto next = static_cast<std::int64_t>(r % 100000);
    stamp(p, s, next);
    return next;
  }
};

}  // namespace stress
