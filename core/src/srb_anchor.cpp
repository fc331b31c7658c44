// The stable_reference_buffer anchor page: where in the process's own
// address space every static copy of the core finds the registry, how one
// is published atomically, and what a copy checks before it trusts one.
// See detail/srb_registry.hpp and core/PROTOCOL.md.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <string>

#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/platform/sys.hpp"
#include "shmpool/stable_reference_buffer.hpp"

namespace shmpool::detail {
namespace {

namespace sys = platform::sys;
using platform::crash_site;
inline void crash_point(crash_site site) noexcept { platform::linux_platform::crash_point(site); }

static_assert(sizeof(void*) == 8, "the candidate addresses are chosen for 64-bit address spaces");
static_assert(sizeof(srb_anchor_record) == 48);
static_assert(srb_anchor_format() != 0 && srb_anchor_format() != ~std::uint64_t{0});
static_assert(srb_anchor_magic != 0 && srb_anchor_magic != ~std::uint64_t{0});

// The candidates: 16 pages, 8 MiB apart, from 1.75 GiB.  Below 2 GiB that
// is application memory in plain, AddressSanitizer (low memory ends at
// 0x7fff8000 on x86-64, 64 GiB on aarch64) and ThreadSanitizer builds (the
// low application range) on x86-64 and aarch64; above the 0x58000000 where
// valgrind loads its tool; and where ASLR never places mmap, the heap of a
// PIE or the stacks.  Constants of the format: changing them splits a
// process whose copies disagree, so the format word changes with them.
constexpr std::uintptr_t first_candidate = 0x7000'0000;
constexpr std::uintptr_t candidate_stride = 0x0080'0000;
static_assert(first_candidate + srb_anchor_candidates * candidate_stride <= 0x7fff'0000);

std::string hex(std::uint64_t v) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%" PRIx64, v);
  return text;
}

// snprintf, not std::to_string: its digit table is a STB_GNU_UNIQUE symbol,
// and a plugin holding one can never be unloaded (dlclose does nothing).
std::string dec(std::uint64_t v) {
  char text[24];
  std::snprintf(text, sizeof text, "%" PRIu64, v);
  return text;
}

std::uint64_t mix(std::uint64_t h, std::uint64_t v) noexcept {
  h ^= v + 0x9E37'79B9'7F4A'7C15ULL + (h << 6) + (h >> 2);
  h ^= h >> 31;
  h *= 0xBF58'476D'1CE4'E5B9ULL;
  return h ^ (h >> 29);
}

std::uint64_t anchor_check(const srb_anchor_record& r) noexcept {
  std::uint64_t h = 0xA9C4;
  for (std::uint64_t w : {r.magic, r.format, r.self, r.registry, r.nonce}) h = mix(h, w);
  return h;
}

[[noreturn]] void refuse(std::uintptr_t at, const std::string& what) {
  throw registry_error("stable_reference_buffer: the anchor page at " + hex(at) + " " + what);
}

[[noreturn]] void cannot_publish(const std::string& what, int err) {
  throw registry_error("stable_reference_buffer: cannot publish the registry's anchor page: " + what + " (" +
                       sys::errno_name(err) + ")");
}

enum class readable { yes, no, unknown };

// Copies n bytes from addr if they are readable, without touching them
// directly: process_vm_readv on ourselves fails with EFAULT where nothing is
// readable, and so does write(2) from there into a pipe.  "Not readable" is
// believed only from the pipe: a seccomp filter may answer process_vm_readv
// with any errno, EFAULT included, and one probe that wrongly says
// "nothing here" at a published anchor makes a second registry in the
// process (the fault sweep's srb_plugin scenario found it).  The pipe costs
// four calls per empty candidate, on a copy's first use only.  Both probes
// go through syscall(2) (sys.hpp): the sanitizers intercept the libc
// wrappers and would report the probe itself.  `unknown` when the pipe
// cannot be made: the caller must not guess.
readable copy_if_readable(std::uint64_t addr, void* out, std::size_t n) noexcept {
  // NOLINTNEXTLINE(performance-no-int-to-ptr): a candidate or a registry address; the kernel checks it
  void* const src = reinterpret_cast<void*>(addr);
  iovec local{out, n};
  iovec remote{src, n};
  const long got = sys::process_vm_readv(::getpid(), &local, 1UL, &remote, 1UL);
  if (got == static_cast<long>(n)) return readable::yes;
  const bool said_unmapped = got >= 0 || errno == EFAULT;
  int fds[2];
  if (sys::pipe2(fds, O_CLOEXEC) != 0) {
    // No descriptor left: believe process_vm_readv.  A copy that goes on to
    // publish needs a memfd, which fails for the same reason, so even a
    // wrong "unmapped" makes no second registry; it names memfd_create.
    if (said_unmapped && (errno == EMFILE || errno == ENFILE)) return readable::no;
    return readable::unknown;
  }
  readable result = readable::unknown;
  long wrote;
  do {
    wrote = sys::raw_write(fds[1], src, n);
  } while (wrote < 0 && errno == EINTR);
  ssize_t got_back = -1;
  if (wrote == static_cast<long>(n)) {
    do {
      got_back = sys::read(fds[0], out, n);
    } while (got_back < 0 && errno == EINTR);
  }
  if (got_back == static_cast<ssize_t>(n))
    result = readable::yes;
  else if ((wrote < 0 && errno == EFAULT) || (wrote >= 0 && wrote < static_cast<long>(n)))
    result = readable::no;
  const int err = errno;
  sys::close(fds[0]);
  sys::close(fds[1]);
  errno = err;  // an unknown result's cause, for the caller's message
  return result;
}

// The registry's first words, read without trusting the address.
srb_process_registry* checked_registry(std::uintptr_t at, const srb_anchor_record& rec) {
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  if (rec.registry == 0 || rec.registry % page != 0 || rec.registry >= (std::uint64_t{1} << 56))
    refuse(at, "names a registry address out of range");
  srb_registry_id id{};
  const readable r = copy_if_readable(rec.registry, &id, sizeof id);
  if (r == readable::unknown)
    refuse(at, std::string("names a registry that cannot be probed (") + sys::errno_name(errno) + ")");
  if (r == readable::no) refuse(at, "names a registry address that is not mapped");
  if (id.magic != srb_registry_magic || id.self != rec.registry || id.nonce != rec.nonce)
    refuse(at, "names an address that does not hold its registry");
  if (id.format != srb_process_registry::format_word())
    refuse(at, "names a registry of another version or layout of the core");
  return reinterpret_cast<srb_process_registry*>(rec.registry);  // NOLINT(performance-no-int-to-ptr): checked above
}

// The registry named by the anchor at candidate `at`; nullptr when `at`
// holds no anchor (nothing readable there, or memory that is not ours).
srb_process_registry* registry_at(std::uintptr_t at) {
  srb_anchor_record rec{};
  const readable r = copy_if_readable(at, &rec, sizeof rec);
  if (r == readable::unknown) refuse(at, std::string("cannot be probed (") + sys::errno_name(errno) + ")");
  if (r == readable::no || rec.magic != srb_anchor_magic) return nullptr;
  if (rec.format != srb_anchor_format())
    refuse(at, "was made by another version or layout of the core (format " + hex(rec.format) + ", this copy " +
                   hex(srb_anchor_format()) + "): the two cannot share buffers");
  if (rec.self != at) refuse(at, "names another address (a copied or moved page)");
  if (rec.check != anchor_check(rec)) refuse(at, "fails its check word (corrupted)");
  return checked_registry(at, rec);
}

// Maps fd's first page at `at` only if nothing is mapped there: true when
// it did.  A kernel that predates MAP_FIXED_NOREPLACE takes the address as
// a hint and maps elsewhere when `at` is taken: that counts as taken.
bool map_if_free(std::uintptr_t at, int fd, std::size_t page) {
  // NOLINTNEXTLINE(performance-no-int-to-ptr): a candidate address
  void* const want = reinterpret_cast<void*>(at);
  void* const got = sys::mmap(want, page, PROT_READ, MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, 0);
  if (got == want) return true;
  if (got != MAP_FAILED) {
    sys::munmap(got, page);
    return false;
  }
  if (errno == EEXIST) return false;
  const int err = errno;
  sys::close(fd);
  cannot_publish("mmap at " + hex(at), err);
}

}  // namespace

std::uintptr_t srb_anchor_candidate(unsigned i) noexcept {
  return i < srb_anchor_candidates ? first_candidate + i * candidate_stride : 0;
}

srb_anchor_record srb_make_anchor_record(std::uintptr_t self, const void* registry, std::uint64_t nonce) noexcept {
  srb_anchor_record r{srb_anchor_magic, srb_anchor_format(), self, reinterpret_cast<std::uintptr_t>(registry), nonce,
                      0};
  r.check = anchor_check(r);
  return r;
}

// The first anchor in candidate order wins: every copy walks the same
// sequence, and a copy publishes only at a candidate it saw no anchor below.
srb_process_registry* srb_find_anchor() {
#if defined(SHMPOOL_MUTANT_REGISTRY_SECOND_WHEN_UNSEEN)
  return nullptr;  // Mutant: a copy never looks for the anchor another copy published.
#endif
  for (unsigned i = 0; i < srb_anchor_candidates; ++i)
    if (srb_process_registry* r = registry_at(srb_anchor_candidate(i))) return r;
  return nullptr;
}

srb_process_registry* srb_publish_anchor(srb_process_registry* fresh) {
  const int fd = sys::memfd_create("shmpool-srb-anchor", MFD_CLOEXEC);
  if (fd < 0) cannot_publish("memfd_create", errno);
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  for (unsigned i = 0; i < srb_anchor_candidates; ++i) {
    const std::uintptr_t at = srb_anchor_candidate(i);
    // The record is complete in the file before the page can appear.
    const srb_anchor_record rec = srb_make_anchor_record(at, fresh, fresh->id().nonce);
    ssize_t wrote;
    do {
      wrote = sys::pwrite(fd, &rec, sizeof rec, 0);
    } while (wrote < 0 && errno == EINTR);
    if (wrote != static_cast<ssize_t>(sizeof rec)) {
      const int err = errno;
      sys::close(fd);
      cannot_publish("write of the anchor record", err);
    }
    crash_point(crash_site::registry_anchor_written);
    if (map_if_free(at, fd, page)) {
      crash_point(crash_site::registry_anchor_mapped);
      sys::close(fd);  // the mapping keeps the page
      return fresh;
    }
#if defined(SHMPOOL_MUTANT_REGISTRY_SECOND_WHEN_UNSEEN)
    continue;  // Mutant: a taken candidate is always someone else's memory.
#endif
    // Taken: by a copy that published first, or by memory that is not ours.
    srb_process_registry* won = nullptr;
    try {
      won = registry_at(at);
    } catch (...) {
      sys::close(fd);
      throw;
    }
    if (won != nullptr) {
      sys::close(fd);
      return won;
    }
  }
  sys::close(fd);
  throw registry_error("stable_reference_buffer: cannot publish the registry's anchor page: all " +
                       dec(srb_anchor_candidates) + " candidate addresses from " + hex(first_candidate) +
                       " are mapped by other code");
}

std::uintptr_t srb_anchor_address() {
  if (srb_local_registry_build()) return 0;
  const srb_process_registry* mine = &srb_current();
  for (unsigned i = 0; i < srb_anchor_candidates; ++i)
    if (registry_at(srb_anchor_candidate(i)) == mine) return srb_anchor_candidate(i);
  return 0;
}

const void* srb_find_registry_as_new_copy() {
  const srb_process_registry* r = srb_find_anchor();
  if (r == nullptr)
    throw registry_error("stable_reference_buffer: no anchor page at any of the " +
                         dec(srb_anchor_candidates) + " candidate addresses from " +
                         hex(first_candidate));
  return r;
}

}  // namespace shmpool::detail
