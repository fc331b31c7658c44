// The on-disk (in-mapping) format of a pool.  core/FORMAT.md describes it
// field by field; this header is the single definition.
//
//   offset 0    pool_header   immutable after initialisation (128 bytes)
//   offset 128  pool_control  waiter entries | wake_seq | slow-path counters, one line each
//   offset 320  group marks   group_count(capacity) words, one per 64-byte line
//   then        slot meta     capacity x {slot word, alloc count}, 16 bytes each
//   then        data          capacity x elem_size bytes, 64-byte aligned
//   total       rounded up to 4096
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "shmpool/detail/slot_protocol.hpp"
#include "shmpool/platform/linux.hpp"

namespace shmpool::detail {

using shm_platform = platform::linux_platform;

// "SHMPOOL" + format generation, little-endian.
inline constexpr std::uint64_t pool_magic = 0x314C4F4F504D4853ULL;       // "SHMPOOL1"
// "SHMPINIT": a creator at work.  Written first into a temporary that no
// opener sees (PROTOCOL.md "Creation and opening"); at a pool's final name it
// is only ever left by an earlier version's interrupted creator, and then the
// rest of the header is zero (interrupted_initialisation below).
inline constexpr std::uint64_t pool_init_magic = 0x54494E49504D4853ULL;
inline constexpr std::uint32_t format_version = 3;  // 2: waiter entries; 3: group marks replace the bitmap (slot words are the truth)

inline constexpr std::uint64_t header_bytes = 128;
inline constexpr std::uint64_t control_offset = 128;
inline constexpr std::uint64_t first_group_offset = 320;
inline constexpr std::uint64_t page_bytes = 4096;

inline constexpr std::uint64_t max_capacity = std::uint64_t{1} << 32;
inline constexpr std::uint64_t max_elem_size = std::uint64_t{1} << 30;
inline constexpr std::uint64_t max_total_size = std::uint64_t{1} << 40;

enum class variant_code : std::uint32_t { raw = 1, i64 = 2, i32 = 3, f64 = 4, str = 5 };

struct pool_header {
  std::uint64_t magic;        // pool_magic once initialised (written last)
  std::uint32_t format;       // format_word(): version and layout sizes
  std::uint32_t variant;      // variant_code
  std::uint64_t capacity;     // slots
  std::uint64_t elem_size;    // bytes per slot
  std::uint64_t max_len;      // str pools: longest string; else 0
  std::uint64_t groups_offset;
  std::uint64_t meta_offset;
  std::uint64_t data_offset;
  std::uint64_t total_size;   // bytes mapped
  std::uint64_t checksum;     // FNV-1a 64 of bytes [8, 72)
  std::uint8_t reserved[48];
};
static_assert(sizeof(pool_header) == header_bytes);
static_assert(sizeof(slot_meta<shm_platform>) == 16);
static_assert(sizeof(group_word<shm_platform>) == 64);
static_assert(sizeof(pool_control<shm_platform>) == first_group_offset - control_offset);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<int>::is_always_lock_free);
// An all-zero or all-0xFF header is never valid: the magic is neither.
static_assert(pool_magic != 0 && pool_magic != ~std::uint64_t{0});

constexpr std::uint32_t format_word() noexcept {
  return (format_version << 24) | ((sizeof(slot_meta<shm_platform>) / 8) << 16) |
         ((sizeof(group_word<shm_platform>) / 8) << 8) | (first_group_offset / 64);
}
static_assert(format_word() != 0 && format_word() != 0xFFFFFFFFu);

struct pool_layout {
  variant_code variant;
  std::uint64_t capacity, elem_size, max_len;
  std::uint64_t groups_offset, meta_offset, data_offset, total_size;
};

// The layout a pool of these parameters has, or nothing if they are out of
// range.  All arithmetic is overflow-checked by the range limits above.
std::optional<pool_layout> compute_layout(variant_code v, std::uint64_t capacity, std::uint64_t elem_size,
                                          std::uint64_t max_len) noexcept;

// Why compute_layout refuses these parameters: the first parameter out of
// range, its value and its limit (or the total size and its limit); empty
// when it accepts them.  Checked in compute_layout's order, so a str pool's
// max_len is named before the elem_size derived from it.
std::string layout_problem(variant_code v, std::uint64_t capacity, std::uint64_t elem_size, std::uint64_t max_len);

std::uint64_t header_checksum(const pool_header& h) noexcept;

// The largest max_len a str slot may have: its elem_size stays <= max_elem_size.
inline constexpr std::uint64_t max_str_len = max_elem_size - 8;

// The elem_size a str pool of this max_len uses: a 4-byte length, then bytes.
// 0 for a max_len out of range, so that a max_len near 2^64 cannot wrap to a
// small elem_size (compute_layout rejects it by its max_len first).
constexpr std::uint64_t str_elem_size(std::uint64_t max_len) noexcept {
  return max_len > max_str_len ? 0 : (4 + max_len + 7) / 8 * 8;
}
static_assert(str_elem_size(~std::uint64_t{0} - 3) == 0 && str_elem_size(max_str_len) <= max_elem_size);

// Validates a header copied out of the mapping against the file size.
// Returns the layout, or the reason it is not acceptable (errc and text).
struct header_verdict {
  std::optional<pool_layout> layout;
  int reason = 0;  // shmpool::errc value when layout is empty
  const char* what = "";
};
header_verdict validate_header(const pool_header& h, std::uint64_t file_size) noexcept;

// True when the header is the init marker followed by zeros: the state an
// earlier version's creator left when it died before writing the header.
// Nothing was ever allocated in such a file.  One corrupted word of a live
// pool's header (its magic overwritten with the marker) leaves the other
// fields non-zero, so it is never taken for this.
bool interrupted_initialisation(const pool_header& h) noexcept;

const char* variant_name(variant_code v) noexcept;

}  // namespace shmpool::detail
