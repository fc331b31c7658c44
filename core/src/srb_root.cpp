// The stable_reference_buffer root segment: naming, atomic publication,
// validation of what a copy reads back, and removal of dead processes'
// segments.  See detail/srb_registry.hpp and core/PROTOCOL.md.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>

#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/platform/linux.hpp"
#include "shmpool/platform/liveness.hpp"
#include "shmpool/stable_reference_buffer.hpp"

namespace shmpool::detail {
namespace {

using platform::crash_site;
// A process killed here leaves files in /dev/shm; the crash-point sweep
// (stress/registry_sweep.cpp) checks that they are complete or swept.
inline void crash_point(crash_site site) noexcept { platform::linux_platform::crash_point(site); }

constexpr const char* shm_dir = "/dev/shm/";
constexpr const char* name_prefix = "shmpool-srb-";
constexpr std::size_t name_prefix_len = 12;
constexpr std::size_t identity_hex_len = 16;

static_assert(sizeof(srb_root_record) == 48);
static_assert(srb_root_format() != 0 && srb_root_format() != ~std::uint64_t{0});
static_assert(srb_root_magic != 0 && srb_root_magic != ~std::uint64_t{0});

// Fixed-size path buffers keep the fork-child path free of allocation.
struct path_buf {
  char text[96];
};

path_buf root_path_of(std::uint64_t owner) noexcept {
  path_buf p{};
  std::snprintf(p.text, sizeof p.text, "%s%s%016" PRIx64, shm_dir, name_prefix, owner);
  return p;
}

// Unique per thread and moment; O_EXCL catches the impossible clash.
path_buf temp_path_of(std::uint64_t owner) noexcept {
  path_buf p{};
  std::snprintf(p.text, sizeof p.text, "%s%s%016" PRIx64 ".tmp.%ld.%" PRId64, shm_dir, name_prefix, owner,
                static_cast<long>(::gettid()), platform::linux_platform::now_ns());
  return p;
}

std::uint64_t mix(std::uint64_t h, std::uint64_t v) noexcept {
  h ^= v + 0x9E37'79B9'7F4A'7C15ULL + (h << 6) + (h >> 2);
  h ^= h >> 31;
  h *= 0xBF58'476D'1CE4'E5B9ULL;
  return h ^ (h >> 29);
}

std::uint64_t root_check(const srb_root_record& r) noexcept {
  std::uint64_t h = 0x5EED;
  for (std::uint64_t w : {r.magic, r.format, r.owner, r.registry, r.nonce}) h = mix(h, w);
  return h;
}

bool write_all(int fd, const void* data, std::size_t n) noexcept {
  const char* p = static_cast<const char*>(data);
  while (n != 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

[[noreturn]] void corrupt(std::uint64_t owner, const char* what) {
  throw registry_error("stable_reference_buffer registry segment " + srb_root_path(owner) +
                       " is not usable: " + what);
}

// Copies n bytes from addr if they are readable, without touching them
// directly: process_vm_readv on ourselves fails with EFAULT where nothing is
// readable.  Where that call is not allowed (some seccomp profiles), write(2)
// into a pipe does the same.  Both go through syscall(2) on purpose:
// sanitizers intercept the libc wrappers and would report the probe itself.
bool copy_if_readable(std::uint64_t addr, void* out, std::size_t n) noexcept {
  // NOLINTNEXTLINE(performance-no-int-to-ptr): the address is data read from the segment; the kernel checks it
  void* const src = reinterpret_cast<void*>(addr);
  iovec local{out, n};
  iovec remote{src, n};
  const long got = ::syscall(SYS_process_vm_readv, ::getpid(), &local, 1UL, &remote, 1UL, 0UL);
  if (got >= 0 || errno == EFAULT) return got == static_cast<long>(n);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  const bool ok = ::syscall(SYS_write, fds[1], src, n) == static_cast<long>(n) &&
                  ::read(fds[0], out, n) == static_cast<ssize_t>(n);
  ::close(fds[0]);
  ::close(fds[1]);
  return ok;
}

// Reads the whole segment; returns false if it does not exist.
bool read_record(std::uint64_t owner, srb_root_record& rec, ssize_t& got) {
  const path_buf path = root_path_of(owner);
  const int fd = ::open(path.text, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    throw std::system_error(errno, std::generic_category(), std::string("open ") + path.text);
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && (st.st_uid != ::geteuid() || (st.st_mode & 022) != 0)) {
    ::close(fd);
    corrupt(owner, "owned by another user or writable by others");
  }
  unsigned char buf[sizeof(srb_root_record) + 1];
  do {
    got = ::pread(fd, buf, sizeof buf, 0);
  } while (got < 0 && errno == EINTR);
  const int saved = errno;
  ::close(fd);
  if (got < 0) throw std::system_error(saved, std::generic_category(), std::string("read ") + path.text);
  std::memcpy(&rec, buf, std::min(sizeof rec, static_cast<std::size_t>(got)));
  return true;
}

void check_record(const srb_root_record& rec, ssize_t got, std::uint64_t owner) {
  if (got != static_cast<ssize_t>(sizeof rec)) corrupt(owner, "wrong size (truncated or overgrown)");
  if (rec.magic != srb_root_magic) corrupt(owner, "bad magic (not a stable_reference_buffer root)");
  if (rec.format != srb_root_format()) corrupt(owner, "unsupported format (another version or layout of the core)");
  if (rec.owner != owner) corrupt(owner, "owner identity does not match the segment's name");
  if (rec.check != root_check(rec)) corrupt(owner, "checksum mismatch");
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  if (rec.registry == 0 || rec.registry % page != 0 || rec.registry >= (std::uint64_t{1} << 56))
    corrupt(owner, "registry address out of range");
}

// The registry's first words, read without trusting the address.
void check_registry(const srb_root_record& rec) {
  srb_registry_id id{};
  if (!copy_if_readable(rec.registry, &id, sizeof id)) corrupt(rec.owner, "registry address is not mapped");
  if (id.magic != srb_registry_magic || id.self != rec.registry || id.nonce != rec.nonce)
    corrupt(rec.owner, "the address does not hold this segment's registry");
  if (id.format != srb_process_registry::format_word())
    corrupt(rec.owner, "registry of another version or layout of the core");
}

// Parses "shmpool-srb-<16 hex>" optionally followed by ".anything".
bool identity_in_name(const char* name, std::uint64_t& identity) noexcept {
  if (std::strncmp(name, name_prefix, name_prefix_len) != 0) return false;
  const char* hex = name + name_prefix_len;
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < identity_hex_len; ++i) {
    const char c = hex[i];
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = v << 4 | static_cast<std::uint64_t>(d);
  }
  const char tail = hex[identity_hex_len];
  if (tail != '\0' && tail != '.') return false;
  identity = v;
  return v != 0;
}

}  // namespace

std::string srb_root_name(std::uint64_t identity) {
  const std::string path = srb_root_path(identity);
  return path.substr(std::strlen(shm_dir));
}

std::string srb_root_path(std::uint64_t identity) { return root_path_of(identity).text; }

srb_root_record srb_make_root_record(std::uint64_t owner, const void* registry, std::uint64_t nonce) noexcept {
  srb_root_record r{srb_root_magic, srb_root_format(), owner, reinterpret_cast<std::uintptr_t>(registry), nonce, 0};
  r.check = root_check(r);
  return r;
}

// Writes the record under a temporary name, then link(2)s it to the final
// name: the final name appears complete or not at all, and link fails with
// EEXIST if another copy published first.
srb_publish srb_publish_root(const srb_root_record& rec) noexcept {
  const path_buf final_path = root_path_of(rec.owner);
#if defined(SHMPOOL_MUTANT_REGISTRY_ROOT_IN_PLACE)
  // Mutant: writes the final name in place, so a process killed between
  // the create and the write leaves an empty root segment.
  const int direct = ::open(final_path.text, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (direct < 0) return errno == EEXIST ? srb_publish::exists : srb_publish::failed;
  crash_point(crash_site::registry_root_temp_created);
  const bool direct_written = write_all(direct, &rec, sizeof rec);
  ::close(direct);
  return direct_written ? srb_publish::published : srb_publish::failed;
#endif
  const path_buf temp = temp_path_of(rec.owner);
  const int fd = ::open(temp.text, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return srb_publish::failed;
  crash_point(crash_site::registry_root_temp_created);
  const bool written = write_all(fd, &rec, sizeof rec);
  ::close(fd);
  srb_publish result = srb_publish::failed;
  if (written) {
    crash_point(crash_site::registry_root_temp_written);
    if (::link(temp.text, final_path.text) == 0) {
      result = srb_publish::published;
      crash_point(crash_site::registry_root_linked);
    } else if (errno == EEXIST) {
      result = srb_publish::exists;
    }
  }
  ::unlink(temp.text);
  return result;
}

void srb_unlink_root(std::uint64_t owner) noexcept {
  const path_buf path = root_path_of(owner);
  ::unlink(path.text);
}

srb_process_registry* srb_open_root(std::uint64_t owner) {
  srb_root_record rec{};
  ssize_t got = 0;
  if (!read_record(owner, rec, got)) return nullptr;
  check_record(rec, got, owner);
  check_registry(rec);
  return reinterpret_cast<srb_process_registry*>(rec.registry);  // NOLINT(performance-no-int-to-ptr): checked above
}

std::size_t srb_sweep_dead_registries() {
  DIR* dir = ::opendir(shm_dir);
  if (dir == nullptr) return 0;
  const std::uint64_t me = platform::proc_liveness::self();
  std::size_t removed = 0;
  while (const dirent* d = ::readdir(dir)) {  // NOLINT(concurrency-mt-unsafe): this DIR is ours alone
    std::uint64_t owner = 0;
    if (!identity_in_name(d->d_name, owner) || owner == me) continue;
    if (!platform::proc_liveness::certainly_dead(owner)) continue;  // live, or cannot tell: keep
    const std::string path = std::string(shm_dir) + d->d_name;
    crash_point(crash_site::registry_sweep_unlinking);
    if (::unlink(path.c_str()) == 0) ++removed;
  }
  ::closedir(dir);
  return removed;
}

}  // namespace shmpool::detail
