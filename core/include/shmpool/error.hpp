// shmpool::error: every failure to create, open or attach a pool.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

namespace shmpool {

// Reasons of our own; system failures carry std::system_category codes.
enum class errc {
  bad_magic = 1,        // not a shmpool region (or an unknown one)
  unsupported_format,   // a shmpool region of another version or layout
  wrong_variant,        // e.g. an i64 pool opened as a str pool
  truncated,            // smaller than its header says
  layout_mismatch,      // header fields disagree with each other
  corrupt_header,       // checksum or range check failed
  bad_argument,         // capacity, elem_size, max_len or name out of range
  parameter_mismatch,   // an existing pool has another capacity or elem_size
  identity_unavailable, // this process's owner identity cannot be determined (/proc unreadable)
  exceeds_backing,      // the pool is larger than its backing can hold (memory, tmpfs, RLIMIT_FSIZE)
  invalid_handle,       // the handle was moved from
  not_owner,            // a checked free of a slot this process does not hold
};

const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

class error : public std::runtime_error {
 public:
  error(std::error_code code, const std::string& what) : std::runtime_error(what), code_(code) {}
  const std::error_code& code() const noexcept { return code_; }

 private:
  std::error_code code_;
};

}  // namespace shmpool

template <>
struct std::is_error_code_enum<shmpool::errc> : std::true_type {};
