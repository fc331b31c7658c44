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

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define VALGRIND_DISABLE_ERROR_REPORTING
#define VALGRIND_ENABLE_ERROR_REPORTING
#endif

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

// The one deliberate hand-over of an address where nothing may be mapped to
// a system call whose buffer valgrind's memcheck checks (write(2) below):
// the EFAULT is the answer we ask for, so memcheck is told not to report
// it.  A client request: nothing outside valgrind.
class memcheck_quiet {
 public:
  memcheck_quiet() noexcept { VALGRIND_DISABLE_ERROR_REPORTING; }
  ~memcheck_quiet() { VALGRIND_ENABLE_ERROR_REPORTING; }
  memcheck_quiet(const memcheck_quiet&) = delete;
  memcheck_quiet& operator=(const memcheck_quiet&) = delete;
};

// Why a probe could not run: the calls that failed, in order, and their
// errno (the memfd's and then the pipe's, where both were tried).
class probe_failure {
 public:
  void add(const char* call, int err) noexcept {
    if (count_ < 2) calls_[count_++] = {call, err};
  }
  std::string text() const {
    std::string t;
    for (unsigned i = 0; i < count_; ++i)
      t += std::string(i == 0 ? "" : ", ") + calls_[i].call + " " + sys::errno_name(calls_[i].err);
    return t;
  }

 private:
  struct failed_call {
    const char* call;
    int err;
  };
  failed_call calls_[2] = {};
  unsigned count_ = 0;
};

// write(2) from src into wr (EFAULT where nothing is readable), then the
// bytes read back from rd: at offset 0 of a memfd (file), in order from a
// pipe.
readable copy_through(int wr, int rd, bool file, const void* src, void* out, std::size_t n,
                      probe_failure& failed) noexcept {
  long wrote;
  {
    const memcheck_quiet quiet;
    do {
      wrote = sys::raw_write(wr, src, n);
    } while (wrote < 0 && errno == EINTR);
  }
  if (wrote < 0 && errno == EFAULT) return readable::no;
  if (wrote >= 0 && wrote < static_cast<long>(n)) return readable::no;  // the readable part ended inside
  if (wrote < 0) {
    failed.add("write", errno);
    return readable::unknown;
  }
  ssize_t got;
  do {
    got = file ? sys::pread(rd, out, n, 0) : sys::read(rd, out, n);
  } while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(n)) return readable::yes;
  failed.add("read", got < 0 ? errno : EIO);  // a short read back proves nothing
  return readable::unknown;
}

// The probe through a descriptor: a memfd needs one (the one publishing
// needs too), a pipe two; the pipe where memfd_create is refused.
readable copy_through_descriptor(const void* src, void* out, std::size_t n, probe_failure& failed) noexcept {
  if (const int fd = sys::memfd_create("shmpool-srb-probe", MFD_CLOEXEC); fd >= 0) {
    const readable r = copy_through(fd, fd, true, src, out, n, failed);
    sys::close(fd);
    return r;
  }
  failed.add("memfd_create", errno);
  int fds[2];
  if (sys::pipe2(fds, O_CLOEXEC) != 0) {
    failed.add("pipe2", errno);
    return readable::unknown;
  }
  const readable r = copy_through(fds[1], fds[0], false, src, out, n, failed);
  sys::close(fds[0]);
  sys::close(fds[1]);
  return r;
}

// Copies n bytes (at most 64, within one page) from addr if they are
// readable, without touching them directly.  Never answers "no" on evidence
// that is not proven: one wrong "nothing here" at a published anchor makes
// a second registry in the process.
//   1. process_vm_readv on ourselves: the bytes, or EFAULT where nothing is
//      readable.
//   2. Its EFAULT is believed only if the same call, with the same
//      arguments, then copies from memory that is readable (our own): a
//      seccomp filter may answer process_vm_readv with any errno, EFAULT
//      included, but it decides on the call's arguments alone, never on the
//      memory their iovecs name.
//   3. Otherwise write(2) from addr into a descriptor (memfd or pipe): EFAULT
//      where nothing is readable.
//   4. `unknown` when no probe can run (`failed` says why): the caller must
//      not guess.
// Every probe goes through syscall(2) (sys.hpp): the sanitizers intercept
// the libc wrappers and would report the probe itself.
readable copy_if_readable(std::uint64_t addr, void* out, std::size_t n, probe_failure& failed) noexcept {
  // NOLINTNEXTLINE(performance-no-int-to-ptr): a candidate or a registry address; the kernel checks it
  void* const src = reinterpret_cast<void*>(addr);
  unsigned char ours[64] = {};  // the control's source: readable
  iovec local{out, n};
  iovec remote{src, n};
  const long got = sys::process_vm_readv(::getpid(), &local, 1UL, &remote, 1UL);
  if (got == static_cast<long>(n)) return readable::yes;
  if ((got >= 0 || errno == EFAULT) && n <= sizeof ours) {
    remote.iov_base = ours;  // the same arguments (the iovecs' addresses), readable memory
    if (sys::process_vm_readv(::getpid(), &local, 1UL, &remote, 1UL) == static_cast<long>(n)) return readable::no;
  }
  return copy_through_descriptor(src, out, n, failed);
}

// The registry's first words, read without trusting the address.
srb_process_registry* checked_registry(std::uintptr_t at, const srb_anchor_record& rec) {
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  if (rec.registry == 0 || rec.registry % page != 0 || rec.registry >= (std::uint64_t{1} << 56))
    refuse(at, "names a registry address out of range");
  srb_registry_id id{};
  probe_failure failed;
  const readable r = copy_if_readable(rec.registry, &id, sizeof id, failed);
  if (r == readable::unknown) refuse(at, "names a registry that cannot be probed (" + failed.text() + ")");
  if (r == readable::no) refuse(at, "names a registry address that is not mapped (EFAULT)");
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
  probe_failure failed;
  const readable r = copy_if_readable(at, &rec, sizeof rec, failed);
  if (r == readable::unknown) refuse(at, "cannot be probed (" + failed.text() + ")");
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
