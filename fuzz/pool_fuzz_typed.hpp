// Typed data access for the fuzz targets, one specialisation per variant.
// Every call writes or reads through the public API and returns what get()
// must now answer, encoded as bytes, so a model can compare variants alike.
// Single-threaded use only: the atomics read the current value first and
// check each return value against it.
#pragma once

#include <cstring>
#include <string>
#include <type_traits>

#include "pool_fuzz_support.hpp"

namespace shmpool_fuzz {

template <class T>
std::string encode(T v) {
  std::string s(sizeof v, '\0');
  std::memcpy(s.data(), &v, sizeof v);
  return s;
}

template <class Pool>
struct typed;

template <>
struct typed<shmpool::pool> {
  static std::string write(shmpool::pool& p, slot_index i, byte_reader& in) {
    std::string s = in.bytes(in.u8() % 80);
    p.set(i, std::as_bytes(std::span{s.data(), s.size()}));
    s.resize(p.elem_size(), '\0');  // truncated, the rest zero-filled
    return s;
  }
  static std::string read(const shmpool::pool& p, slot_index i) {
    const auto b = p.get(i);
    require(b.size() == p.elem_size(), "raw get returned a span of the wrong size", b.size());
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }
  static std::string update(shmpool::pool& p, slot_index i, byte_reader& in) { return write(p, i, in); }
};

template <class Pool, class T>
struct typed_integer {
  using U = std::make_unsigned_t<T>;
  static std::string write(Pool& p, slot_index i, byte_reader& in) {
    const T v = static_cast<T>(in.u64());
    p.set(i, v);
    return encode(v);
  }
  static std::string read(const Pool& p, slot_index i) { return encode(p.get(i)); }
  // One of add, cas, cmpxchg, xchg, checked against the value before it.
  static std::string update(Pool& p, slot_index i, byte_reader& in) {
    const T cur = p.get(i);
    const T arg = static_cast<T>(in.u64());
    switch (in.u8() % 4) {
      case 0: {
        const T want = static_cast<T>(static_cast<U>(static_cast<U>(cur) + static_cast<U>(arg)));
        require(p.add(i, arg) == want, "add returned a wrong value");
        return encode(want);
      }
      case 1: {
        const bool hit = (arg & 1) != 0;
        require(p.cas(i, hit ? cur : static_cast<T>(cur ^ 1), arg) == hit, "cas answered wrongly");
        return encode(hit ? arg : cur);
      }
      case 2: {
        const bool hit = (arg & 2) != 0;
        require(p.cmpxchg(i, hit ? cur : static_cast<T>(cur ^ 2), arg) == cur, "cmpxchg returned a wrong old value");
        return encode(hit ? arg : cur);
      }
      default:
        require(p.xchg(i, arg) == cur, "xchg returned a wrong old value");
        return encode(arg);
    }
  }
};
template <>
struct typed<shmpool::i64_pool> : typed_integer<shmpool::i64_pool, std::int64_t> {};
template <>
struct typed<shmpool::i32_pool> : typed_integer<shmpool::i32_pool, std::int32_t> {};

template <>
struct typed<shmpool::f64_pool> {
  static std::string write(shmpool::f64_pool& p, slot_index i, byte_reader& in) {
    const double v = static_cast<double>(static_cast<std::int32_t>(in.u64())) / 4.0;  // never NaN
    p.set(i, v);
    return encode(v);
  }
  static std::string read(const shmpool::f64_pool& p, slot_index i) { return encode(p.get(i)); }
  static std::string update(shmpool::f64_pool& p, slot_index i, byte_reader& in) { return write(p, i, in); }
};

template <>
struct typed<shmpool::str_pool> {
  static std::string write(shmpool::str_pool& p, slot_index i, byte_reader& in) {
    std::string s = in.bytes(in.u8() % (p.max_len() + 8));
    p.set(i, s);
    if (s.size() > p.max_len()) s.resize(p.max_len());
    return s;
  }
  static std::string read(const shmpool::str_pool& p, slot_index i) {
    std::string s = p.get(i);
    require(s.size() <= p.max_len(), "str get returned more than max_len", s.size(), p.max_len());
    return s;
  }
  static std::string update(shmpool::str_pool& p, slot_index i, byte_reader& in) { return write(p, i, in); }
};

}  // namespace shmpool_fuzz
