// What the pool fuzz targets share: an input cursor, a memfd to hold a
// region, an independent reading of the header rules, variant dispatch, and
// the oracles every accepted pool must satisfy.
//
// The header oracle (format_says_valid) is written from core/FORMAT.md and
// deliberately does not call the core's validate_header or compute_layout:
// a pool the core attaches but FORMAT.md forbids (or the reverse) is a bug in
// one of them, and a seeded HEADER_SKIP_* defect shows up as exactly that.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "shmpool/platform/liveness.hpp"
#include "shmpool/pool.hpp"

namespace shmpool_fuzz {

using shmpool::pool_variant;
using shmpool::slot_index;

// Fails the run: a message for the human, a trap for libFuzzer and ctest.
[[noreturn]] inline void fail(const char* what, std::uint64_t a = 0, std::uint64_t b = 0) {
  std::fprintf(stderr, "shmpool fuzz oracle violated: %s (%llu, %llu)\n", what, static_cast<unsigned long long>(a),
               static_cast<unsigned long long>(b));
  std::fflush(stderr);
  __builtin_trap();
}
inline void require(bool ok, const char* what, std::uint64_t a = 0, std::uint64_t b = 0) {
  if (!ok) fail(what, a, b);
}

// Reads the input front to back; past the end every read yields zeros, so a
// short input is still a complete (if dull) program.
class byte_reader {
 public:
  byte_reader(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}
  bool empty() const noexcept { return pos_ >= size_; }
  std::size_t left() const noexcept { return empty() ? 0 : size_ - pos_; }
  std::uint8_t u8() noexcept { return empty() ? 0 : data_[pos_++]; }
  std::uint16_t u16() noexcept { return static_cast<std::uint16_t>(u8() | (u8() << 8)); }
  std::uint64_t u64() noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{u8()} << (8 * i);
    return v;
  }
  std::string bytes(std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n && !empty(); ++i) s.push_back(static_cast<char>(u8()));
    return s;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

// One memfd per process, rewritten for each input (no per-run fd churn).
inline int region_fd(const std::uint8_t* data, std::size_t size) {
  static const int fd = ::memfd_create("shmpool-fuzz-region", MFD_CLOEXEC);
  if (fd < 0) fail("memfd_create failed");
  if (::ftruncate(fd, 0) != 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) fail("ftruncate failed");
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) fail("pwrite failed");
    done += static_cast<std::size_t>(n);
  }
  return fd;
}

// ---- slot words and owners (FORMAT.md, "Slot meta") -------------------------

enum slot_kind : std::uint64_t { claiming = 1, allocated = 2, releasing = 3 };

constexpr std::uint64_t slot_word(slot_kind k, std::uint64_t id) { return (std::uint64_t{k} << 62) | id; }

// This process's owner identity, and the same pid with another start time:
// an earlier process whose pid we reuse, so certainly dead.
inline std::uint64_t self_identity() { return shmpool::platform::proc_liveness::self(); }
inline std::uint64_t dead_identity() { return self_identity() ^ 0x100; }  // a start time > 1 tick away

// The shared bytes of a pool, mapped by the harness to forge states and patch.
class region_map {
 public:
  region_map(int fd, std::uint64_t size) : size_(size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) fail("mmap of the built pool failed");
    base_ = static_cast<std::uint8_t*>(p);
  }
  region_map(const region_map&) = delete;
  region_map& operator=(const region_map&) = delete;
  ~region_map() { ::munmap(base_, size_); }
  std::uint8_t* base() const { return base_; }
  std::uint64_t size() const { return size_; }
  std::atomic_ref<std::uint64_t> word_at(std::uint64_t off) const {
    return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(base_ + off));
  }

 private:
  std::uint8_t* base_;
  std::uint64_t size_;
};

// ---- the header, as FORMAT.md states it ------------------------------------

namespace field {  // byte offsets in the header
inline constexpr std::size_t magic = 0, format = 8, variant = 12, capacity = 16, elem_size = 24, max_len = 32,
                             groups = 40, meta = 48, data = 56, total = 64, checksum = 72, end_of_summed = 72;
}  // namespace field

inline std::uint64_t read_le(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{p[i]} << (8 * i);
  return v;
}
inline void write_le(std::uint8_t* p, std::size_t n, std::uint64_t v) noexcept {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// FNV-1a 64 over header bytes [8, 72), written from FORMAT.md (not from the
// core), so a core that drifts from its document fails here.  (Finding F1:
// the core once started from a mistyped offset basis.)
inline constexpr std::uint64_t fnv_offset_basis = 14695981039346656037ULL;
inline std::uint64_t fnv_checksum(const std::uint8_t* header) noexcept {
  std::uint64_t x = fnv_offset_basis;
  for (std::size_t i = 8; i < field::end_of_summed; ++i) x = (x ^ header[i]) * 1099511628211ULL;
  return x;
}
inline void reseal_checksum(std::uint8_t* header) noexcept {
  write_le(header + field::checksum, 8, fnv_checksum(header));
}

struct format_layout {
  pool_variant variant;
  std::uint64_t capacity, elem_size, max_len, meta_offset, data_offset, total_size;
};

constexpr std::uint64_t round_to(std::uint64_t v, std::uint64_t to) noexcept { return (v + to - 1) / to * to; }

// The elem_size FORMAT.md demands of a variant (0: any, for raw).
inline std::uint64_t demanded_elem_size(std::uint32_t variant, std::uint64_t max_len) noexcept {
  switch (variant) {
    case 2: case 4: return 8;
    case 3: return 4;
    case 5: return round_to(4 + max_len, 8);
    default: return 0;
  }
}

// The layout of a region whose header FORMAT.md accepts, or nothing.
inline std::optional<format_layout> format_says_valid(const std::uint8_t* region, std::size_t size) {
  if (size < 128) return std::nullopt;
  const auto get = [&](std::size_t off, std::size_t n = 8) { return read_le(region + off, n); };
  if (get(field::magic) != 0x314C4F4F504D4853ULL || get(field::format, 4) != 0x03020805u) return std::nullopt;
  const auto variant = static_cast<std::uint32_t>(get(field::variant, 4));
  if (variant < 1 || variant > 5 || get(field::checksum) != fnv_checksum(region)) return std::nullopt;
  const std::uint64_t cap = get(field::capacity), elem = get(field::elem_size), max_len = get(field::max_len);
  if (cap == 0 || cap > (std::uint64_t{1} << 32) || elem == 0 || elem > (std::uint64_t{1} << 30)) return std::nullopt;
  if (variant == 5 ? (max_len == 0 || max_len > (std::uint64_t{1} << 30) - 8) : max_len != 0) return std::nullopt;
  if (const std::uint64_t want = demanded_elem_size(variant, max_len); want != 0 && elem != want) return std::nullopt;
  const std::uint64_t meta = 320 + 64 * ((cap + 63) / 64);
  const std::uint64_t data = round_to(meta + 16 * cap, 64);
  const std::uint64_t total = round_to(data + elem * cap, 4096);
  if (get(field::groups) != 320 || get(field::meta) != meta || get(field::data) != data) return std::nullopt;
  if (get(field::total) != total || total > (std::uint64_t{1} << 40) || total > size) return std::nullopt;
  return format_layout{static_cast<pool_variant>(variant), cap, elem, max_len, meta, data, total};
}

// ---- variants --------------------------------------------------------------

inline constexpr pool_variant all_variants[] = {pool_variant::raw, pool_variant::i64, pool_variant::i32,
                                                pool_variant::f64, pool_variant::str};

// Calls fn(type_tag<Pool>{}) with the handle type of variant v.
template <class T>
struct type_tag {
  using type = T;
};
template <class F>
decltype(auto) with_variant(pool_variant v, F&& fn) {
  switch (v) {
    case pool_variant::i64: return fn(type_tag<shmpool::i64_pool>{});
    case pool_variant::i32: return fn(type_tag<shmpool::i32_pool>{});
    case pool_variant::f64: return fn(type_tag<shmpool::f64_pool>{});
    case pool_variant::str: return fn(type_tag<shmpool::str_pool>{});
    case pool_variant::raw: break;
  }
  return fn(type_tag<shmpool::pool>{});
}

// Attaches fd as Pool.  A refusal must be a shmpool::error and nothing else.
template <class Pool>
std::optional<Pool> attach(int fd) {
  try {
    return Pool::from_fd(fd);
  } catch (const shmpool::error&) {
    return std::nullopt;
  }
}

// The attach verdict must agree with FORMAT.md: accepted exactly when the
// header is valid and names this variant, with the bounds the header names.
template <class Pool>
void require_attach_agrees(const std::optional<Pool>& p, const std::optional<format_layout>& law, pool_variant v) {
  const bool allowed = law && law->variant == v;
  require(p.has_value() == allowed, p ? "attach accepted a region FORMAT.md forbids" : "attach refused a valid region",
          static_cast<std::uint64_t>(v));
  if (!p) return;
  require(p->capacity() == law->capacity && p->elem_size() == law->elem_size, "handle bounds differ from the header",
          p->capacity(), law->capacity);
  require(p->variant() == v, "handle reports another variant");
}

}  // namespace shmpool_fuzz
