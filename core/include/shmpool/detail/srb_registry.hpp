// The glue between stable_reference_buffer and its registry: how this static
// copy of the core finds the process's registry (the root segment), and the
// hooks tests and tools use to look at it.  Not a public interface.
//
// THE ROOT SEGMENT
//   A POSIX shared-memory object, /dev/shm/shmpool-srb-<identity, 16 hex>,
//   holding one immutable srb_root_record: the address of this process's
//   registry (process-private memory) and a nonce repeated inside it.  It is
//   published atomically (written under a temporary name, then link(2)ed to
//   its final name), so nobody ever reads a half-written record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "shmpool/detail/registry_protocol.hpp"
#include "shmpool/platform/linux.hpp"

namespace shmpool::detail {

// Zeroed, page-aligned, process-private memory for the registry.
struct srb_pages {
  static void* map(std::size_t bytes) noexcept;
  static void unmap(void* p, std::size_t bytes) noexcept;
};

using srb_process_registry = srb_registry<platform::linux_platform, srb_pages>;

// "SHMPROOT" read as a little-endian word.
inline constexpr std::uint64_t srb_root_magic = 0x544F'4F52'504D'4853ULL;

struct srb_root_record {
  std::uint64_t magic;     // srb_root_magic
  std::uint64_t format;    // srb_root_format()
  std::uint64_t owner;     // the identity the segment's name encodes
  std::uint64_t registry;  // address of the registry in the owner's memory
  std::uint64_t nonce;     // equals the registry's id().nonce
  std::uint64_t check;     // srb_root_check() of the five words above
};

constexpr std::uint64_t srb_root_format() noexcept {
  return (srb_version << 56) | (std::uint64_t{sizeof(srb_root_record)} << 32) |
         srb_process_registry::format_word() >> 8;
}

// The segment's file name (in /dev/shm) and full path for an identity.
std::string srb_root_name(std::uint64_t identity);
std::string srb_root_path(std::uint64_t identity);

// The registry this copy of the core uses; finds or creates it on first
// use.  Throws registry_error, std::system_error.
srb_process_registry& srb_current();

// libc's free: every static copy hands blocks back to the same allocator.
void srb_free_block(void* block) noexcept;

// delay_deallocation: enter returns the registry the scope must exit.
void* srb_enter_delay_scope();
void srb_exit_delay_scope(void* registry) noexcept;

// ---- hooks for tests and tools ----------------------------------------------
// This process's root segment name ("" in a local-registry build).
std::string srb_registry_name();
// Counters of the registry this copy uses.
srb_stats srb_current_stats();
// Removes the root segments (and temporaries) of processes that are
// certainly dead; returns how many files it removed.  Runs automatically
// whenever a process creates its registry.
std::size_t srb_sweep_dead_registries();
// Reads and checks the root segment exactly as a newly loaded copy of the
// core would, without attaching; returns the registry it names.  Throws
// registry_error naming what is wrong.
const void* srb_find_registry_as_new_copy();
// True in builds made with SHMPOOL_TESTING_LOCAL_REGISTRY (the deliberately
// naive, per-copy registry that only the plugin test builds).
bool srb_local_registry_build() noexcept;

// Root segment primitives (srb_root.cpp).  The publish and unlink calls
// only make system calls, so a fork child may run them.
srb_root_record srb_make_root_record(std::uint64_t owner, const void* registry, std::uint64_t nonce) noexcept;
enum class srb_publish { published, exists, failed };
srb_publish srb_publish_root(const srb_root_record& rec) noexcept;
void srb_unlink_root(std::uint64_t owner) noexcept;
// The registry named by owner's root segment; nullptr if there is no
// segment.  Throws registry_error if the segment or the registry it names
// fails a check.
srb_process_registry* srb_open_root(std::uint64_t owner);

}  // namespace shmpool::detail
