// fuzz_registry: corrupted stable_reference_buffer anchor pages, and
// reference-count sequences against a model.
//
// The registry itself is process-private memory; what another copy of the
// core reads before it trusts anything is the anchor page at a fixed
// candidate address (detail/srb_registry.hpp).  It is mapped read-only; the
// fuzzer makes it writable (only a deliberate mprotect could) and writes
// into it.  Input byte 0 chooses a mode:
//   0  raw:    the rest of the input becomes the page's first bytes
//   1  forged: the real record with its own address, registry address and
//              nonce replaced by fuzzed values, its check word recomputed
//              (srb_make_anchor_record), so the deeper checks are reached
//   2  ops:    buffers created, copied, adopted, appended, reset inside
//              nested delay_deallocation scopes, checked against a model
// Oracles, modes 0 and 1: srb_find_registry_as_new_copy() (what a newly
// loaded copy does) either throws registry_error or returns the real
// registry; afterwards the real record is restored and still found.
// Mode 2: use_count, size, contents and is_known agree with the model after
// every step; blocks released inside a scope stay readable until the
// outermost scope ends (ASan reports a use after free otherwise).
#include <sys/mman.h>
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

struct real_anchor {
  d::srb_anchor_record* page;
  d::srb_anchor_record record;
  const void* registry;
};

constexpr std::size_t page_bytes_written = 96;  // the record and what follows it

// Attaches once (creating the registry and its anchor) and remembers them.
const real_anchor& anchor() {
  static const real_anchor r = [] {
    shmpool::stable_reference_buffer attach(8);
    auto* page = reinterpret_cast<d::srb_anchor_record*>(d::srb_anchor_address());
    if (page == nullptr || ::mprotect(page, 4096, PROT_READ | PROT_WRITE) != 0) fail("cannot open the anchor page");
    return real_anchor{page, *page, d::srb_find_registry_as_new_copy()};
  }();
  return r;
}

void write_page(const void* bytes, std::size_t n) {
  unsigned char image[page_bytes_written] = {};
  std::memcpy(image, bytes, n < sizeof image ? n : sizeof image);
  std::memcpy(anchor().page, image, sizeof image);
}

// What a new copy finds must be the real registry or a registry_error.
void require_found_or_refused(const char* mode) {
  try {
    const void* got = d::srb_find_registry_as_new_copy();
    require(got == anchor().registry, mode);
  } catch (const shmpool::registry_error&) {
  }
}

void restore_and_require_found() {
  write_page(&anchor().record, sizeof anchor().record);
  require(d::srb_find_registry_as_new_copy() == anchor().registry, "the restored anchor is not found");
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

// The core probes a registry address with write(2) into a pipe (srb_anchor.cpp,
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
  const d::srb_anchor_record& real = anchor().record;
  const std::uint64_t self = field_value(real.self, in);
  const std::uint64_t registry = field_value(real.registry, in);
  const std::uint64_t nonce = field_value(real.nonce, in);
  if (asan_would_report_reading(registry)) return;
  d::srb_anchor_record rec = d::srb_make_anchor_record(self, reinterpret_cast<const void*>(registry), nonce);
  if (in.u8() & 1) rec.check ^= in.u64();  // and sometimes a bad check word after all
  write_page(&rec, sizeof rec);
  require_found_or_refused("a forged anchor record led to another registry");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)anchor();
  byte_reader in(data, size);
  switch (in.u8() % 3) {
    case 0: {
      const std::string bytes = in.bytes(page_bytes_written);
      write_page(bytes.data(), bytes.size());
      require_found_or_refused("a raw anchor page led to another registry");
      break;
    }
    case 1: forged_mode(in); break;
    default: run_buffer_ops(in); break;
  }
  restore_and_require_found();
  return 0;
}
