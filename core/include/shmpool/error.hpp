/// @file
/// shmpool::error: every failure to create, open, attach or use a pool that
/// is not a caller's index or state mistake (those are std::out_of_range and
/// std::logic_error, see pool.hpp).
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

namespace shmpool {

/// Reasons of our own (category "shmpool"); a failing system call carries
/// its errno in std::system_category instead.
enum class errc {
  bad_magic = 1,        ///< not a shmpool region (or an unknown one)
  unsupported_format,   ///< a shmpool region of another version or layout
  wrong_variant,        ///< e.g. an i64 pool opened as a str pool
  truncated,            ///< smaller than its header says
  layout_mismatch,      ///< header fields disagree with each other
  corrupt_header,       ///< checksum or range check failed
  bad_argument,         ///< capacity, elem_size, max_len or name out of range
  parameter_mismatch,   ///< an existing pool has another capacity, elem_size or max_len
  identity_unavailable, ///< this process's owner identity cannot be determined (/proc unreadable)
  exceeds_backing,      ///< the pool is larger than its backing can hold (memory, tmpfs, RLIMIT_FSIZE)
  invalid_handle,       ///< the handle was moved from
  not_owner,            ///< a checked free of a slot this process does not hold
};

/// The category of errc codes (name "shmpool").  Thread-safe, never throws.
const std::error_category& error_category() noexcept;

/// An errc as a std::error_code of error_category().
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// What every shmpool failure throws.  what() names the pool (path, fd or
/// memfd name), what was being done and why; code() is an errc or the errno
/// of the failing system call.
class error : public std::runtime_error {
 public:
  /// An error with the given code and message.
  error(std::error_code code, const std::string& what) : std::runtime_error(what), code_(code) {}
  /// The reason: an errc (error_category()) or an errno (std::system_category()).
  const std::error_code& code() const noexcept { return code_; }

 private:
  std::error_code code_;
};

}  // namespace shmpool

// errc converts to std::error_code implicitly.  Hidden from the reference
// (doxygen 1.9.4 cannot place a specialisation declared with a qualified
// name: "internal inconsistency"); error_category() and make_error_code()
// say the same.
/// @cond SHMPOOL_STD_SPECIALISATIONS
template <>
struct std::is_error_code_enum<shmpool::errc> : std::true_type {};
/// @endcond
