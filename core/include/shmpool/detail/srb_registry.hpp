// The glue between stable_reference_buffer and its registry: how this static
// copy of the core finds the process's registry (the anchor page), and the
// hooks tests and tools use to look at it.  Not a public interface.
//
// THE ANCHOR PAGE (core/PROTOCOL.md, "How a copy finds the registry")
//   One read-only page at the first of a fixed sequence of addresses
//   (srb_anchor_candidate) that holds an srb_anchor_record: the address of
//   this process's registry (process-private memory) and a nonce repeated
//   inside it.  It lives in the process's own address space, so nothing of
//   it is visible to another process, survives exec, or depends on a file.
//   It is published atomically: the record is written into a memfd first,
//   and the memfd is mapped at the candidate with MAP_FIXED_NOREPLACE, so the
//   page appears complete or not at all, and of two copies racing for one
//   candidate the kernel lets exactly one map it.
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

// "SHMPANCH" read as a little-endian word.
inline constexpr std::uint64_t srb_anchor_magic = 0x4843'4E41'504D'4853ULL;

struct srb_anchor_record {
  std::uint64_t magic;     // srb_anchor_magic
  std::uint64_t format;    // srb_anchor_format()
  std::uint64_t self;      // the candidate address the page is mapped at
  std::uint64_t registry;  // address of the registry
  std::uint64_t nonce;     // equals the registry's id().nonce
  std::uint64_t check;     // a hash of the five words above
};

constexpr std::uint64_t srb_anchor_format() noexcept {
  return (srb_version << 56) | (std::uint64_t{sizeof(srb_anchor_record)} << 48) |
         (srb_process_registry::format_word() & 0x0000'FFFF'FFFF'FFFFULL);
}

// The candidate addresses, in the order every copy walks them: constants of
// the format (PROTOCOL.md says why this range).  0 past the last.
inline constexpr unsigned srb_anchor_candidates = 16;
std::uintptr_t srb_anchor_candidate(unsigned i) noexcept;

// The registry this copy of the core uses; finds or creates it on first
// use.  Throws registry_error naming the cause (never std::system_error).
srb_process_registry& srb_current();

// libc's free: every static copy hands blocks back to the same allocator.
void srb_free_block(void* block) noexcept;

// delay_deallocation: enter returns the scope's record (which names its
// registry); exit takes it back, on any thread.
void* srb_enter_delay_scope();
void srb_exit_delay_scope(void* scope) noexcept;

// ---- the anchor (srb_anchor.cpp) ---------------------------------------------------
srb_anchor_record srb_make_anchor_record(std::uintptr_t self, const void* registry, std::uint64_t nonce) noexcept;
// Walks the candidates for a published anchor; returns its registry, or
// nullptr if no candidate holds one.  Throws registry_error when a candidate
// holds an anchor that fails a check or was made by another format.
srb_process_registry* srb_find_anchor();
// Publishes an anchor naming fresh (already constructed) at the first free
// candidate, unless another copy published first.  Returns the registry to
// use: fresh, or the one that won.  Throws registry_error naming the cause
// when no anchor can be published or found.
srb_process_registry* srb_publish_anchor(srb_process_registry* fresh);

// ---- hooks for tests and tools ----------------------------------------------
// The address of this process's anchor page (0 in a local-registry build).
std::uintptr_t srb_anchor_address();
// Counters of the registry this copy uses.
srb_stats srb_current_stats();
// Finds and checks the anchor exactly as a newly loaded copy of the core
// would, without attaching; returns the registry it names.  Throws
// registry_error naming what is wrong, or that there is no anchor.
const void* srb_find_registry_as_new_copy();
// True in builds made with SHMPOOL_TESTING_LOCAL_REGISTRY (the deliberately
// naive, per-copy registry that only the plugin test builds).
bool srb_local_registry_build() noexcept;

}  // namespace shmpool::detail
