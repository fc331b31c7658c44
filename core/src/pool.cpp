// The pool handle: creating, opening and attaching mappings, and the
// variants' data access.  The claim/release protocol is slot_protocol.hpp.
#include "shmpool/pool.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <shared_mutex>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <utility>

#include "shmpool/detail/format.hpp"
#include "shmpool/platform/sys.hpp"

namespace shmpool {
namespace detail {
namespace {

using protocol = slot_protocol<shm_platform>;

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
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

pool_layout layout_or_throw(pool_variant v, std::uint64_t capacity, std::uint64_t elem_size, std::uint64_t max_len,
                            const std::string& where) {
  const auto code = static_cast<variant_code>(v);
  if (auto l = compute_layout(code, capacity, elem_size, max_len)) return *l;
  std::ostringstream why;
  why << "invalid parameters for a " << variant_name(code) << " pool (capacity " << capacity << ", elem_size "
      << elem_size;
  if (v == pool_variant::str) why << ", max_len " << max_len;
  why << "; capacity must be 1.." << max_capacity << ", elem_size 1.." << max_elem_size << ")";
  fail(errc::bad_argument, where, why.str());
}

void* map_or_throw(int fd, std::uint64_t size, const std::string& where) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) fail_errno(errno, where, "mmap");
  return p;
}

// Reserves the space now, so that a full /dev/shm or disk fails here and not
// as a SIGBUS at first touch.
void reserve_or_throw(int fd, std::uint64_t size, const std::string& where) {
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) fail_errno(errno, where, "ftruncate");
  int rc;
  do {
    rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
  } while (rc == EINTR);
  if (rc != 0) fail_errno(rc, where, "reserving " + std::to_string(size) + " bytes");
}

// Writes a fresh header into a zero-filled mapping; the magic goes last.
void initialise(void* base, const pool_layout& l) {
  pool_header h{};
  h.magic = pool_init_magic;
  h.format = format_word();
  h.variant = static_cast<std::uint32_t>(l.variant);
  h.capacity = l.capacity;
  h.elem_size = l.elem_size;
  h.max_len = l.max_len;
  h.bitmap_offset = l.bitmap_offset;
  h.meta_offset = l.meta_offset;
  h.data_offset = l.data_offset;
  h.total_size = l.total_size;
  h.checksum = header_checksum(h);
  std::memcpy(base, &h, sizeof h);
  // Readers who see the magic see the rest (they also hold the init flock).
  reinterpret_cast<std::atomic<std::uint64_t>*>(base)->store(pool_magic, std::memory_order_release);
}

pool_header read_header(int fd, std::uint64_t file_size, const std::string& where) {
  pool_header h{};
  if (file_size < sizeof h) fail(errc::truncated, where, "truncated: " + std::to_string(file_size) + " bytes, smaller than a pool header");
  if (::pread(fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) fail_errno(errno ? errno : EIO, where, "reading the header");
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
    if (eventfd_owned_ && eventfd_ >= 0) platform::sys::close(eventfd_);
  }

  static pool_view<shm_platform> view_of(std::byte* base, const pool_layout& l) noexcept {
    pool_view<shm_platform> v;
    v.bitmap = reinterpret_cast<bitmap_word<shm_platform>*>(base + l.bitmap_offset);
    v.meta = reinterpret_cast<slot_meta<shm_platform>*>(base + l.meta_offset);
    v.control = reinterpret_cast<pool_control<shm_platform>*>(base + control_offset);
    v.capacity = l.capacity;
    return v;
  }

  void check_index(slot_index i) const {
    if (i >= layout_.capacity)
      throw std::out_of_range("shmpool: slot index " + std::to_string(i) + " out of range (capacity " +
                              std::to_string(layout_.capacity) + ")");
  }
  std::byte* data(slot_index i) const noexcept { return base_ + layout_.data_offset + i * layout_.elem_size; }
  pool_control<shm_platform>& control() const noexcept {
    return *reinterpret_cast<pool_control<shm_platform>*>(base_ + control_offset);
  }
  // The slot hint of this process: recomputed when the handle is used under
  // another identity (a fork child), so children spread out too.
  std::uint64_t start_slot() noexcept {
    const std::uint64_t me = platform::proc_liveness::self();
    if (start_owner_.load(std::memory_order_relaxed) != me) {
      start_slot_.store(start_slot_for(me, layout_.capacity), std::memory_order_relaxed);
      start_owner_.store(me, std::memory_order_relaxed);
    }
    return start_slot_.load(std::memory_order_relaxed);
  }
  void remember_slot(slot_index i) noexcept {
    if (start_slot_.load(std::memory_order_relaxed) != i) start_slot_.store(i, std::memory_order_relaxed);
  }

  std::byte* base_;
  pool_layout layout_;
  protocol proto_;
  int fd_;  // memfd or from_fd's dup; -1 otherwise
  std::optional<std::filesystem::path> path_;
  std::atomic<std::uint64_t> start_slot_{0};
  std::atomic<std::uint64_t> start_owner_{0};
  // The eventfd state, one unit: written only under the exclusive lock;
  // notify/consume hold the shared lock while they use the fd, so an fd is
  // never closed under them.  eventfd_ is atomic only for fileno().
  mutable std::shared_mutex eventfd_lock_;
  std::atomic<int> eventfd_{-1};
  bool eventfd_owned_ = false;  // guarded by eventfd_lock_
};

// ---- factories ---------------------------------------------------------------

std::unique_ptr<pool_core> pool_base::open_core(const std::filesystem::path& path, pool_variant v,
                                                std::uint64_t capacity, std::uint64_t elem_size,
                                                std::uint64_t max_len) {
  const std::string where = path.string();
  const pool_layout wanted = layout_or_throw(v, capacity, elem_size, max_len, where);

  // O_NOFOLLOW: a planted symlink is refused.  Mode 0666 is narrowed by umask.
  bool created = true;
  int raw = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (raw < 0 && errno == EEXIST) {
    created = false;
    raw = ::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  }
  if (raw < 0) {
    const int err = errno;
    fail_errno(err, where, err == ELOOP ? "open (refusing to follow a symbolic link)" : "open");
  }
  fd_holder fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail_errno(errno, where, "fstat");
  if (!S_ISREG(st.st_mode)) fail(errc::bad_argument, where, "not a regular file");

  // The init lock: whoever holds it initialises an empty file or one whose
  // creator died mid-way (its lock died with it), so exactly one does.
  while (::flock(fd.get(), LOCK_EX) != 0)
    if (errno != EINTR) fail_errno(errno, where, "flock");
  if (::fstat(fd.get(), &st) != 0) fail_errno(errno, where, "fstat");
  auto file_size = static_cast<std::uint64_t>(st.st_size);

  std::uint64_t first_word = 0;
  if (file_size >= sizeof first_word && ::pread(fd.get(), &first_word, sizeof first_word, 0) != sizeof first_word)
    fail_errno(errno ? errno : EIO, where, "reading the header");
  const bool needs_init = file_size == 0 || first_word == pool_init_magic;

  void* base = nullptr;
  pool_layout layout = wanted;
  if (needs_init) {
    try {
      // Mark the file as ours-in-progress before giving it its size.
      if (::ftruncate(fd.get(), 0) != 0) fail_errno(errno, where, "ftruncate");
      if (::pwrite(fd.get(), &pool_init_magic, sizeof pool_init_magic, 0) != sizeof pool_init_magic)
        fail_errno(errno ? errno : EIO, where, "writing the header");
      reserve_or_throw(fd.get(), wanted.total_size, where);
      base = map_or_throw(fd.get(), wanted.total_size, where);
      std::memset(base, 0, sizeof(pool_header));
      initialise(base, wanted);
    } catch (...) {
      if (base != nullptr) ::munmap(base, wanted.total_size);
      if (created) ::unlink(path.c_str());
      else if (::ftruncate(fd.get(), 0) != 0) { /* best effort: leave it for the next opener */ }
      throw;
    }
  } else {
    layout = validated_layout(fd.get(), file_size, v, where);
    if (layout.capacity != capacity || layout.elem_size != elem_size || layout.max_len != max_len) {
      std::ostringstream why;
      why << "existing pool has capacity " << layout.capacity << " and elem_size " << layout.elem_size
          << ", asked for " << capacity << " and " << elem_size;
      fail(errc::parameter_mismatch, where, why.str());
    }
    base = map_or_throw(fd.get(), layout.total_size, where);
  }
  ::flock(fd.get(), LOCK_UN);
  return std::make_unique<pool_core>(base, layout, -1, path);
}

namespace {
int memfd_or_throw(const std::string& name, unsigned flags, const std::string& where) {
  if (name.size() > 249) fail(errc::bad_argument, where, "memfd name longer than 249 bytes");
  if (name.find('\0') != std::string::npos) fail(errc::bad_argument, where, "memfd name contains a NUL byte");
  const int fd = ::memfd_create(name.c_str(), flags);
  if (fd < 0) fail_errno(errno, where, "memfd_create");
  return fd;
}
}  // namespace

std::unique_ptr<pool_core> pool_base::memfd_core(std::string_view name, pool_variant v, std::uint64_t capacity,
                                                 std::uint64_t elem_size, std::uint64_t max_len) {
  const std::string where = "memfd '" + std::string(name) + "'";
  const pool_layout l = layout_or_throw(v, capacity, elem_size, max_len, where);
  fd_holder fd(memfd_or_throw(std::string(name), MFD_CLOEXEC | MFD_ALLOW_SEALING, where));
  reserve_or_throw(fd.get(), l.total_size, where);
  void* base = map_or_throw(fd.get(), l.total_size, where);
  initialise(base, l);
  // Sealed against shrink and grow: no holder of the fd can SIGBUS another.
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    const int err = errno;
    ::munmap(base, l.total_size);
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
  reserve_or_throw(fd.get(), l.total_size, where);
  void* base = map_or_throw(fd.get(), l.total_size, where);
  initialise(base, l);
  return std::make_unique<pool_core>(base, l, -1, std::nullopt);
}

std::unique_ptr<pool_core> pool_base::fd_core(int fd_in, pool_variant v) {
  const std::string where = "fd " + std::to_string(fd_in);
  const int dup = ::fcntl(fd_in, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) fail_errno(errno, where, "dup");
  fd_holder fd(dup);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail_errno(errno, where, "fstat");
  if (!S_ISREG(st.st_mode)) fail(errc::bad_argument, where, "not a regular file or memfd");
  const pool_layout l = validated_layout(fd.get(), static_cast<std::uint64_t>(st.st_size), v, where);
  void* base = map_or_throw(fd.get(), l.total_size, where);
  return std::make_unique<pool_core>(base, l, fd.release(), std::nullopt);
}

// ---- pool_base -------------------------------------------------------------------

static_assert(sizeof(slot_meta<shm_platform>) == 2 * sizeof(std::uint64_t) &&
              make_slot_word(slot_state::allocated, 0) >> 62 == 2,
              "pool_base::data_of_allocated hard-codes the slot meta stride and the ALLOCATED state");

pool_base::pool_base(std::unique_ptr<pool_core> core) noexcept : core_(std::move(core)) {
  hot_.data = core_->base_ + core_->layout_.data_offset;
  hot_.meta = reinterpret_cast<const std::atomic<std::uint64_t>*>(core_->base_ + core_->layout_.meta_offset);
  hot_.capacity = core_->layout_.capacity;
  hot_.elem_size = core_->layout_.elem_size;
  variant_ = static_cast<pool_variant>(core_->layout_.variant);
}

[[noreturn]] void throw_nan_timeout() {
  throw std::invalid_argument("shmpool: timeout is NaN (use a finite duration, or +infinity to wait forever)");
}

pool_core& pool_base::live() const {
  if (core_ == nullptr) [[unlikely]]
    throw error(make_error_code(errc::invalid_handle), "shmpool: use of a moved-from pool handle");
  return *core_;
}

// A moved-from handle has capacity 0 in hot_, so every data access lands here.
void pool_base::throw_out_of_range(slot_index i) const { live().check_index(i); std::abort(); }
void pool_base::throw_not_allocated(slot_index i) const {
  throw std::logic_error("shmpool: slot " + std::to_string(i) + " is not allocated");
}
pool_base::pool_base(pool_base&& other) noexcept
    : core_(std::move(other.core_)), hot_(std::exchange(other.hot_, hot_view{})), variant_(other.variant_) {}
pool_base& pool_base::operator=(pool_base&& other) noexcept {
  if (this != &other) {
    // Guards of the old pool share its core, so they stay valid (and free
    // into the old mapping) after this.
    core_ = std::move(other.core_);
    hot_ = std::exchange(other.hot_, hot_view{});
    variant_ = other.variant_;
  }
  return *this;
}
pool_base::~pool_base() = default;

std::optional<slot_index> pool_base::alloc_for_ns(std::int64_t timeout_ns) {
  pool_core& c = live();
  auto got = c.proto_.alloc(timeout_ns, c.start_slot());
  if (got) c.remember_slot(*got);
  return got;
}

bool pool_base::free(slot_index i) {
  pool_core& c = live();
  c.check_index(i);
  return c.proto_.free(i);
}

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
  return c.proto_.alloc_n(n, timeout_ns, c.start_slot());
}

std::size_t pool_base::free_n(std::span<const slot_index> slots) {
  pool_core& c = live();
  for (const slot_index i : slots) c.check_index(i);  // all or nothing on bad input
  return c.proto_.free_n(slots);
}

// The guard records who allocated and which allocation (the slot's
// generation, stable while we hold it), so it frees that allocation only.
std::optional<slot_guard> pool_base::guard_of(std::optional<slot_index> i) {
  if (!i) return std::nullopt;
  return slot_guard(core_, *i, platform::proc_liveness::self(), core_->proto_.generation(*i));
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

// ---- eventfd: one unit under eventfd_lock_ (pool.hpp says every order) ----

int pool_base::eventfd() {
  pool_core& c = live();
  std::unique_lock lock(c.eventfd_lock_);
  if (const int fd = c.eventfd_.load(); fd >= 0) return fd;
  const int fd = platform::sys::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) fail_errno(errno, "pool", "eventfd");
  c.eventfd_.store(fd);
  c.eventfd_owned_ = true;
  return fd;
}

void pool_base::eventfd_set(int fd) {
  pool_core& c = live();
  if (fd < -1) throw std::invalid_argument("shmpool: eventfd_set(" + std::to_string(fd) + "): not an fd (-1 detaches)");
  if (fd >= 0 && platform::sys::fcntl(fd, F_GETFD) < 0)
    throw std::invalid_argument("shmpool: eventfd_set(" + std::to_string(fd) + "): not an open fd");
  std::unique_lock lock(c.eventfd_lock_);
  const int old = c.eventfd_.load();
  if (fd == old) return;  // e.g. eventfd_set(fileno()): ownership unchanged
  // No notify/consume is inside the fd now (they hold the shared lock).
  if (c.eventfd_owned_ && old >= 0) platform::sys::close(old);
  c.eventfd_.store(fd);
  c.eventfd_owned_ = false;
}

int pool_base::fileno() const noexcept { return core_ ? core_->eventfd_.load() : -1; }

bool pool_base::notify() const {
  pool_core& c = live();
  std::shared_lock lock(c.eventfd_lock_);
  const int fd = c.eventfd_.load();
  if (fd < 0) return false;
  const std::uint64_t one = 1;
  return platform::sys::write(fd, &one, sizeof one) == sizeof one;
}

std::uint64_t pool_base::eventfd_consume() const {
  pool_core& c = live();
  std::shared_lock lock(c.eventfd_lock_);
  const int fd = c.eventfd_.load();
  std::uint64_t count = 0;
  if (fd < 0 || platform::sys::read(fd, &count, sizeof count) != sizeof count) return 0;
  return count;
}

}  // namespace detail

// ---- slot_guard -----------------------------------------------------------------

// Frees only the allocation the guard was given (slot_protocol free_if_held):
// nothing in a fork child, nothing if the slot changed hands meanwhile.
void slot_guard::free_now() noexcept {
  if (core_ == nullptr) return;
  core_->proto_.free_if_held(index_, owner_, generation_);
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
