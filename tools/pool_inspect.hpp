// A read-only view of a pool file, for the `shmpool` tool: the header is
// read with pread and validated by the core's validate_header, the pool is
// mapped PROT_READ, and every question (stats, owners, invariants) is
// answered by loads alone.  Nothing here can write to the pool.
//
// A file can change under the tool: another user may truncate, extend or
// rewrite it at any moment, and a load from a page past the new end of the
// file raises SIGBUS.  So the tool never answers from the mapping itself.
// It copies the pool's metadata (header, control block, group marks, slot
// words and counts: everything before the data; for str pools also the
// length of each allocated string) into a private snapshot, one atomic
// 8-byte load per word, with SIGBUS turned into an error for the span of
// the copy alone (take_snapshot in pool_inspect.cpp: the one place where the
// tool reads the pool's bytes).  Then it validates the snapshot: the file
// is still at least the pool's size, its header is byte for byte the one
// validated at open, and its change time did not move during the copy.
// Every answer comes from a snapshot that passed; a file that changed
// throws inspect_error::changed (exit status 6, shmpool_doc.hpp).  The
// snapshot costs about 17 bytes of memory per slot.
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
// a header that fails validation) is status 1; `changed` (truncated, or
// rewritten in place, while the tool read it) is status 6 (shmpool_doc.hpp).
// The message starts with the file's name.
struct inspect_error {
  enum kind_t { not_a_pool, damaged, system, changed } kind;
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
  // Opens FILE O_RDONLY without blocking (open_nonblocking), maps it
  // read-only and takes the first snapshot.  Throws inspect_error.
  static pool_file open_readonly(const std::string& path);
  // Takes a new snapshot (stats --watch): what the queries below answer
  // from.  Throws inspect_error::changed when the file changed under it.
  void refresh();
  pool_file(pool_file&&) noexcept;
  pool_file& operator=(pool_file&&) = delete;
  pool_file(const pool_file&) = delete;
  pool_file& operator=(const pool_file&) = delete;
  ~pool_file();

  const detail::pool_header& header() const noexcept { return header_; }
  const detail::pool_layout& layout() const noexcept { return layout_; }
  std::uint64_t file_size() const noexcept { return file_size_; }

  // Queries: answered from the last snapshot, never from the mapping.
  pool_stats stats() const;                   // as pool_base::stats() computes them
  std::vector<slot_entry> taken_slots() const;  // every slot whose word is not FREE
  std::vector<std::uint64_t> stale_marks() const;  // groups marked full over a FREE word, or malformed (G1)
  // Every inconsistency the format and the protocol rule out (empty: healthy),
  // and notes that are not inconsistencies (e.g. registered waiters).
  std::vector<std::string> problems(std::vector<std::string>* notes = nullptr) const;

 private:
  struct free_deleter {
    void operator()(void* p) const noexcept;
  };

  pool_file() = default;
  [[noreturn]] void changed(const std::string& why) const;
  bool copy_once();  // one attempt: false if the change time moved during it
  detail::slot_protocol<detail::shm_platform> protocol() const noexcept;
  const detail::slot_meta<detail::shm_platform>& meta(std::uint64_t i) const noexcept;
  const detail::pool_control<detail::shm_platform>& control() const noexcept;

  std::string path_;
  int fd_ = -1;
  void* base_ = nullptr;         // the PROT_READ mapping: read by take_snapshot only
  std::uint64_t file_size_ = 0;  // at open
  detail::pool_header header_{};
  detail::pool_layout layout_{};
  std::unique_ptr<std::byte, free_deleter> snapshot_;  // bytes [0, data_offset) of the pool
  std::vector<std::uint64_t> str_slots_;               // str pools: the allocated slots, in order,
  std::vector<std::uint32_t> str_lengths_;             // and the length each holds
};

// Opens PATH with FLAGS plus O_NONBLOCK (a FIFO or a device must not block
// the tool), checks that it is a regular file, then clears O_NONBLOCK.
// Returns the fd; throws inspect_error (not_a_pool for a non-regular file).
int open_nonblocking(const std::string& path, int flags);

// Reads just the header of FILE (or of an open fd) and validates it;
// returns the layout (and the header read, if HEADER is given).  Throws
// inspect_error.
detail::pool_layout read_layout(int fd, const std::string& where, detail::pool_header* header = nullptr);

// The test build's seam (SHMPOOL_TOOL_TEST_HOOKS, tools/CMakeLists.txt):
// called before each read of the file (fstat, pread, mmap, each page of a
// snapshot), it counts them, and at the one numbered by the environment
// variable SHMPOOL_TOOL_TEST_MUTATE_AT it changes the file as
// SHMPOOL_TOOL_TEST_MUTATION says (tools/tests/tool_sweep.py).  A no-op in
// the shipped tool.
void at_read(int fd) noexcept;

}  // namespace shmpool::tool
