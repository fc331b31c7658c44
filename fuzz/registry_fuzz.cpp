// fuzz_registry: corrupted stable_reference_buffer root segments, and
// reference-count sequences against a model.
//
// The registry itself is process-private memory; what another copy of the
// core reads, and what a hostile or crashed writer could corrupt, is the root
// segment /dev/shm/shmpool-srb-<identity> (detail/srb_registry.hpp).  Input
// byte 0 chooses a mode:
//   0  raw:    the rest of the input becomes the segment's bytes
//   1  forged: the real record with owner, registry address and nonce
//              replaced by fuzzed values, its checksum recomputed
//              (srb_make_root_record), so the deeper checks are reached
//   2  ops:    buffers created, copied, adopted, appended, reset inside
//              nested delay_deallocation scopes, checked against a model
// Oracles, modes 0 and 1: srb_find_registry_as_new_copy() (what a newly
// loaded copy does) either throws registry_error or returns the real
// registry; afterwards the real segment is restored and still found.
// Mode 2: use_count, size, contents and is_known agree with the model after
// every step; blocks released inside a scope stay readable until the
// outermost scope ends (ASan reports a use after free otherwise).
#include <fcntl.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHMPOOL_FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(SHMPOOL_FUZZ_ASAN)
#define SHMPOOL_FUZZ_ASAN 1
#endif
#if defined(SHMPOOL_FUZZ_ASAN)
#include <sanitizer/asan_interface.h>
#endif

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <system_error>

#include "pool_fuzz_support.hpp"
#include "registry_fuzz_model.hpp"
#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/stable_reference_buffer.hpp"

namespace {

using namespace shmpool_fuzz;
namespace d = shmpool::detail;

struct real_root {
  std::string path;
  d::srb_root_record record;
  const void* registry;
};

// Attaches once (creating the registry and its segment) and remembers them.
const real_root& root() {
  static const real_root r = [] {
    shmpool::stable_reference_buffer attach(8);
    real_root out{"/dev/shm/" + d::srb_registry_name(), {}, d::srb_find_registry_as_new_copy()};
    const int fd = ::open(out.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::pread(fd, &out.record, sizeof out.record, 0) != static_cast<ssize_t>(sizeof out.record))
      fail("cannot read the real root segment");
    ::close(fd);
    return out;
  }();
  return r;
}

void write_segment(const void* bytes, std::size_t n) {
  const int fd = ::open(root().path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0 || ::write(fd, bytes, n) != static_cast<ssize_t>(n)) fail("cannot write the root segment");
  ::close(fd);
}

// What a new copy finds must be the real registry or a registry_error.
void require_found_or_refused(const char* mode) {
  try {
    const void* got = d::srb_find_registry_as_new_copy();
    require(got == root().registry, mode);
  } catch (const shmpool::registry_error&) {
  }
}

void restore_and_require_found() {
  write_segment(&root().record, sizeof root().record);
  require(d::srb_find_registry_as_new_copy() == root().registry, "the restored segment is not found");
}

// A value for one field: the real one, the real one xor a delta, a page
// nearby, or a literal.
std::uint64_t field_value(std::uint64_t real, byte_reader& in) {
  const std::uint8_t how = in.u8();
  const std::uint64_t v = in.u64();
  switch (how % 4) {
    case 0: return real;
    case 1: return real ^ v;
    case 2: return real + 4096 * static_cast<std::int64_t>(static_cast<std::int8_t>(v));
    default: return v;
  }
}

// The core probes a registry address with write(2) into a pipe (srb_root.cpp,
// copy_if_readable).  ASan intercepts write and checks the source range
// itself, so in ASan builds an unmapped or poisoned address is reported
// instead of refused (fuzz/FINDINGS.md, F3).  Those addresses are left to the
// g++ replay; the ASan build probes only addresses ASan can read.
bool asan_would_report_reading(std::uint64_t address) {
#if defined(SHMPOOL_FUZZ_ASAN)
  static const bool strict = std::getenv("SHMPOOL_FUZZ_STRICT_ASAN") != nullptr;  // reproduces F3
  const std::uint64_t page = 4096;
  if (strict) return false;
  if (address == 0 || address % page != 0 || address >= (std::uint64_t{1} << 56)) return false;  // refused before
  return __asan_region_is_poisoned(reinterpret_cast<void*>(address), sizeof(d::srb_registry_id)) != nullptr;
#endif
  (void)address;
  return false;
}

void forged_mode(byte_reader& in) {
  const d::srb_root_record& real = root().record;
  const std::uint64_t owner = field_value(real.owner, in);
  const std::uint64_t registry = field_value(real.registry, in);
  const std::uint64_t nonce = field_value(real.nonce, in);
  if (asan_would_report_reading(registry)) return;
  d::srb_root_record rec = d::srb_make_root_record(owner, reinterpret_cast<const void*>(registry), nonce);
  if (in.u8() & 1) rec.check ^= in.u64();  // and sometimes a bad checksum after all
  write_segment(&rec, sizeof rec);
  require_found_or_refused("a forged root record led to another registry");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)root();
  byte_reader in(data, size);
  switch (in.u8() % 3) {
    case 0: {
      const std::string bytes = in.bytes(96);
      write_segment(bytes.data(), bytes.size());
      require_found_or_refused("a raw segment led to another registry");
      break;
    }
    case 1: forged_mode(in); break;
    default: run_buffer_ops(in); break;
  }
  restore_and_require_found();
  return 0;
}
