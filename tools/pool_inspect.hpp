// A read-only view of a pool file, for the `shmpool` tool: the header is
// read with pread and validated by the core's validate_header, the pool is
// mapped PROT_READ, and every question (stats, owners, invariants) is
// answered by loads alone.  Nothing here can write to the pool.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shmpool/detail/format.hpp"
#include "shmpool/pool.hpp"

namespace shmpool::tool {

// Why a file could not be inspected.  `not_a_pool` and `system` (an I/O
// failure) are exit status 2 of every subcommand; `damaged` (our magic, but
// a header that fails validation) is status 1 (shmpool_doc.hpp).
struct inspect_error {
  enum kind_t { not_a_pool, damaged, system } kind;
  std::string message;
};

struct slot_entry {
  std::uint64_t index;
  detail::slot_state state;
  std::uint64_t identity;
  pid_t pid;
  std::uint64_t allocs;  // times this slot was claimed
};

class pool_file {
 public:
  // Opens FILE O_RDONLY without blocking (open_nonblocking) and maps it
  // read-only.  Throws inspect_error.
  static pool_file open_readonly(const std::string& path);
  pool_file(pool_file&&) noexcept;
  pool_file& operator=(pool_file&&) = delete;
  pool_file(const pool_file&) = delete;
  pool_file& operator=(const pool_file&) = delete;
  ~pool_file();

  const detail::pool_header& header() const noexcept { return header_; }
  const detail::pool_layout& layout() const noexcept { return layout_; }
  std::uint64_t file_size() const noexcept { return file_size_; }

  pool_stats stats() const;                   // as pool_base::stats() computes them
  std::vector<slot_entry> taken_slots() const;  // every slot whose word is not FREE
  std::vector<std::uint64_t> stale_marks() const;  // groups marked full over a FREE word, or malformed (G1)
  // Every inconsistency the format and the protocol rule out (empty: healthy),
  // and notes that are not inconsistencies (e.g. registered waiters).
  std::vector<std::string> problems(std::vector<std::string>* notes = nullptr) const;

 private:
  pool_file() = default;
  detail::slot_protocol<detail::shm_platform> protocol() const noexcept;
  const detail::slot_meta<detail::shm_platform>& meta(std::uint64_t i) const noexcept;
  const detail::pool_control<detail::shm_platform>& control() const noexcept;

  int fd_ = -1;
  void* base_ = nullptr;
  std::uint64_t file_size_ = 0;
  detail::pool_header header_{};
  detail::pool_layout layout_{};
};

// Opens PATH with FLAGS plus O_NONBLOCK (a FIFO or a device must not block
// the tool), checks that it is a regular file, then clears O_NONBLOCK.
// Returns the fd; throws inspect_error (not_a_pool for a non-regular file).
int open_nonblocking(const std::string& path, int flags);

// Reads just the header of FILE (or of an open fd) and validates it;
// returns the layout.  Throws inspect_error.
detail::pool_layout read_layout(int fd, const std::string& where);

}  // namespace shmpool::tool
