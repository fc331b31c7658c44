/// @file
/// shmpool::stable_reference_buffer: a heap buffer with one reference count
/// per process, shared by every shared library that handles it.
///
/// It stays C++ (there is no C API for it): its point is C++ object lifetime
/// across libraries.
//
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
//     fork); its operations never change the parent's counts, and it works
//     whatever the parent's other threads were doing (even attaching).
//   - Runs under valgrind's memcheck with no error.
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

/// The registry could not be found, created, or trusted: a corrupted anchor
/// page, a copy of the core with another layout in the same process, or a
/// system failure (no memfd, no memory, no way to read the anchor page).
/// what() names the cause.  Every
/// static copy of the core in the process then fails the same way: there is
/// never a second registry.
class registry_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A heap buffer whose reference count every library of the process shares.
///
/// Thread safety: like std::shared_ptr.  Different instances (sharing a
/// block or not) may be used by different threads at once; one instance must
/// not be modified by two threads at once.  Fork: the child gets a snapshot
/// of every count; its operations never change the parent's.
class stable_reference_buffer {
 public:
  class delay_deallocation;

  /// An empty buffer: get() == nullptr, size() == 0, use_count() == 0.
  /// Never allocates, never throws.
  stable_reference_buffer() noexcept = default;

  /// A new block of count * size_of_type zeroed bytes, use count 1.  Zero
  /// bytes make an empty buffer.  Allocates (malloc) and takes the
  /// registry's lock once; attaches this copy of the core to the registry on
  /// first use.
  /// @throws std::length_error if count * size_of_type overflows.
  /// @throws std::bad_alloc when memory runs out.
  /// @throws registry_error if the registry cannot be reached.
  stable_reference_buffer(std::size_t count, std::size_t size_of_type = 1);

  /// Adopts the block that starts at address: one more reference to a block
  /// that an instance in any library of this process created and that still
  /// has a reference, or whose last reference was dropped while a
  /// delay_deallocation scope is alive (the block is then kept: it lives on
  /// after the scope, use count 1).  The adopted instance's size() is 0 and
  /// append() throws.  Takes the registry's lock; O(1).
  /// @throws std::invalid_argument (naming the address) for an address the
  ///         registry does not know: never created, already freed, or interior.
  /// @throws registry_error if the registry cannot be reached.
  explicit stable_reference_buffer(const void* address);

  /// Another reference to other's block: one atomic increment, no lock, no
  /// allocation.
  stable_reference_buffer(const stable_reference_buffer& other) noexcept;
  /// Takes other's reference; other becomes empty.  No atomic operation.
  stable_reference_buffer(stable_reference_buffer&& other) noexcept;
  /// Drops this reference (see reset()) and takes another to other's block.
  stable_reference_buffer& operator=(const stable_reference_buffer& other) noexcept;
  /// Drops this reference (see reset()) and takes other's; other becomes empty.
  stable_reference_buffer& operator=(stable_reference_buffer&& other) noexcept;
  /// Drops this reference (see reset()).
  ~stable_reference_buffer();

  /// Drops this reference and leaves the instance empty.  One atomic
  /// decrement; the last reference also takes the registry's lock and frees
  /// the block, or, while a delay_deallocation scope is alive anywhere in the
  /// process, parks it until the outermost scope ends.
  void reset() noexcept;
  /// Exchanges the two instances' references.  No atomic operation.
  void swap(stable_reference_buffer& other) noexcept;

  /// The block's first byte, or nullptr when empty.  The pointer stays valid
  /// while this instance holds its reference.
  void* get() const noexcept { return data_; }
  /// Bytes this instance knows of: 0 for an empty or an adopted buffer.
  std::size_t size() const noexcept { return size_; }
  /// References to this block in the whole process (every library); 0 when
  /// empty.  One relaxed load: a snapshot that other threads may change.
  /// Inside a delay scope a block may have no reference and still exist:
  /// use_count() of an instance is never 0 for a block it holds, but
  /// is_known() and adoption see such a block until the scope ends.
  std::size_t use_count() const noexcept;

  /// get(), or nullptr unless another reference or a live delay_deallocation
  /// scope would keep the block alive after this instance lets go.
  void* safe_get() const noexcept;

  /// Whether address is the start of a block that still has a reference, or
  /// whose last reference went inside a delay scope that is still alive (so
  /// it can be adopted again).  Takes the registry's lock; O(1).
  /// @throws registry_error if the registry cannot be reached.
  static bool is_known(const void* address);

  /// Appends len bytes from data.  Shared block: copy-on-write (other
  /// references keep the old bytes).  Exclusive block: grows in place
  /// (realloc); if it moves, the registry follows it.  While a delay scope is
  /// alive the old block is never freed in place: the append copies and the
  /// old block waits for the scope.  Empty instance: creates a block.
  /// Allocates; takes the registry's lock.
  /// @throws std::logic_error on an adopted buffer (its size is unknown).
  /// @throws std::invalid_argument when data is null and len > 0.
  /// @throws std::length_error, std::bad_alloc, registry_error.
  void append(const void* data, std::size_t len);

  /// Exchanges a's and b's references.
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

/// While any delay_deallocation is alive anywhere in the process (any
/// thread, any library), blocks whose count reaches zero are kept, known and
/// adoptable; each one not adopted again is freed exactly once when the
/// outermost scope ends.  Scopes nest, and a scope may be destroyed on any
/// thread and through any library.  After fork, only the scopes the forking
/// thread opened stay open in the child.
class stable_reference_buffer::delay_deallocation {
 public:
  /// Opens a scope.  Takes the registry's lock; allocates the scope's record.
  /// @throws registry_error if the registry cannot be reached.
  /// @throws std::bad_alloc when memory runs out.
  delay_deallocation();
  /// Closes the scope; the outermost one frees every parked block that was
  /// not adopted again.  Takes the registry's lock.  Never throws.
  ~delay_deallocation();
  delay_deallocation(const delay_deallocation&) = delete;
  delay_deallocation& operator=(const delay_deallocation&) = delete;

 private:
  void* scope_;  // the scope's record in the registry it was opened in
};

}  // namespace shmpool
