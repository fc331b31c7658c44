// The pool handle: creating, opening and attaching mappings, and the
// variants' data access.  The claim/release protocol is slot_protocol.hpp.
#include "shmpool/pool.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <shared_mutex>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>

#include "shmpool/detail/format.hpp"
#include "shmpool/platform/sys.hpp"

namespace shmpool {
namespace detail {
namespace {

using protocol = slot_protocol<shm_platform>;

// Whether handles may run the fast path inline (pool.hpp, hot_view): not in
// a build with a seeded defect, crash points or faults, whose protocol code
// must be the library's own (tests compiled against the headers do not see
// those definitions).
#if defined(SHMPOOL_MUTANT_BUILD) || defined(SHMPOOL_CRASH_POINTS) || defined(SHMPOOL_FAULTS)
constexpr bool inline_fast_path_allowed = false;
#else
constexpr bool inline_fast_path_allowed = true;
#endif

[[noreturn]] void fail(errc e, const std::string& where, const std::string& why) {
  throw error(make_error_code(e), "shmpool: " + where + ": " + why);
}
[[noreturn]] void fail_errno(int err, const std::string& where, const std::string& doing) {
  throw error(std::error_code(err, std::system_category()),
              "shmpool: " + where + ": " + doing + ": " + std::system_category().message(err));
}

// Closes an fd on scope exit unless released.
class fd_holder {
 public:
  explicit fd_holder(int fd) noexcept : fd_(fd) {}
  fd_holder(const fd_holder&) = delete;
  fd_holder& operator=(const fd_holder&) = delete;
  ~fd_holder() {
    if (fd_ >= 0) platform::sys::close(fd_);
  }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// ---- parameters and their messages -------------------------------------------

// A name as an error message shows it: printable ASCII as is, every other
// byte (a NUL among them) as \xNN, so what() is never cut short.
std::string printable(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b < 0x7F) {
      out += c;
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[b >> 4];
      out += hex[b & 15];
    }
  }
  return out;
}

pool_layout layout_or_throw(pool_variant v, std::uint64_t capacity, std::uint64_t elem_size, std::uint64_t max_len,
                            const std::string& where) {
  const auto code = static_cast<variant_code>(v);
  if (auto l = compute_layout(code, capacity, elem_size, max_len)) return *l;
  fail(errc::bad_argument, where,
       std::string("invalid parameters for a ") + variant_name(code) + " pool: " +
           layout_problem(code, capacity, elem_size, max_len));
}

// "capacity 10 and max_len 32" (str) or "capacity 10 and elem_size 8".
std::string parameters_of(const pool_layout& l) {
  return "capacity " + std::to_string(l.capacity) +
         (l.variant == variant_code::str ? " and max_len " + std::to_string(l.max_len)
                                         : " and elem_size " + std::to_string(l.elem_size));
}

void check_parameters_match(const pool_layout& found, const pool_layout& wanted, const std::string& where) {
  if (found.capacity == wanted.capacity && found.elem_size == wanted.elem_size && found.max_len == wanted.max_len)
    return;
  const char* differs = found.capacity != wanted.capacity ? "capacity"
                        : found.max_len != wanted.max_len ? "max_len"
                                                          : "elem_size";
  fail(errc::parameter_mismatch, where,
       std::string(differs) + " differs: the existing pool has " + parameters_of(found) + ", asked for " +
           parameters_of(wanted));
}

// ---- what the backing can hold (checked before reserving) ---------------------

[[noreturn]] void exceeds(const std::string& where, std::uint64_t size, std::uint64_t limit, const char* what) {
  fail(errc::exceeds_backing, where,
       "the pool needs " + std::to_string(size) + " bytes, more than the " + std::to_string(limit) + " bytes of " +
           what + "; nothing was reserved");
}

// open(2), retried while a signal interrupts it.
int open_retrying(const char* path, int flags, mode_t mode = 0) noexcept {
  int fd;
  do {
    fd = platform::sys::open(path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// The text of a small file (/proc, /sys), or nullopt if unreadable.
std::optional<std::string> read_small_file(const char* path) {
  const int fd = open_retrying(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = platform::sys::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || text.size() > 65536) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  platform::sys::close(fd);
  return text;
}

// MemAvailable + SwapFree from /proc/meminfo, in bytes; nullopt if unreadable.
std::optional<std::uint64_t> meminfo_available() {
  const auto text = read_small_file("/proc/meminfo");
  if (!text) return std::nullopt;
  const auto kib_of = [&](const char* key) -> std::optional<std::uint64_t> {
    const auto at = text->find(key);
    if (at == std::string::npos) return std::nullopt;
    return std::strtoull(text->c_str() + at + std::strlen(key), nullptr, 10);
  };
  const auto available = kib_of("MemAvailable:");
  const auto swap = kib_of("SwapFree:");
  if (!available || !swap) return std::nullopt;
  return (*available + *swap) * 1024;
}

// A cgroup limit file: a number of bytes, or nullopt for "max", unlimited
// (cgroup v1 shows a number near 2^63) or unreadable.
std::optional<std::uint64_t> cgroup_limit(const std::string& path) {
  const auto text = read_small_file(path.c_str());
  if (!text || text->empty() || (*text)[0] < '0' || (*text)[0] > '9') return std::nullopt;
  const std::uint64_t v = std::strtoull(text->c_str(), nullptr, 10);
  return v >= (std::uint64_t{1} << 62) ? std::nullopt : std::optional<std::uint64_t>(v);
}

// The memory limit of this process's memory cgroup, swap included (v2:
// memory.max + memory.swap.max; v1: the larger of memory.limit_in_bytes and
// memory.memsw.limit_in_bytes), or nullopt when unlimited or unreadable.
// The limit only, not the usage: usage counts reclaimable page cache, and
// comparing with it would refuse pools that fit.  Limits of ancestor
// cgroups are not read.
std::optional<std::uint64_t> cgroup_memory_limit() {
  const auto lines = read_small_file("/proc/self/cgroup");
  if (!lines) return std::nullopt;
  std::optional<std::uint64_t> lowest;
  const auto consider = [&](std::optional<std::uint64_t> limit) {
    if (limit && (!lowest || *limit < *lowest)) lowest = limit;
  };
  std::size_t from = 0;
  while (from < lines->size()) {
    const std::size_t eol = std::min(lines->find('\n', from), lines->size());
    const std::string line = lines->substr(from, eol - from);  // "id:controllers:path"
    from = eol + 1;
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = "," + line.substr(first + 1, second - first - 1) + ",";
    const std::string path = line.substr(second + 1);
    if (controllers == ",,") {  // v2
      const std::string dir = "/sys/fs/cgroup" + path;
      if (const auto memory = cgroup_limit(dir + "/memory.max"))
        consider(*memory + cgroup_limit(dir + "/memory.swap.max").value_or(0));
    } else if (controllers.find(",memory,") != std::string::npos) {  // v1
      const std::string dir = "/sys/fs/cgroup/memory" + path;
      if (const auto memory = cgroup_limit(dir + "/memory.limit_in_bytes"))
        consider(std::max(*memory, cgroup_limit(dir + "/memory.memsw.limit_in_bytes").value_or(0)));
    }
  }
  return lowest;
}

// The memory a new shared-memory pool may take without summoning the OOM
// killer: MemAvailable + SwapFree, or sysinfo's free RAM, buffers and swap
// where /proc is unreadable.
std::uint64_t memory_available(const std::string& where) {
  if (auto m = meminfo_available()) return *m;
  struct sysinfo info {};
  if (platform::sys::sysinfo(&info) != 0) fail_errno(errno, where, "reading the available memory (sysinfo)");
  return (static_cast<std::uint64_t>(info.freeram) + info.bufferram + info.freeswap) * info.mem_unit;
}

// Fails with errc::exceeds_backing, naming the size and the limit, when the
// backing of `fd` cannot hold `size` bytes: RLIMIT_FSIZE always (beyond it,
// ftruncate raises SIGXFSZ), the free space of a file's filesystem, and for
// memory (memfd, anonymous, and files on tmpfs) available memory and swap
// and the memory cgroup's limit.
// A full reservation is the OOM killer's business, not ours: refused here.
void check_backing(int fd, std::uint64_t size, bool in_memory, const std::string& where) {
  struct rlimit fsize {};
  if (platform::sys::getrlimit(RLIMIT_FSIZE, &fsize) != 0) fail_errno(errno, where, "getrlimit(RLIMIT_FSIZE)");
  if (fsize.rlim_cur != RLIM_INFINITY && size > fsize.rlim_cur)
    exceeds(where, size, fsize.rlim_cur, "RLIMIT_FSIZE (the largest file this process may write)");
  if (!in_memory) {
    struct statfs fs {};
    if (platform::sys::fstatfs(fd, &fs) != 0) fail_errno(errno, where, "fstatfs");
    in_memory = fs.f_type == TMPFS_MAGIC;
    struct statvfs vfs {};
    if (platform::sys::fstatvfs(fd, &vfs) != 0) fail_errno(errno, where, "fstatvfs");
    const std::uint64_t blocks = vfs.f_bavail;
    const std::uint64_t free_bytes =
        blocks > ~std::uint64_t{0} / vfs.f_frsize ? ~std::uint64_t{0} : blocks * vfs.f_frsize;
    if (size > free_bytes) exceeds(where, size, free_bytes, "free space on its filesystem");
  }
  if (in_memory) {
    const std::uint64_t available = memory_available(where);
    if (size > available) exceeds(where, size, available, "available memory and swap (MemAvailable + SwapFree)");
    if (const auto limit = cgroup_memory_limit(); limit && size > *limit)
      exceeds(where, size, *limit, "the memory limit of this process's cgroup");
  }
}

// ---- mapping and reserving ------------------------------------------------------

void* map_or_throw(int fd, std::uint64_t size, const std::string& where) {
  void* p = platform::sys::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) fail_errno(errno, where, "mmap");
  return p;
}

// Reserves the space now, so that a full /dev/shm or disk fails here and not
// as a SIGBUS at first touch.  check_backing() has already refused what
// cannot fit; this catches what changed since.
void reserve_or_throw(int fd, std::uint64_t size, const std::string& where) {
  int rc;
  do {
    rc = platform::sys::ftruncate(fd, static_cast<off_t>(size));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) fail_errno(errno, where, "ftruncate");
  if (const int rc = platform::sys::fallocate(fd, 0, static_cast<off_t>(size)); rc != 0)
    fail_errno(rc, where, "reserving " + std::to_string(size) + " bytes");
}

// Writes a fresh header into a zero-filled mapping, under the init marker.
void write_header(void* base, const pool_layout& l) {
  pool_header h{};
  h.magic = pool_init_magic;
  h.format = format_word();
  h.variant = static_cast<std::uint32_t>(l.variant);
  h.capacity = l.capacity;
  h.elem_size = l.elem_size;
  h.max_len = l.max_len;
  h.groups_offset = l.groups_offset;
  h.meta_offset = l.meta_offset;
  h.data_offset = l.data_offset;
  h.total_size = l.total_size;
  h.checksum = header_checksum(h);
  std::memcpy(base, &h, sizeof h);
}

// The magic last: whoever sees it sees the whole header.
void write_magic(void* base) {
  reinterpret_cast<std::atomic<std::uint64_t>*>(base)->store(pool_magic, std::memory_order_release);
}

void initialise(void* base, const pool_layout& l) {
  write_header(base, l);
  write_magic(base);
}

// pread(2) of n bytes at off, retried on EINTR and continued after a short
// read; returns the bytes read (n unless the file ends), or -1 with errno.
ssize_t pread_whole(int fd, void* buf, std::size_t n, off_t off) noexcept {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = platform::sys::pread(fd, static_cast<char*>(buf) + got, n - got, off + static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

pool_header read_header(int fd, std::uint64_t file_size, const std::string& where) {
  pool_header h{};
  if (file_size < sizeof h) fail(errc::truncated, where, "truncated: " + std::to_string(file_size) + " bytes, smaller than a pool header");
  errno = 0;
  if (pread_whole(fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h))
    fail_errno(errno ? errno : EIO, where, "reading the header");
  return h;
}

pool_layout validated_layout(int fd, std::uint64_t file_size, pool_variant expected, const std::string& where) {
  const pool_header h = read_header(fd, file_size, where);
  const header_verdict verdict = validate_header(h, file_size);
  if (!verdict.layout) fail(static_cast<errc>(verdict.reason), where, verdict.what);
#if !defined(SHMPOOL_MUTANT_HEADER_SKIP_VARIANT)
  if (verdict.layout->variant != static_cast<variant_code>(expected))
    fail(errc::wrong_variant, where,
         std::string("wrong variant: the pool holds ") + variant_name(verdict.layout->variant) + " slots, opened as " +
             variant_name(static_cast<variant_code>(expected)));
#endif
  return *verdict.layout;
}

// Where this process starts looking for a free slot: spread over the pool so
// that processes do not all race for the first free bit.
std::uint64_t start_slot_for(std::uint64_t identity, std::uint64_t capacity) noexcept {
  const std::uint64_t x = (identity + 1) * 0x9E3779B97F4A7C15ULL;
  return (x >> 32) % capacity;
}

}  // namespace

// The eventfd a handle notifies through, kept alive by whoever uses it: a
// notify or consume copies the holder and uses the fd with no lock held
// (a consume may block on a caller's fd for as long as it likes), and
// eventfd_set swaps the holder; the last user of an owned fd closes it.
// Readers and writers meet only for a pointer copy under one mutex for the
// whole library, which a fork handler holds across fork: a child never
// inherits it held.  Format 3 held a reader-preferring rwlock across the
// system call, and ten threads looping on notify starved eventfd_set
// forever; a writer-preferring one deadlocked a consume blocked on a
// caller's fd against the notify queued behind a waiting eventfd_set.
//
// A caller's fd is used through a dup of it (one open file description:
// the same counter, the same blocking mode), so the caller may close its
// own number as soon as eventfd_set() returns although a notify that
// started before may still be writing: never to a number the kernel reused.
struct eventfd_holder {
  int fd = -1;
  bool owned = false;  // eventfd()'s own or a caller's dup: closed with its last user
  eventfd_holder(int f, bool o) noexcept : fd(f), owned(o) {}
  eventfd_holder(const eventfd_holder&) = delete;
  eventfd_holder& operator=(const eventfd_holder&) = delete;
  ~eventfd_holder() {
    if (owned && fd >= 0) platform::sys::close(fd);
  }
};
std::mutex g_eventfd_swap;  // held for a pointer copy or swap, never across a system call
[[maybe_unused]] const bool g_eventfd_swap_fork_safe = [] {
  ::pthread_atfork([] { g_eventfd_swap.lock(); }, [] { g_eventfd_swap.unlock(); },
                   [] { g_eventfd_swap.unlock(); });
  return true;
}();

// The process-local handle state.  Every bound here was validated at open
// and is never re-read from the mapping.
class pool_core {
 public:
  pool_core(void* base, const pool_layout& l, int fd, std::optional<std::filesystem::path> path)
      : base_(static_cast<std::byte*>(base)),
        layout_(l),
        proto_(view_of(base_, l)),
        fd_(fd),
        path_(std::move(path)) {}
  pool_core(const pool_core&) = delete;
  pool_core& operator=(const pool_core&) = delete;
  ~pool_core() {
    platform::sys::munmap(base_, layout_.total_size);
    if (fd_ >= 0) platform::sys::close(fd_);
  }

  static pool_view<shm_platform> view_of(std::byte* base, const pool_layout& l) noexcept {
    pool_view<shm_platform> v;
    v.groups = reinterpret_cast<group_word<shm_platform>*>(base + l.groups_offset);
    v.meta = reinterpret_cast<slot_meta<shm_platform>*>(base + l.meta_offset);
    v.control = reinterpret_cast<pool_control<shm_platform>*>(base + control_offset);
    v.capacity = l.capacity;
    return v;
  }

  void check_index(slot_index i) const {
    if (i >= layout_.capacity) [[unlikely]]
      throw_index_out_of_range(i, layout_.capacity);
  }
  // Out of line, so that check_index inlines into every hot path.
  [[noreturn, gnu::noinline, gnu::cold]] static void throw_index_out_of_range(slot_index i, std::uint64_t capacity) {
    throw std::out_of_range("shmpool: slot index " + std::to_string(i) + " out of range (capacity " +
                            std::to_string(capacity) + ")");
  }
  std::byte* data(slot_index i) const noexcept { return base_ + layout_.data_offset + i * layout_.elem_size; }
  pool_control<shm_platform>& control() const noexcept {
    return *reinterpret_cast<pool_control<shm_platform>*>(base_ + control_offset);
  }
  std::byte* base_;
  pool_layout layout_;
  protocol proto_;
  int fd_;  // memfd or from_fd's dup; -1 otherwise
  std::optional<std::filesystem::path> path_;
  // The eventfd state, one unit: written only under the exclusive lock;
  // notify/consume hold the shared lock while they use the fd, so an fd is
  // never closed under them.  eventfd_ is atomic only for fileno().
  std::shared_ptr<const eventfd_holder> eventfd_holder_;  // under g_eventfd_swap
  std::atomic<int> eventfd_{-1};
  std::shared_ptr<const eventfd_holder> eventfd_in_use() const {
    std::lock_guard guard(g_eventfd_swap);
    return eventfd_holder_;
  }
#if defined(SHMPOOL_MUTANT_READER_PREFERRING_LOCK)
  // Defect (format 3): a reader-preferring lock held across every use of
  // the fd; eventfd_set waits for a moment with no user, which ten looping
  // users never give it.
  mutable std::shared_mutex mutant_users_;
#endif
};

// ---- factories ---------------------------------------------------------------
//
// A named pool (PROTOCOL.md "Creation and opening").  The invariant:
//   N1  the final name only ever names a complete pool, or a placeholder
//       (an empty file, or an earlier version's interrupted initialisation)
//       that no process can have attached.
// A pool is built in a temporary file of the same directory (O_TMPFILE, or a
// uniquely named file where the filesystem refuses O_TMPFILE) and appears at
// the final name complete, by link(2) (which fails if the name exists) or,
// over a placeholder whose lock the creator holds, by rename(2).  A creator
// that fails or dies leaves nothing at the final name and never removes a
// path another opener may hold; an opener never writes a file it found at
// the final name, so a corrupted header is refused, never re-initialised.

namespace {

using platform::crash_site;
inline void crash_point(crash_site site) noexcept { platform::linux_platform::crash_point(site); }

// ---- the init fds and fork --------------------------------------------------------
// flock belongs to the open file description, which a fork child shares with
// its parent: a child that kept its copy of a placeholder's fd would hold the
// lock after the creator died, and every later opener would wait for that
// child.  So every fd open_core opens is listed here while it is open, and
// the fork child handler closes the child's copies (the parent's stay: the
// lock lives while any fd on the description does).  The gate covers "open,
// then list" and "unlist, then close", so a fork never falls in between; the
// prepare handler takes it, so the child's table is consistent.
pthread_mutex_t init_fd_gate = PTHREAD_MUTEX_INITIALIZER;
constexpr std::size_t max_listed_fds = 256;  // concurrent opens in one process
int listed_fds[max_listed_fds];              // fd + 1; 0 = empty

void fork_prepare() noexcept { pthread_mutex_lock(&init_fd_gate); }
void fork_parent() noexcept { pthread_mutex_unlock(&init_fd_gate); }
void fork_child() noexcept {
  for (int& slot : listed_fds)
    if (slot != 0) {
      platform::sys::close(slot - 1);
      slot = 0;
    }
  pthread_mutex_unlock(&init_fd_gate);
}
// A library constructor: registered before any user code can fork.
[[maybe_unused]] const int fork_handlers_registered = pthread_atfork(fork_prepare, fork_parent, fork_child);

// An fd open_core opened, listed for the fork child handler while it is open.
class listed_fd {
 public:
  // Runs open_fn (returns an fd or -1 with errno) under the gate and lists
  // the fd.  get() < 0 and errno set on failure.
  explicit listed_fd(const std::function<int()>& open_fn) {
    pthread_mutex_lock(&init_fd_gate);
    fd_ = open_fn();
    int err = errno;
    if (fd_ >= 0) {
      int* free_slot = nullptr;
      for (int& slot : listed_fds)
        if (slot == 0) {
          free_slot = &slot;
          break;
        }
      if (free_slot != nullptr) {
        *free_slot = fd_ + 1;
      } else {
        platform::sys::close(fd_);
        fd_ = -1;
        err = EMFILE;  // more than max_listed_fds opens in progress
      }
    }
    pthread_mutex_unlock(&init_fd_gate);
    errno = err;
  }
  listed_fd(const listed_fd&) = delete;
  listed_fd& operator=(const listed_fd&) = delete;
  ~listed_fd() {
    if (fd_ < 0) return;
    pthread_mutex_lock(&init_fd_gate);
    for (int& slot : listed_fds)
      if (slot == fd_ + 1) slot = 0;
    platform::sys::close(fd_);
    pthread_mutex_unlock(&init_fd_gate);
  }
  int get() const noexcept { return fd_; }

 private:
  int fd_ = -1;
};

constexpr int max_open_attempts = 100;  // each retry means another opener changed the path

std::filesystem::path directory_of(const std::filesystem::path& p) {
  return p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
}

// A hidden name beside the final one, unique in this process and (with the
// pid) among live processes; one left by a dead process with our pid is
// skipped by O_EXCL.
std::string temporary_name(const std::filesystem::path& final, unsigned attempt) {
  static std::atomic<std::uint64_t> counter{0};
  return (directory_of(final) / ("." + final.filename().string() + ".shmpool-init." + std::to_string(::getpid()) +
                                 "." + std::to_string(counter.fetch_add(1) + attempt)))
      .string();
}

// An O_TMPFILE can be given a name only through /proc/self/fd (or
// AT_EMPTY_PATH, which needs CAP_DAC_READ_SEARCH).
bool unnamed_files_publishable() {
  struct stat st {};
  return platform::sys::fstatat(AT_FDCWD, "/proc/self/fd", &st, 0) == 0;
}

// Gives the unnamed temporary `fd` the name `to`; -1 with errno on failure
// (EEXIST: the name exists).
int link_unnamed(int fd, const std::string& to) {
  if (platform::sys::linkat(fd, "", AT_FDCWD, to.c_str(), AT_EMPTY_PATH) == 0) return 0;
  if (errno != ENOENT && errno != EPERM) return -1;
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  return platform::sys::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, to.c_str(), AT_SYMLINK_FOLLOW);
}

// A pool being built outside the final name.  Until published, destroying it
// discards it: an unnamed temporary vanishes with its fd, a named one (ours
// alone: O_EXCL) is removed.  Nothing else is ever removed.
class temp_pool {
 public:
  temp_pool(const std::filesystem::path& final, const std::string& where)
      : fd_([&] {
          if (unnamed_files_publishable()) {
            const int fd = open_retrying(directory_of(final).c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0666);
            if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
          }
          // The filesystem refuses O_TMPFILE: a uniquely named file, ours alone.
          for (unsigned attempt = 0; attempt < 100; ++attempt) {
            name_ = temporary_name(final, attempt);
            const int fd = open_retrying(name_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
            if (fd >= 0 || errno != EEXIST) {
              if (fd < 0) name_.clear();
              return fd;
            }
          }
          name_.clear();
          errno = EEXIST;
          return -1;
        }) {
    if (fd_.get() < 0) fail_errno(errno, where, "creating a temporary file in " + directory_of(final).string());
    crash_point(crash_site::init_temp_created);
  }
  temp_pool(const temp_pool&) = delete;
  temp_pool& operator=(const temp_pool&) = delete;
  ~temp_pool() {
    if (published_) return;
    crash_point(crash_site::init_discarding);
    if (base_ != nullptr) platform::sys::munmap(base_, layout_.total_size);
    if (!name_.empty()) platform::sys::unlink(name_.c_str());
  }

  // Reserves, maps and writes the pool, the magic last.  `mode`: the
  // placeholder's permissions, kept by the pool replacing it.
  void build(const pool_layout& l, std::optional<mode_t> mode, const std::string& where) {
    if (mode && platform::sys::fchmod(fd_.get(), *mode) != 0) fail_errno(errno, where, "fchmod");
    check_backing(fd_.get(), l.total_size, /*in_memory=*/false, where);
    reserve_or_throw(fd_.get(), l.total_size, where);
    crash_point(crash_site::init_reserved);
    base_ = map_or_throw(fd_.get(), l.total_size, where);
    layout_ = l;
    write_header(base_, l);
    crash_point(crash_site::init_header_written);
    write_magic(base_);
    crash_point(crash_site::init_complete);
  }

  // Links the complete pool at `final`, which must not exist.  False if it
  // does (another opener published first; ours is discarded).
  bool publish_new(const std::filesystem::path& final, const std::string& where) {
    const int rc = name_.empty() ? link_unnamed(fd_.get(), final.string())
                                 : platform::sys::link(name_.c_str(), final.c_str());
    if (rc != 0) {
      if (errno == EEXIST) return false;
      fail_errno(errno, where, "publishing the new pool (link)");
    }
    published_ = true;
    crash_point(crash_site::init_published);
    forget_name();
    return true;
  }

  // Renames the complete pool over the placeholder at `final`, whose lock
  // the caller holds (so no other opener replaces it meanwhile).
  void publish_over(const std::filesystem::path& final, const std::string& where) {
    if (name_.empty()) {
      for (unsigned attempt = 0; name_.empty(); ++attempt) {
        std::string name = temporary_name(final, attempt);
        if (link_unnamed(fd_.get(), name) == 0) name_ = std::move(name);
        else if (errno != EEXIST || attempt >= 100) fail_errno(errno, where, "naming the new pool (linkat)");
      }
      crash_point(crash_site::init_temp_named);
    }
    if (platform::sys::rename(name_.c_str(), final.c_str()) != 0)
      fail_errno(errno, where, "publishing the new pool over the placeholder (rename)");
    name_.clear();  // rename moved the name: nothing left to remove
    published_ = true;
    crash_point(crash_site::init_published);
  }

  std::unique_ptr<pool_core> into_core(const std::filesystem::path& final) {
    return std::make_unique<pool_core>(std::exchange(base_, nullptr), layout_, -1, final);  // outlives the fd
  }

 private:
  // After link(2), the temporary name (if any) is a second name of the pool.
  // Should removing it fail, the complete pool keeps that hidden second name:
  // the pool is published, so the open still succeeds.
  void forget_name() noexcept {
    if (!name_.empty()) platform::sys::unlink(name_.c_str());
    name_.clear();
  }

  std::string name_;  // before fd_: the fd's constructor sets it
  listed_fd fd_;
  void* base_ = nullptr;
  pool_layout layout_{};
  bool published_ = false;
};

// What an opener found at the final name.
enum class found { pool, placeholder };

// An empty file, or an earlier version's interrupted initialisation (the
// init marker, then zeros): nobody can have attached it, so it may be
// replaced.  Anything else is a pool, to validate; never written.
found classify(int fd, std::uint64_t size, const std::string& where) {
  if (size == 0) return found::placeholder;
  if (size < sizeof(std::uint64_t)) return found::pool;  // too short: validation says so
  pool_header h{};
  const std::size_t want = size < sizeof h ? static_cast<std::size_t>(size) : sizeof h;
  errno = 0;
  if (pread_whole(fd, &h, want, 0) != static_cast<ssize_t>(want))
    fail_errno(errno ? errno : EIO, where, "reading the header");
#if defined(SHMPOOL_MUTANT_REINIT_ON_INIT_MARKER)
  // Mutant: the init marker alone makes a file replaceable (one corrupted word costs a live pool).
  if (h.magic == pool_init_magic) return found::placeholder;
#endif
  return interrupted_initialisation(h) ? found::placeholder : found::pool;
}

struct stat fstat_or_throw(int fd, const std::string& where) {
  struct stat st {};
  if (platform::sys::fstat(fd, &st) != 0) fail_errno(errno, where, "fstat");
  return st;
}

// Does `path` still name the file `fd` is open on?
bool still_named(int fd, const std::filesystem::path& path, const std::string& where) {
  const struct stat held = fstat_or_throw(fd, where);
  struct stat named {};
  if (platform::sys::fstatat(AT_FDCWD, path.c_str(), &named, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return false;
    fail_errno(errno, where, "stat");
  }
  return named.st_dev == held.st_dev && named.st_ino == held.st_ino;
}

std::unique_ptr<pool_core> attach_existing(int fd, const std::filesystem::path& path, pool_variant v,
                                           const pool_layout& wanted, const std::string& where) {
  const auto size = static_cast<std::uint64_t>(fstat_or_throw(fd, where).st_size);
  const pool_layout layout = validated_layout(fd, size, v, where);
  check_parameters_match(layout, wanted, where);
  return std::make_unique<pool_core>(map_or_throw(fd, layout.total_size, where), layout, -1, path);
}

// No file at the path: build one and link it there.  Null if another opener
// published first (the caller opens theirs).
std::unique_ptr<pool_core> create_at(const std::filesystem::path& path, const pool_layout& wanted,
                                     const std::string& where) {
  temp_pool t(path, where);
#if defined(SHMPOOL_MUTANT_INIT_PUBLISHED_EARLY)
  // Mutant: the file is named before it is built (in-place initialisation):
  // a creator killed mid-way leaves an incomplete pool at the final name.
  if (!t.publish_new(path, where)) return nullptr;
  t.build(wanted, std::nullopt, where);
  return t.into_core(path);
#endif
  try {
    t.build(wanted, std::nullopt, where);
  } catch (const error&) {
    // Openers racing to create each reserve a whole pool: the winner's may
    // have taken the space ours needed.  If a file appeared meanwhile, open
    // it rather than fail.
    struct stat st {};
    if (platform::sys::fstatat(AT_FDCWD, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return nullptr;
    throw;
  }
  if (!t.publish_new(path, where)) return nullptr;
  return t.into_core(path);
}

// A placeholder at the path: under its lock, build a pool and rename it over
// the placeholder.  Null if the path changed meanwhile (the caller looks
// again): an opener that waited here finds the creator's pool, or, if the
// creator failed or died, the same placeholder to replace itself.
std::unique_ptr<pool_core> replace_placeholder(const listed_fd& fd, const std::filesystem::path& path,
                                               const pool_layout& wanted, const std::string& where) {
  while (platform::sys::flock(fd.get(), LOCK_EX) != 0)
    if (errno != EINTR) fail_errno(errno, where, "flock");
  if (!still_named(fd.get(), path, where)) return nullptr;
  const struct stat st = fstat_or_throw(fd.get(), where);
  if (classify(fd.get(), static_cast<std::uint64_t>(st.st_size), where) != found::placeholder) return nullptr;
  crash_point(crash_site::init_placeholder_locked);
  temp_pool t(path, where);
#if defined(SHMPOOL_MUTANT_UNLINK_AFTER_FAILED_CREATE)
  // Mutant: a failed creator removes the path, which other openers may hold.
  try {
    t.build(wanted, st.st_mode & 07777, where);
  } catch (...) {
    platform::sys::unlink(path.c_str());
    throw;
  }
#else
  t.build(wanted, st.st_mode & 07777, where);
#endif
  t.publish_over(path, where);
  return t.into_core(path);  // the lock goes with the placeholder's fd
}

void clear_nonblocking(int fd, const std::string& where) {
  const int flags = platform::sys::fcntl(fd, F_GETFL);
  if (flags < 0 || platform::sys::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) fail_errno(errno, where, "fcntl");
}

}  // namespace

std::unique_ptr<pool_core> pool_base::open_core(const std::filesystem::path& path, pool_variant v,
                                                std::uint64_t capacity, std::uint64_t elem_size,
                                                std::uint64_t max_len) {
  const std::string where = path.string();
  const pool_layout wanted = layout_or_throw(v, capacity, elem_size, max_len, where);
  int last_error = 0;
  for (int attempt = 0; attempt < max_open_attempts; ++attempt) {
    // O_NOFOLLOW: a planted symlink is refused.  O_NONBLOCK: a FIFO or device
    // planted at the path never blocks the open (refused below).
    const listed_fd fd([&] {
      return open_retrying(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    });
    if (fd.get() < 0) {
      const int err = errno;
      if (err != ENOENT) fail_errno(err, where, err == ELOOP ? "open (refusing to follow a symbolic link)" : "open");
      if (auto core = create_at(path, wanted, where)) return core;
      last_error = errno;
      continue;  // another opener published first: open theirs
    }
    const struct stat st = fstat_or_throw(fd.get(), where);
    if (!S_ISREG(st.st_mode)) fail(errc::bad_argument, where, "not a regular file");
    clear_nonblocking(fd.get(), where);
    if (classify(fd.get(), static_cast<std::uint64_t>(st.st_size), where) == found::pool)
      return attach_existing(fd.get(), path, v, wanted, where);
    if (auto core = replace_placeholder(fd, path, wanted, where)) return core;
    last_error = errno;
  }
  fail_errno(EAGAIN, where,
             "the file at the path kept changing during " + std::to_string(max_open_attempts) +
                 " attempts to open or create the pool (the last attempt ended with: " +
                 std::system_category().message(last_error) + ")");
}

namespace {
constexpr std::size_t max_memfd_name = 249;  // NAME_MAX less the kernel's "memfd:" prefix

int memfd_or_throw(const std::string& name, unsigned flags, const std::string& where) {
  if (name.size() > max_memfd_name)
    fail(errc::bad_argument, where,
         "memfd name is " + std::to_string(name.size()) + " bytes; the limit is " + std::to_string(max_memfd_name));
  if (const auto nul = name.find('\0'); nul != std::string::npos)
    fail(errc::bad_argument, where, "memfd name contains a NUL byte at offset " + std::to_string(nul));
  const int fd = platform::sys::memfd_create(name.c_str(), flags);
  if (fd < 0) fail_errno(errno, where, "memfd_create");
  return fd;
}
}  // namespace

std::unique_ptr<pool_core> pool_base::memfd_core(std::string_view name, pool_variant v, std::uint64_t capacity,
                                                 std::uint64_t elem_size, std::uint64_t max_len) {
  const std::string where = "memfd '" + printable(name) + "'";
  const pool_layout l = layout_or_throw(v, capacity, elem_size, max_len, where);
  fd_holder fd(memfd_or_throw(std::string(name), MFD_CLOEXEC | MFD_ALLOW_SEALING, where));
  check_backing(fd.get(), l.total_size, /*in_memory=*/true, where);
  reserve_or_throw(fd.get(), l.total_size, where);
  void* base = map_or_throw(fd.get(), l.total_size, where);
  initialise(base, l);
  // Sealed against shrink and grow: no holder of the fd can SIGBUS another.
  if (platform::sys::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    const int err = errno;
    platform::sys::munmap(base, l.total_size);
    fail_errno(err, where, "sealing");
  }
  return std::make_unique<pool_core>(base, l, fd.release(), std::nullopt);
}

std::unique_ptr<pool_core> pool_base::anonymous_core(pool_variant v, std::uint64_t capacity,
                                                     std::uint64_t elem_size, std::uint64_t max_len) {
  // An unnamed memfd rather than MAP_ANONYMOUS, so the space can be reserved
  // up front; the mapping is MAP_SHARED and inherited across fork.
  const std::string where = "anonymous pool";
  const pool_layout l = layout_or_throw(v, capacity, elem_size, max_len, where);
  fd_holder fd(memfd_or_throw("shmpool-anonymous", MFD_CLOEXEC, where));
  check_backing(fd.get(), l.total_size, /*in_memory=*/true, where);
  reserve_or_throw(fd.get(), l.total_size, where);
  void* base = map_or_throw(fd.get(), l.total_size, where);
  initialise(base, l);
  return std::make_unique<pool_core>(base, l, -1, std::nullopt);
}

std::unique_ptr<pool_core> pool_base::fd_core(int fd_in, pool_variant v) {
  const std::string where = "fd " + std::to_string(fd_in);
  const int dup = platform::sys::fcntl(fd_in, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) fail_errno(errno, where, "dup");
  fd_holder fd(dup);
  const struct stat st = fstat_or_throw(fd.get(), where);
  if (!S_ISREG(st.st_mode)) fail(errc::bad_argument, where, "not a regular file or memfd");
  const pool_layout l = validated_layout(fd.get(), static_cast<std::uint64_t>(st.st_size), v, where);
  void* base = map_or_throw(fd.get(), l.total_size, where);
  return std::make_unique<pool_core>(base, l, fd.release(), std::nullopt);
}

// ---- pool_base -------------------------------------------------------------------

pool_base::pool_base(std::unique_ptr<pool_core> core) noexcept : core_(std::move(core)) {
  hot_.data = core_->base_ + core_->layout_.data_offset;
  hot_.elem_size = core_->layout_.elem_size;
  hot_.view = pool_core::view_of(core_->base_, core_->layout_);
  hot_.inline_fast_path = inline_fast_path_allowed;
  variant_ = static_cast<pool_variant>(core_->layout_.variant);
}

[[noreturn]] void throw_nan_timeout() {
  throw std::invalid_argument("shmpool: timeout is NaN (use a finite duration, or +infinity to wait forever)");
}

namespace {
[[noreturn, gnu::noinline, gnu::cold]] void throw_moved_from() {
  throw error(make_error_code(errc::invalid_handle), "shmpool: use of a moved-from pool handle");
}
}  // namespace

[[gnu::always_inline]] inline pool_core& pool_base::live() const {
  if (core_ == nullptr) [[unlikely]]
    throw_moved_from();
  return *core_;
}

// A moved-from handle has capacity 0 in hot_, so every data access lands here.
void pool_base::throw_out_of_range(slot_index i) const { live().check_index(i); std::abort(); }
void pool_base::throw_not_allocated(slot_index i) const {
  throw std::logic_error("shmpool: slot " + std::to_string(i) + " is not allocated");
}
pool_base::pool_base(pool_base&& other) noexcept
    : core_(std::move(other.core_)),
      hot_(std::exchange(other.hot_, hot_view{})),
      hint_slot_(other.hint_slot_.load(std::memory_order_relaxed)),
      hint_owner_(other.hint_owner_.load(std::memory_order_relaxed)),
      variant_(other.variant_) {}
pool_base& pool_base::operator=(pool_base&& other) noexcept {
  if (this != &other) {
    // Guards of the old pool share its core, so they stay valid (and free
    // into the old mapping) after this.
    core_ = std::move(other.core_);
    hot_ = std::exchange(other.hot_, hot_view{});
    hint_slot_.store(other.hint_slot_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    hint_owner_.store(other.hint_owner_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    variant_ = other.variant_;
  }
  return *this;
}

// The handle's hint for this process: recomputed when the handle is used
// under another identity (a fork child), so children spread out too.
std::uint64_t pool_base::hint_for(std::uint64_t me, std::uint64_t capacity) {
  if (hint_owner_.load(std::memory_order_relaxed) != me) {
    hint_slot_.store(start_slot_for(me, capacity), std::memory_order_relaxed);
    hint_owner_.store(me, std::memory_order_relaxed);
  }
  return hint_slot_.load(std::memory_order_relaxed);
}
pool_base::~pool_base() = default;

slot_index pool_base::alloc_index_for_ns(std::int64_t timeout_ns) {
  static_assert(protocol::no_slot == no_slot);
  pool_core& c = live();
  const std::uint64_t me = platform::proc_liveness::self();  // throws identity_unavailable first
  // The inline path (pool.hpp) already tried this handle's hint when it was
  // chosen for `me`: go straight to the scan rather than repeat that CAS.
  const bool hint_tried = hot_.inline_fast_path && hint_owner_.load(std::memory_order_relaxed) == me;
  const std::uint64_t start = hint_for(me, c.layout_.capacity);
  const std::uint64_t got = hint_tried ? c.proto_.alloc_scan(timeout_ns, start) : c.proto_.alloc_index(timeout_ns, start, me);
  if (got != start && got != no_slot) [[unlikely]]
    hint_slot_.store(got, std::memory_order_relaxed);  // the slot to try first next time
  return got;
}

bool pool_base::free_out_of_line(slot_index i) {
  pool_core& c = live();
  c.check_index(i);
  return c.proto_.free(i);
}

void pool_base::wake_sleepers() const { protocol::wake(live().proto_.view()); }

bool pool_base::free_if_mine(slot_index i) {
  pool_core& c = live();
  c.check_index(i);
  return c.proto_.free_if_held(i, platform::proc_liveness::self(), /*generation: any*/ 0);
}

std::optional<std::vector<slot_index>> pool_base::alloc_n_for_ns(std::size_t n, std::int64_t timeout_ns) {
  pool_core& c = live();
  if (n == 0) return std::vector<slot_index>{};
  if (n > c.layout_.capacity)
    throw std::invalid_argument("shmpool: alloc_n(" + std::to_string(n) + ") exceeds the capacity " +
                                std::to_string(c.layout_.capacity) + " and could never succeed");
  return c.proto_.alloc_n(n, timeout_ns, hint_for(platform::proc_liveness::self(), c.layout_.capacity));
}

std::size_t pool_base::free_n(std::span<const slot_index> slots) {
  pool_core& c = live();
  for (const slot_index i : slots) c.check_index(i);  // all or nothing on bad input
  return c.proto_.free_n(slots);
}

// The guard records who allocated and which allocation: the generation its
// own claim counted (slot_protocol C2), returned by the claim itself.  Read
// from the slot after the claim, it could be a later allocation's (a plain
// free and a re-claim by this process in between), and the guard would
// free that one.
std::optional<slot_guard> pool_base::guard_for_ns(std::int64_t timeout_ns) {
  pool_core& c = live();
  const std::uint64_t me = platform::proc_liveness::self();  // throws identity_unavailable first
  const std::uint64_t start = hint_for(me, c.layout_.capacity);
  std::uint64_t generation = 0;
#if defined(SHMPOOL_MUTANT_GUARD_GENERATION_AFTER_ALLOC)
  // Defect: the generation is read from the slot after the claim returns.
  const std::uint64_t got = c.proto_.alloc_index(timeout_ns, start, me);
  if (got != no_slot) {
    for (int k = 0; k < 64; ++k) platform::linux_platform::cpu_relax();  // widens the window, as a preemption does
    generation = c.proto_.generation(got);
  }
#else
  const std::uint64_t got = c.proto_.alloc_index(timeout_ns, start, me, &generation);
#endif
  if (got == no_slot) return std::nullopt;
  if (got != start) hint_slot_.store(got, std::memory_order_relaxed);
  return slot_guard(core_, got, me, generation);
}

std::span<std::byte> pool_base::slot(slot_index i) const {
  pool_core& c = live();
  c.check_index(i);
  return {c.data(i), c.layout_.elem_size};
}
void* pool_base::data_ptr() const noexcept { return core_ ? core_->base_ + core_->layout_.data_offset : nullptr; }

std::uint64_t pool_base::max_len_of() const noexcept { return core_ ? core_->layout_.max_len : 0; }

bool pool_base::is_allocated(slot_index i) const {
  pool_core& c = live();
  c.check_index(i);
  return c.proto_.is_allocated(i);
}
std::uint64_t pool_base::capacity() const noexcept { return core_ ? core_->layout_.capacity : 0; }
std::uint64_t pool_base::elem_size() const noexcept { return core_ ? core_->layout_.elem_size : 0; }
std::uint64_t pool_base::used() const { return live().proto_.used(); }
pool_variant pool_base::variant() const noexcept { return variant_; }

pid_t pool_base::owner(slot_index i) const {
  pool_core& c = live();
  c.check_index(i);
  const std::uint64_t w = c.proto_.word(i);
  return w == 0 ? 0 : platform::identity_pid(identity_of(w));
}

std::vector<slot_index> pool_base::allocated_slots() const {
  pool_core& c = live();
  std::vector<slot_index> out;
  for (slot_index i = 0; i < c.layout_.capacity; ++i)
    if (c.proto_.is_allocated(i)) out.push_back(i);
  return out;
}

// Counters: pool_stats says what each means; monotonic_counters() why
// allocs and frees never step back (slot_protocol.hpp, I6).
pool_stats pool_base::stats() const {
  pool_core& core = live();
  auto& c = core.control();
  pool_stats s;
  s.capacity = core.layout_.capacity;
  s.elem_size = core.layout_.elem_size;
  s.used = core.proto_.used();
  s.available = s.capacity - s.used;
  s.waiters = core.proto_.waiters();
  s.mmap_size = core.layout_.total_size;
  const auto counted = core.proto_.monotonic_counters();
  s.allocs = counted.allocs;
  s.frees = counted.frees;
  s.waits = c.waits.load(std::memory_order_relaxed);
  s.timeouts = c.timeouts.load(std::memory_order_relaxed);
  s.recoveries = c.recoveries.load(std::memory_order_relaxed);
  return s;
}

std::size_t pool_base::recover_stale() { return live().proto_.recover_stale(); }
std::size_t pool_base::release_owner(pid_t pid) {
  if (pid <= 0) throw std::invalid_argument("shmpool: release_owner(" + std::to_string(pid) + "): not a pid");
  return live().proto_.release_owner(pid);
}
void pool_base::reset() { live().proto_.reset(); }

std::vector<std::string> pool_base::check() const {
  pool_core& c = live();
  std::vector<std::string> problems;
  pool_header now{};
  std::memcpy(&now, c.base_, sizeof now);
  const header_verdict verdict = validate_header(now, c.layout_.total_size);
  if (!verdict.layout) {
    problems.emplace_back(std::string("header: ") + verdict.what);
  } else {
    const pool_layout& l = *verdict.layout;
    const pool_layout& k = c.layout_;
    if (l.variant != k.variant || l.capacity != k.capacity || l.elem_size != k.elem_size || l.max_len != k.max_len)
      problems.emplace_back("header: changed since this handle opened it");
  }
  for (auto& p : c.proto_.check()) problems.push_back(std::move(p));
  return problems;
}

const std::optional<std::filesystem::path>& pool_base::path() const noexcept {
  static const std::optional<std::filesystem::path> none;
  return core_ ? core_->path_ : none;
}
int pool_base::memfd() const noexcept { return core_ ? core_->fd_ : -1; }

void pool_base::sync() const {
  pool_core& c = live();
  if (platform::sys::msync(c.base_, c.layout_.total_size, MS_SYNC) != 0)
    fail_errno(errno, c.path_ ? c.path_->string() : "pool", "msync");
}

bool pool_base::unlink() const {
  pool_core& c = live();
  return c.path_ && platform::sys::unlink(c.path_->c_str()) == 0;
}

// ---- eventfd: a holder swapped under g_eventfd_swap, used with no lock held ----

int pool_base::eventfd() {
  pool_core& c = live();
  std::lock_guard lock(g_eventfd_swap);
  if (c.eventfd_holder_) return c.eventfd_.load();  // the number fileno() reports (a caller's, not our dup)
  const int fd = platform::sys::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);  // never blocks
  if (fd < 0) fail_errno(errno, "pool", "eventfd");
  c.eventfd_holder_ = std::make_shared<const eventfd_holder>(fd, true);
  c.eventfd_.store(fd);
  return fd;
}

void pool_base::eventfd_set(int fd) {
  pool_core& c = live();
  if (fd < -1) throw std::invalid_argument("shmpool: eventfd_set(" + std::to_string(fd) + "): not an fd (-1 detaches)");
  if (fd >= 0 && platform::sys::fcntl(fd, F_GETFD) < 0)
    throw std::invalid_argument("shmpool: eventfd_set(" + std::to_string(fd) + "): not an open fd");
  std::shared_ptr<const eventfd_holder> next;
  if (fd >= 0 && fd != c.eventfd_.load()) {
    const int mine = platform::sys::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (mine < 0) fail_errno(errno, "pool", "fcntl(F_DUPFD_CLOEXEC) of the caller's eventfd");
    next = std::make_shared<const eventfd_holder>(mine, true);
  }
#if defined(SHMPOOL_MUTANT_READER_PREFERRING_LOCK)
  std::unique_lock users(c.mutant_users_);
#endif
  std::shared_ptr<const eventfd_holder> old;  // released after the lock: its last user closes an owned fd
  {
    std::lock_guard lock(g_eventfd_swap);
    if (fd == c.eventfd_.load()) return;  // e.g. eventfd_set(fileno()): ownership unchanged
    if (fd >= 0 && !next) return;         // it was current a moment ago: a concurrent set won
    old = std::exchange(c.eventfd_holder_, std::move(next));
    c.eventfd_.store(fd);
  }
}

int pool_base::fileno() const noexcept { return core_ ? core_->eventfd_.load() : -1; }

bool pool_base::notify() const {
#if defined(SHMPOOL_MUTANT_READER_PREFERRING_LOCK)
  std::shared_lock users(live().mutant_users_);
#endif
  const auto h = live().eventfd_in_use();
  if (!h) return false;
  const std::uint64_t one = 1;
  return platform::sys::write(h->fd, &one, sizeof one) == sizeof one;
}

std::uint64_t pool_base::eventfd_consume() const {
#if defined(SHMPOOL_MUTANT_READER_PREFERRING_LOCK)
  std::shared_lock users(live().mutant_users_);
#endif
  const auto h = live().eventfd_in_use();
  std::uint64_t count = 0;
  if (!h || platform::sys::read(h->fd, &count, sizeof count) != sizeof count) return 0;
  return count;
}

}  // namespace detail

// ---- slot_guard -----------------------------------------------------------------

// Frees only the allocation the guard was given (slot_protocol free_if_held):
// nothing in a fork child, nothing if the slot changed hands meanwhile.
// A process that cannot tell its own identity (a fork child at its fd
// limit: the guard's owner computed one to allocate, so this is not it)
// frees nothing: the slot stays held, the conservative answer.
void slot_guard::free_now() noexcept {
  if (core_ == nullptr) return;
  try {
#if defined(SHMPOOL_MUTANT_GUARD_PLAIN_FREE)
    core_->proto_.free(index_);  // Mutant: whoever holds the index now loses it
#else
    core_->proto_.free_if_held(index_, owner_, generation_);
#endif
  } catch (const error&) {  // NOLINT(bugprone-empty-catch): identity_unavailable, see above
  }
  core_.reset();
}

slot_guard& slot_guard::operator=(slot_guard&& other) noexcept {
  if (this != &other) {
    free_now();
    core_ = std::move(other.core_);
    index_ = other.index_;
    owner_ = other.owner_;
    generation_ = other.generation_;
  }
  return *this;
}
slot_guard::~slot_guard() { free_now(); }

// ---- variants ---------------------------------------------------------------------

#define SHMPOOL_FACTORIES(T, V, PARAMS, ARGS_OPEN, ARGS)                                                         \
  T T::open(const std::filesystem::path& path, std::uint64_t capacity PARAMS) {                                  \
    return T(open_core(path, V, capacity, ARGS_OPEN));                                                           \
  }                                                                                                              \
  T T::anonymous(std::uint64_t capacity PARAMS) { return T(anonymous_core(V, capacity, ARGS)); }                 \
  T T::memfd(std::string_view name, std::uint64_t capacity PARAMS) { return T(memfd_core(name, V, capacity, ARGS)); } \
  T T::from_fd(int fd) { return T(fd_core(fd, V)); }

#define SHMPOOL_COMMA ,
SHMPOOL_FACTORIES(pool, pool_variant::raw, SHMPOOL_COMMA std::uint64_t elem_size, elem_size SHMPOOL_COMMA 0,
                  elem_size SHMPOOL_COMMA 0)
SHMPOOL_FACTORIES(i64_pool, pool_variant::i64, , 8 SHMPOOL_COMMA 0, 8 SHMPOOL_COMMA 0)
SHMPOOL_FACTORIES(i32_pool, pool_variant::i32, , 4 SHMPOOL_COMMA 0, 4 SHMPOOL_COMMA 0)
SHMPOOL_FACTORIES(f64_pool, pool_variant::f64, , 8 SHMPOOL_COMMA 0, 8 SHMPOOL_COMMA 0)
SHMPOOL_FACTORIES(str_pool, pool_variant::str, SHMPOOL_COMMA std::uint64_t max_len,
                  detail::str_elem_size(max_len) SHMPOOL_COMMA max_len, detail::str_elem_size(max_len) SHMPOOL_COMMA max_len)
#undef SHMPOOL_FACTORIES
#undef SHMPOOL_COMMA

std::span<const std::byte> pool::get(slot_index i) const { return {data_of_allocated(i), elem_size()}; }

// memmove: the source may be a view of this very slot; n == 0 touches no
// source pointer (an empty span's data() may be null).
void pool::set(slot_index i, std::span<const std::byte> bytes) {
  std::byte* p = data_of_allocated(i);
  const std::size_t n = bytes.size() < elem_size() ? bytes.size() : elem_size();
  if (n != 0) std::memmove(p, bytes.data(), n);
  std::memset(p + n, 0, elem_size() - n);
}

double f64_pool::get(slot_index i) const {
  return std::atomic_ref<double>(*reinterpret_cast<double*>(data_of_allocated(i))).load(std::memory_order_acquire);
}
void f64_pool::set(slot_index i, double v) {
  std::atomic_ref<double>(*reinterpret_cast<double*>(data_of_allocated(i))).store(v, std::memory_order_release);
}

// A str slot: a 4-byte length, then max_len bytes.  The length read back is
// clamped, so a corrupted length can never read past the slot.
std::string str_pool::get(slot_index i) const {
  const std::byte* p = data_of_allocated(i);
  const std::uint32_t len = std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(const_cast<std::byte*>(p)))
                                .load(std::memory_order_acquire);
  const std::size_t n = len < max_len() ? len : max_len();
  return std::string(reinterpret_cast<const char*>(p + 4), n);
}

void str_pool::set(slot_index i, std::string_view s) {
  std::byte* p = data_of_allocated(i);
  const std::size_t n = s.size() < max_len() ? s.size() : max_len();
  if (n != 0) std::memmove(p + 4, s.data(), n);  // s may overlap the slot; may be null when empty
  std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(p)).store(static_cast<std::uint32_t>(n),
                                                                           std::memory_order_release);
}

}  // namespace shmpool
