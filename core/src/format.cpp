// Layout computation and header validation (format.hpp, core/FORMAT.md).
#include "shmpool/detail/format.hpp"

#include <cstring>
#include <string>

#include "shmpool/error.hpp"

namespace shmpool {
namespace detail {
namespace {

constexpr std::uint64_t round_up(std::uint64_t v, std::uint64_t to) noexcept { return (v + to - 1) / to * to; }

bool variant_known(std::uint32_t v) noexcept { return v >= 1 && v <= 5; }

// The elem_size a variant must have, or 0 for "any" (raw).
std::uint64_t fixed_elem_size(variant_code v, std::uint64_t max_len) noexcept {
  switch (v) {
    case variant_code::i64: return 8;
    case variant_code::i32: return 4;
    case variant_code::f64: return 8;
    case variant_code::str: return str_elem_size(max_len);
    case variant_code::raw: break;
  }
  return 0;
}

header_verdict reject(errc e, const char* what) noexcept { return {std::nullopt, static_cast<int>(e), what}; }

}  // namespace

const char* variant_name(variant_code v) noexcept {
  switch (v) {
    case variant_code::raw: return "raw";
    case variant_code::i64: return "i64";
    case variant_code::i32: return "i32";
    case variant_code::f64: return "f64";
    case variant_code::str: return "str";
  }
  return "unknown";
}

std::optional<pool_layout> compute_layout(variant_code v, std::uint64_t capacity, std::uint64_t elem_size,
                                          std::uint64_t max_len) noexcept {
  if (!variant_known(static_cast<std::uint32_t>(v))) return std::nullopt;
  if (capacity == 0 || capacity > max_capacity) return std::nullopt;
  if (v == variant_code::str && (max_len == 0 || max_len > max_str_len)) return std::nullopt;
  if (v != variant_code::str && max_len != 0) return std::nullopt;
  if (const std::uint64_t fixed = fixed_elem_size(v, max_len); fixed != 0 && elem_size != fixed) return std::nullopt;
  if (elem_size == 0 || elem_size > max_elem_size) return std::nullopt;
  pool_layout l{v, capacity, elem_size, max_len, 0, 0, 0, 0};
  l.groups_offset = first_group_offset;
  l.meta_offset = l.groups_offset + group_count(capacity) * sizeof(group_word<shm_platform>);
  l.data_offset = round_up(l.meta_offset + capacity * sizeof(slot_meta<shm_platform>), 64);
  // capacity <= 2^32 and elem_size <= 2^30: the product fits easily.
  l.total_size = round_up(l.data_offset + capacity * elem_size, page_bytes);
  if (l.total_size > max_total_size) return std::nullopt;
  return l;
}

std::string layout_problem(variant_code v, std::uint64_t capacity, std::uint64_t elem_size, std::uint64_t max_len) {
  const auto n = [](std::uint64_t x) { return std::to_string(x); };
  if (!variant_known(static_cast<std::uint32_t>(v))) return "unknown variant " + n(static_cast<std::uint32_t>(v));
  if (capacity == 0 || capacity > max_capacity)
    return "capacity " + n(capacity) + " is out of range (1.." + n(max_capacity) + ")";
  if (v == variant_code::str && (max_len == 0 || max_len > max_str_len))
    return "max_len " + n(max_len) + " is out of range (1.." + n(max_str_len) + ")";
  if (v != variant_code::str && max_len != 0) return "max_len " + n(max_len) + " given for a pool that is not str";
  if (const std::uint64_t fixed = fixed_elem_size(v, max_len); fixed != 0 && elem_size != fixed)
    return "elem_size " + n(elem_size) + " does not match the variant (" + n(fixed) + ")";
  if (elem_size == 0 || elem_size > max_elem_size)
    return "elem_size " + n(elem_size) + " is out of range (1.." + n(max_elem_size) + ")";
  if (!compute_layout(v, capacity, elem_size, max_len)) {
    // Every factor is in range, so the total is what exceeds its limit.
    // In range, each term fits: capacity <= 2^32, elem_size <= 2^30.
    const std::uint64_t meta = first_group_offset + group_count(capacity) * sizeof(group_word<shm_platform>);
    const std::uint64_t data = round_up(meta + capacity * sizeof(slot_meta<shm_platform>), 64);
    const std::uint64_t total = round_up(data + capacity * elem_size, page_bytes);
    return "total size " + n(total) + " bytes (capacity " + n(capacity) + " x elem_size " + n(elem_size) +
           " plus bookkeeping) exceeds the limit of " + n(max_total_size) + " bytes";
  }
  return {};
}

bool interrupted_initialisation(const pool_header& h) noexcept {
  if (h.magic != pool_init_magic) return false;
  unsigned char bytes[sizeof(pool_header)];
  std::memcpy(bytes, &h, sizeof bytes);
  for (std::size_t i = sizeof h.magic; i < sizeof bytes; ++i)
    if (bytes[i] != 0) return false;
  return true;
}

std::uint64_t header_checksum(const pool_header& h) noexcept {
  unsigned char bytes[sizeof(pool_header)];
  std::memcpy(bytes, &h, sizeof bytes);
  std::uint64_t x = 14695981039346656037ULL;
  for (std::size_t i = 8; i < 72; ++i) x = (x ^ bytes[i]) * 1099511628211ULL;
  return x;
}

// Each check names the field it protects; a mutant build skips exactly one.
header_verdict validate_header(const pool_header& h, std::uint64_t file_size) noexcept {
  if (interrupted_initialisation(h))
    return reject(errc::truncated, "initialisation was never completed (init marker, empty header)");
  if (h.magic == pool_init_magic)
    return reject(errc::corrupt_header,
                  "the magic is the init marker but the header is written: a corrupted magic, not an "
                  "interrupted initialisation; refusing to re-initialise");
  if (h.magic != pool_magic) return reject(errc::bad_magic, "bad magic");
  if ((h.format >> 24) != format_version)
    return reject(errc::unsupported_format,
                  "pool made by another version of shmpool: its format version is not the one this build reads");
  if (h.format != format_word()) return reject(errc::unsupported_format, "unsupported format layout");
  if (!variant_known(h.variant)) return reject(errc::corrupt_header, "unknown variant");
  if (h.checksum != header_checksum(h)) return reject(errc::corrupt_header, "header checksum mismatch");
  const auto v = static_cast<variant_code>(h.variant);
#if !defined(SHMPOOL_MUTANT_HEADER_SKIP_CAPACITY)
  if (h.capacity == 0 || h.capacity > max_capacity) return reject(errc::corrupt_header, "capacity out of range");
#endif
#if !defined(SHMPOOL_MUTANT_HEADER_SKIP_ELEM_SIZE)
  if (h.elem_size == 0 || h.elem_size > max_elem_size) return reject(errc::corrupt_header, "elem_size out of range");
  if (const std::uint64_t fixed = fixed_elem_size(v, h.max_len); fixed != 0 && h.elem_size != fixed)
    return reject(errc::layout_mismatch, "elem_size does not match the variant");
#endif
  // The layout these parameters imply; every offset must agree with it.
  pool_layout l{v, h.capacity, h.elem_size, h.max_len, h.groups_offset, h.meta_offset, h.data_offset, h.total_size};
  if (const auto expected = compute_layout(v, h.capacity, h.elem_size, h.max_len)) {
#if !defined(SHMPOOL_MUTANT_HEADER_SKIP_OFFSET)
    if (expected->groups_offset != h.groups_offset || expected->meta_offset != h.meta_offset ||
        expected->data_offset != h.data_offset)
      return reject(errc::layout_mismatch, "section offsets disagree with capacity and elem_size");
#endif
    if (expected->total_size != h.total_size) return reject(errc::layout_mismatch, "total size disagrees with the layout");
  } else {
#if !defined(SHMPOOL_MUTANT_HEADER_SKIP_CAPACITY) && !defined(SHMPOOL_MUTANT_HEADER_SKIP_ELEM_SIZE)
    return reject(errc::corrupt_header, "parameters out of range");
#endif
  }
  if (h.total_size > file_size) return reject(errc::truncated, "file is smaller than the pool it describes");
  return {l, 0, ""};
}

}  // namespace detail
}  // namespace shmpool
