// shmpool::stable_reference_buffer: a heap buffer with one reference count
// per process, shared by every shared library that handles it.
//
// WHEN TO USE IT
//   When heap memory crosses library boundaries (plugins, several DSOs that
//   each link their own static copy of this code): a raw pointer handed
//   through a C interface can be adopted again, and every library sees the
//   same count, so nothing is freed twice or too early.
//
// DESIGN (details: core/PROTOCOL.md, "stable_reference_buffer registry")
//   Counts live in a process-wide registry.  Every static copy of the core
//   finds it through an anchor page at a fixed address in the process's own
//   memory (no file, no exported symbol), so nothing outlives the process
//   or survives exec, and no other user can interfere.
//   An instance caches a pointer to its registry entry: copy and destroy
//   are one atomic add or subtract.  Buffer memory comes from libc's malloc
//   and goes back to libc's free, which every copy shares.
//
// GUARANTEES
//   - Counts are exact across threads and libraries; the last reference
//     frees the block exactly once (at the end of the outermost
//     delay_deallocation scope if one is alive).
//   - Any number of threads may copy, reset and append *different*
//     instances that share a block; one instance is not thread-safe (like
//     std::shared_ptr).
//   - After fork the child has its own registry (a snapshot taken at the
//     fork); its operations never change the parent's counts.
//   - The registry stays for the life of the process: unloading every
//     library that uses the core (dlclose) never forgets a live block.
//
// PERFORMANCE
//   copy + destroy: two atomic RMWs, as std::shared_ptr; independent of the
//   number of live buffers.  Create, adopt, is_known, the last release and
//   delay scopes take the registry's lock: O(1) amortized.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace shmpool {

namespace platform {
struct linux_platform;
}
namespace detail {
template <class P>
struct srb_entry;
}

// The registry could not be found, created, or trusted: a corrupted anchor
// page, a copy of the core with another layout in the same process, or a
// system failure (no memfd, no memory); the message names the cause.
class registry_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class stable_reference_buffer {
 public:
  class delay_deallocation;

  // Empty: get() == nullptr, size() == 0, use_count() == 0.
  stable_reference_buffer() noexcept = default;

  // count * size_of_type zeroed bytes, use count 1.  Zero bytes make an
  // empty buffer.  Throws std::length_error on overflow, std::bad_alloc.
  stable_reference_buffer(std::size_t count, std::size_t size_of_type = 1);

  // Adopts a block that an instance in any library of this process created
  // and that still has a reference, or whose last reference was dropped
  // while a delay_deallocation scope is alive (the block is then kept: it
  // lives on after the scope, use count 1).  size() is 0 and append throws.
  // Throws std::invalid_argument (naming the address) for an address the
  // registry does not know: never created, freed (released outside any
  // scope, or its scope ended), or interior.  Throws registry_error.
  explicit stable_reference_buffer(const void* address);

  stable_reference_buffer(const stable_reference_buffer& other) noexcept;
  stable_reference_buffer(stable_reference_buffer&& other) noexcept;
  stable_reference_buffer& operator=(const stable_reference_buffer& other) noexcept;
  stable_reference_buffer& operator=(stable_reference_buffer&& other) noexcept;
  ~stable_reference_buffer();

  // Drops this reference (freeing the block if it was the last) and
  // leaves the instance empty.
  void reset() noexcept;
  void swap(stable_reference_buffer& other) noexcept;

  void* get() const noexcept { return data_; }
  // Bytes this instance knows of: 0 for an adopted buffer.
  std::size_t size() const noexcept { return size_; }
  // References to this block in the whole process; 0 when empty.  Inside a
  // delay scope a block may have no reference (count 0) and still exist:
  // use_count() of an instance is never 0 for a block it holds, but
  // is_known() and adopt see such a block until the scope ends.
  std::size_t use_count() const noexcept;

  // get(), or nullptr unless another reference or a live delay_deallocation
  // scope would keep the block alive after this instance lets go.
  void* safe_get() const noexcept;

  // Whether address is the start of a block that still has a reference, or
  // whose last reference went inside a delay scope that is still alive (so
  // it can be adopted again).  Throws registry_error.
  static bool is_known(const void* address);

  // Appends len bytes.  Shared: copy-on-write (other references keep the
  // old bytes).  Exclusive: grows in place; if the block moves, the
  // registry follows it.  While a delay scope is alive the old block is
  // never freed in place: the append copies and the old block waits.
  // Empty: creates a block.  Throws std::logic_error on an adopted buffer,
  // std::invalid_argument when data is null and len > 0, std::length_error,
  // std::bad_alloc.
  void append(const void* data, std::size_t len);

  friend void swap(stable_reference_buffer& a, stable_reference_buffer& b) noexcept { a.swap(b); }

 private:
  using entry = detail::srb_entry<platform::linux_platform>;

  void take_over(void* data, std::size_t size, entry* e) noexcept;
  void append_exclusive_or_shared(const void* data, std::size_t len);
  void append_copy(const void* data, std::size_t len);

  entry* entry_ = nullptr;  // registry record of the block; nullptr when empty
  void* data_ = nullptr;
  std::size_t size_ = 0;
  bool adopted_ = false;
};

// While any delay_deallocation is alive anywhere in the process (any thread,
// any library), blocks whose count reaches zero are kept, known and
// adoptable; each one not adopted again is freed exactly once when the
// outermost scope ends.  Scopes nest, and a scope may be destroyed on any
// thread and through any library.  After fork, only the scopes the forking
// thread opened stay open in the child.  Throws registry_error if the
// registry cannot be reached, std::bad_alloc.
class stable_reference_buffer::delay_deallocation {
 public:
  delay_deallocation();
  ~delay_deallocation();
  delay_deallocation(const delay_deallocation&) = delete;
  delay_deallocation& operator=(const delay_deallocation&) = delete;

 private:
  void* scope_;  // the scope's record in the registry it was opened in
};

}  // namespace shmpool
