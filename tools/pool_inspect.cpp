// Read-only inspection of a pool file (pool_inspect.hpp).
#include "pool_inspect.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csetjmp>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

namespace shmpool::tool {
namespace {

using P = detail::shm_platform;

[[noreturn]] void fail(inspect_error::kind_t k, const std::string& where, const std::string& why) {
  throw inspect_error{k, where + ": " + why};
}

// A header that fails with one of these is not ours (or not of this format).
bool is_foreign(int reason) {
  return reason == static_cast<int>(errc::bad_magic) || reason == static_cast<int>(errc::unsupported_format);
}

bool same_time(const timespec& a, const timespec& b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }

// ---- SIGBUS-safe reads of the mapping ---------------------------------------
//
// A load from a page of a MAP_SHARED mapping that lies wholly past the end of
// the file raises SIGBUS.  For the span of one copy, a handler turns such a
// fault, at an address inside the mapping being read, into a siglongjmp back
// to without_sigbus, which returns false.  Any other SIGBUS keeps its default
// action: the handler restores it and lets the access fault again.

sigjmp_buf* volatile bus_jump = nullptr;
const std::byte* volatile bus_lo = nullptr;
const std::byte* volatile bus_hi = nullptr;

void on_sigbus(int sig, siginfo_t* info, void*) {
  const auto* at = static_cast<const std::byte*>(info->si_addr);
  if (bus_jump != nullptr && info->si_code > 0 && at >= bus_lo && at < bus_hi) siglongjmp(*bus_jump, 1);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
  if (info->si_code <= 0) ::raise(sig);  // sent by a process: delivered as we return
}

// Runs job.run() with a SIGBUS from a load in [base, base + len) turned into
// a false return.  siglongjmp leaves job.run()'s frames without unwinding
// them, so the job (and everything it calls) owns nothing with a destructor:
// it only loads from the mapping and stores into memory allocated before.
template <class Job>
bool without_sigbus(const void* base, std::uint64_t len, const Job& job) {
  static_assert(std::is_trivially_destructible_v<Job>);
  struct sigaction sa {}, old {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, &old);
  bus_lo = static_cast<const std::byte*>(base);
  bus_hi = static_cast<const std::byte*>(base) + len;
  sigjmp_buf jump;
  volatile bool completed = false;
  if (sigsetjmp(jump, 1) == 0) {  // 1: the fault's blocked SIGBUS is unblocked on the way back
    bus_jump = &jump;
    job.run();
    completed = true;
  }
  bus_jump = nullptr;
  ::sigaction(SIGBUS, &old, nullptr);
  return completed;
}

std::uint64_t load_word(const std::byte* p) noexcept {
  return __atomic_load_n(reinterpret_cast<const std::uint64_t*>(p), __ATOMIC_ACQUIRE);
}

// Copies the pool's bytes [0, size) word by word, each with one atomic
// 8-byte load, so no word is torn.  In the slot metadata, a slot's allocs is
// loaded before its word, the order counters_seen() relies on (its acquire
// pairs with the claimant's release).  at_read before each page.
struct snapshot_copy {
  const std::byte* from;
  std::byte* to;
  std::uint64_t meta_begin, meta_end, size;
  int fd;

  void words(std::uint64_t begin, std::uint64_t end, std::uint64_t& page) const noexcept {
    for (std::uint64_t off = begin; off < end; off += 8) {
      enter(off, page);
      const std::uint64_t w = load_word(from + off);
      std::memcpy(to + off, &w, 8);
    }
  }
  void enter(std::uint64_t off, std::uint64_t& page) const noexcept {
    if (off / detail::page_bytes != page) {
      page = off / detail::page_bytes;
      at_read(fd);
    }
  }
  void run() const noexcept {
    using meta_t = detail::slot_meta<P>;
    constexpr std::uint64_t stride = sizeof(meta_t), first = offsetof(meta_t, allocs);
    static_assert(stride % 8 == 0 && first % 8 == 0 && detail::page_bytes % stride == 0);
    std::uint64_t page = ~std::uint64_t{0};
    words(0, meta_begin, page);
    for (std::uint64_t slot = meta_begin; slot < meta_end; slot += stride) {
      enter(slot, page);
      for (std::uint64_t k = 0; k < stride; k += 8) {  // allocs first, then the rest in order
        const std::uint64_t off = slot + (k == 0 ? first : k <= first ? k - 8 : k);
        const std::uint64_t w = load_word(from + off);
        std::memcpy(to + off, &w, 8);
      }
    }
    words(meta_end, size, page);
  }
};

// Copies the 4-byte length of each listed str slot.
struct length_copy {
  const std::byte* data;
  std::uint64_t elem_size;
  const std::uint64_t* slots;
  std::uint32_t* lengths;
  std::size_t n;
  int fd;

  void run() const noexcept {
    std::uint64_t page = ~std::uint64_t{0};
    for (std::size_t k = 0; k < n; ++k) {
      const std::byte* at = data + slots[k] * elem_size;
      if (reinterpret_cast<std::uintptr_t>(at) / detail::page_bytes != page) {
        page = reinterpret_cast<std::uintptr_t>(at) / detail::page_bytes;
        at_read(fd);
      }
      std::memcpy(&lengths[k], at, sizeof lengths[k]);
    }
  }
};

}  // namespace

// ---- the test build's seam -------------------------------------------------

#if defined(SHMPOOL_TOOL_TEST_HOOKS)
namespace {

// Applies one step of SHMPOOL_TOOL_TEST_MUTATION to the file open as W:
//   size:N           truncate or extend to N bytes
//   write:OFF:HEX    write the bytes HEX at OFF
//   copy:PATH        make the file a copy of PATH (size and bytes)
bool mutate_step(int w, const char* step) {
  if (std::strncmp(step, "size:", 5) == 0) return ::ftruncate(w, std::strtoll(step + 5, nullptr, 10)) == 0;
  if (std::strncmp(step, "write:", 6) == 0) {
    char* hex = nullptr;
    const long long off = std::strtoll(step + 6, &hex, 10);
    if (*hex++ != ':') return false;
    for (long long i = 0; std::isxdigit(static_cast<unsigned char>(hex[0])) &&
                          std::isxdigit(static_cast<unsigned char>(hex[1]));
         hex += 2, ++i) {
      const char pair[3] = {hex[0], hex[1], 0};
      const auto b = static_cast<unsigned char>(std::strtoul(pair, nullptr, 16));
      if (::pwrite(w, &b, 1, off + i) != 1) return false;
    }
    return true;
  }
  if (std::strncmp(step, "copy:", 5) == 0) {
    char path[4096];
    std::snprintf(path, sizeof path, "%.*s", static_cast<int>(std::strcspn(step + 5, ",")), step + 5);
    const int r = ::open(path, O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (r < 0 || ::fstat(r, &st) != 0 || ::ftruncate(w, st.st_size) != 0) return false;
    char buf[65536];
    off_t off = 0;
    for (ssize_t n; (n = ::pread(r, buf, sizeof buf, off)) > 0; off += n)
      if (::pwrite(w, buf, static_cast<std::size_t>(n), off) != n) return false;
    ::close(r);
    return true;
  }
  return false;
}

}  // namespace

void at_read(int fd) noexcept {
  static unsigned long long reads = 0;
  const char* at = std::getenv("SHMPOOL_TOOL_TEST_MUTATE_AT");
  if (at == nullptr || ++reads != std::strtoull(at, nullptr, 10)) return;
  const char* mutation = std::getenv("SHMPOOL_TOOL_TEST_MUTATION");
  char self[64];
  std::snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  const int w = ::open(self, O_WRONLY | O_CLOEXEC);
  bool ok = w >= 0 && mutation != nullptr;
  for (const char* step = mutation; ok && step != nullptr;) {  // steps separated by commas
    ok = mutate_step(w, step);
    step = std::strchr(step, ',');
    if (step != nullptr) ++step;
  }
  if (w >= 0) ::close(w);
  if (!ok) {
    std::fprintf(stderr, "shmpool test hook: mutation '%s' failed at read %llu\n", mutation ? mutation : "", reads);
    std::_Exit(99);
  }
  if (const char* fired = std::getenv("SHMPOOL_TOOL_TEST_FIRED")) {
    const int m = ::open(fired, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (m >= 0) ::close(m);
  }
}
#else
void at_read(int) noexcept {}
#endif

detail::pool_layout read_layout(int fd, const std::string& where, detail::pool_header* header) {
  struct stat st {};
  at_read(fd);
  if (::fstat(fd, &st) != 0) fail(inspect_error::system, where, std::string("fstat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(inspect_error::not_a_pool, where, "not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  detail::pool_header h{};
  if (size < sizeof h)
    fail(inspect_error::not_a_pool, where,
         "not a shmpool pool (" + std::to_string(size) + " bytes, smaller than a pool header)");
  at_read(fd);
  errno = 0;
  if (::pread(fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) {
    const int e = errno;
    struct stat now {};
    if (e == 0 && ::fstat(fd, &now) == 0 && now.st_size != st.st_size)
      fail(inspect_error::changed, where,
           "changed while being read: the file shrank from " + std::to_string(size) + " to " +
               std::to_string(now.st_size) + " bytes as its header was read");
    fail(inspect_error::system, where, std::string("reading the header: ") + std::strerror(e ? e : EIO));
  }
  const detail::header_verdict v = detail::validate_header(h, size);
  if (!v.layout) {
    if (is_foreign(v.reason)) fail(inspect_error::not_a_pool, where, std::string("not a shmpool pool: ") + v.what);
    fail(inspect_error::damaged, where, std::string("damaged header: ") + v.what);
  }
  if (header != nullptr) *header = h;
  return *v.layout;
}

int open_nonblocking(const std::string& path, int flags) {
  // O_NONBLOCK: opening a FIFO O_RDONLY would otherwise wait for a writer.
  const int fd = ::open(path.c_str(), flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) fail(inspect_error::system, path, std::string("open: ") + std::strerror(errno));
  struct stat st {};
  const int st_rc = ::fstat(fd, &st);
  const int st_errno = errno;
  if (st_rc != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    if (st_rc != 0) fail(inspect_error::system, path, std::string("fstat: ") + std::strerror(st_errno));
    fail(inspect_error::not_a_pool, path, "not a regular file");
  }
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    const int e = errno;
    ::close(fd);
    fail(inspect_error::system, path, std::string("fcntl: ") + std::strerror(e));
  }
  return fd;
}

void pool_file::free_deleter::operator()(void* p) const noexcept { std::free(p); }

pool_file pool_file::open_readonly(const std::string& path) {
  pool_file f;
  f.path_ = path;
  f.fd_ = open_nonblocking(path, O_RDONLY);
  f.layout_ = read_layout(f.fd_, path, &f.header_);
  struct stat st {};
  if (::fstat(f.fd_, &st) != 0) fail(inspect_error::system, path, std::string("fstat: ") + std::strerror(errno));
  f.file_size_ = static_cast<std::uint64_t>(st.st_size);
  at_read(f.fd_);
  void* p = ::mmap(nullptr, f.layout_.total_size, PROT_READ, MAP_SHARED, f.fd_, 0);
  if (p == MAP_FAILED) fail(inspect_error::system, path, std::string("mmap: ") + std::strerror(errno));
  f.base_ = p;
  const std::uint64_t pages = (f.layout_.data_offset + detail::page_bytes - 1) / detail::page_bytes;
  const std::uint64_t bytes = pages * detail::page_bytes;
  f.snapshot_.reset(static_cast<std::byte*>(std::aligned_alloc(detail::page_bytes, bytes)));
  if (!f.snapshot_) fail(inspect_error::system, path, "no memory for a copy of the pool's metadata");
  f.refresh();
  return f;
}

pool_file::pool_file(pool_file&& o) noexcept
    : path_(std::move(o.path_)),
      fd_(std::exchange(o.fd_, -1)),
      base_(std::exchange(o.base_, nullptr)),
      file_size_(o.file_size_),
      header_(o.header_),
      layout_(o.layout_),
      snapshot_(std::move(o.snapshot_)),
      str_slots_(std::move(o.str_slots_)),
      str_lengths_(std::move(o.str_lengths_)) {}

pool_file::~pool_file() {
  if (base_ != nullptr) ::munmap(base_, layout_.total_size);
  if (fd_ >= 0) ::close(fd_);
}

void pool_file::changed(const std::string& why) const {
  fail(inspect_error::changed, path_, "changed while being read: " + why);
}

void pool_file::refresh() {
  constexpr int attempts = 3;  // a file whose change time moves during each of them is changing: give up
  for (int i = 0; i < attempts; ++i)
    if (copy_once()) return;
  changed("it was written to during each of " + std::to_string(attempts) + " attempts to copy it");
}

// One snapshot: fstat, the copy, then the checks that the copy is of one
// pool file as validated at open.  Throws when the file is no longer that
// pool; false when it may have been written to during the copy (retry).
bool pool_file::copy_once() {
  const auto stat_now = [&](struct stat& st) {
    at_read(fd_);
    if (::fstat(fd_, &st) != 0) fail(inspect_error::system, path_, std::string("fstat: ") + std::strerror(errno));
    if (static_cast<std::uint64_t>(st.st_size) < layout_.total_size)
      changed("the file is now " + std::to_string(st.st_size) + " bytes, smaller than the pool's " +
              std::to_string(layout_.total_size) + " (truncated under the tool)");
  };
  struct stat before {};
  stat_now(before);
  const auto* from = static_cast<const std::byte*>(base_);
  const snapshot_copy copy{from, snapshot_.get(), layout_.meta_offset,
                           layout_.meta_offset + layout_.capacity * sizeof(detail::slot_meta<P>),
                           layout_.data_offset, fd_};
  if (!without_sigbus(base_, layout_.total_size, copy)) return false;  // a page vanished: stat_now says why
  str_slots_.clear();
  if (layout_.variant == detail::variant_code::str) {
    for (std::uint64_t i = 0; i < layout_.capacity; ++i)
      if (detail::state_of(meta(i).word.load(std::memory_order_relaxed)) == detail::slot_state::allocated)
        str_slots_.push_back(i);
    str_lengths_.assign(str_slots_.size(), 0);
    const length_copy lengths{from + layout_.data_offset, layout_.elem_size, str_slots_.data(), str_lengths_.data(),
                              str_slots_.size(), fd_};
    if (!without_sigbus(base_, layout_.total_size, lengths)) return false;
  }
  detail::pool_header now{};
  at_read(fd_);
  errno = 0;
  if (::pread(fd_, &now, sizeof now, 0) != static_cast<ssize_t>(sizeof now)) {
    const int e = errno;
    struct stat st {};
    stat_now(st);  // throws for a file shrunk under the pool's size
    fail(inspect_error::system, path_, std::string("reading the header: ") + std::strerror(e ? e : EIO));
  }
  if (std::memcmp(&now, &header_, sizeof now) != 0 || std::memcmp(snapshot_.get(), &header_, sizeof header_) != 0)
    changed("its header is no longer the one validated at open (rewritten under the tool)");
  struct stat after {};
  stat_now(after);
  return same_time(before.st_ctim, after.st_ctim) && same_time(before.st_mtim, after.st_mtim);
}

// The protocol over the snapshot.  Only its const members are used (check,
// used, word, waiters, counters_seen), and they only load.
detail::slot_protocol<P> pool_file::protocol() const noexcept {
  auto* base = snapshot_.get();
  detail::pool_view<P> v;
  v.groups = reinterpret_cast<detail::group_word<P>*>(base + layout_.groups_offset);
  v.meta = reinterpret_cast<detail::slot_meta<P>*>(base + layout_.meta_offset);
  v.control = reinterpret_cast<detail::pool_control<P>*>(base + detail::control_offset);
  v.capacity = layout_.capacity;
  return detail::slot_protocol<P>(v);
}

const detail::slot_meta<P>& pool_file::meta(std::uint64_t i) const noexcept {
  return reinterpret_cast<const detail::slot_meta<P>*>(snapshot_.get() + layout_.meta_offset)[i];
}

const detail::pool_control<P>& pool_file::control() const noexcept {
  return *reinterpret_cast<const detail::pool_control<P>*>(snapshot_.get() + detail::control_offset);
}

pool_stats pool_file::stats() const {
  const auto proto = protocol();
  const auto& c = control();
  pool_stats s;
  s.capacity = layout_.capacity;
  s.elem_size = layout_.elem_size;
  s.used = proto.used();
  s.available = s.capacity - s.used;
  s.waiters = proto.waiters();
  s.mmap_size = layout_.total_size;
  const auto counted = proto.counters_seen();  // read-only: does not raise the frees mark
  s.allocs = counted.allocs;
  s.frees = counted.frees;
  s.waits = c.waits.load(std::memory_order_relaxed);
  s.timeouts = c.timeouts.load(std::memory_order_relaxed);
  s.recoveries = c.recoveries.load(std::memory_order_relaxed);
  return s;
}

std::vector<slot_entry> pool_file::taken_slots() const {
  std::vector<slot_entry> out;
  for (std::uint64_t i = 0; i < layout_.capacity; ++i) {
    const std::uint64_t w = meta(i).word.load(std::memory_order_acquire);
    if (w == 0) continue;
    const std::uint64_t id = detail::identity_of(w);
    out.push_back({i, detail::state_of(w), id, platform::identity_pid(id), meta(i).allocs.load(std::memory_order_relaxed)});
  }
  return out;
}

std::vector<std::uint64_t> pool_file::stale_marks() const {
  std::vector<std::uint64_t> out;
  const auto* groups = reinterpret_cast<const detail::group_word<P>*>(snapshot_.get() + layout_.groups_offset);
  for (std::uint64_t g = 0; g < detail::group_count(layout_.capacity); ++g) {
    const std::uint64_t m = groups[g].mark.load(std::memory_order_acquire);
    if (m == 0) continue;
    bool has_free = m != detail::group_full;  // a malformed mark is stale whatever the words say
    const std::uint64_t end = std::min(layout_.capacity, (g + 1) * detail::group_slots);
    for (std::uint64_t s = g * detail::group_slots; s < end && !has_free; ++s)
      has_free = meta(s).word.load(std::memory_order_acquire) == 0;
    if (has_free) out.push_back(g);
  }
  return out;
}

std::vector<std::string> pool_file::problems(std::vector<std::string>* notes) const {
  std::vector<std::string> out;
  // 1. Header: validated at open; the reserved bytes must be zero.
  for (std::size_t i = 0; i < sizeof header_.reserved; ++i)
    if (header_.reserved[i] != 0) {
      out.push_back("header: reserved byte " + std::to_string(80 + i) + " is not zero");
      break;
    }
  if (notes != nullptr && file_size_ > layout_.total_size)
    notes->push_back("file is " + std::to_string(file_size_) + " bytes, larger than the pool's " +
                     std::to_string(layout_.total_size));
  // 2. Slot words and group marks (G1): the core's one checker.
  for (auto& p : protocol().check()) out.push_back(std::move(p));
  // 3. Per-slot counters and str lengths (str_slots_: the allocated slots, in order).
  std::size_t k = 0;
  for (std::uint64_t i = 0; i < layout_.capacity; ++i) {
    const std::uint64_t w = meta(i).word.load(std::memory_order_acquire);
    if (w == 0) continue;
    if (meta(i).allocs.load(std::memory_order_relaxed) == 0)
      out.push_back("slot " + std::to_string(i) + ": taken but its alloc count is 0");
    if (k < str_slots_.size() && str_slots_[k] == i) {
      if (str_lengths_[k] > layout_.max_len)
        out.push_back("slot " + std::to_string(i) + ": string length " + std::to_string(str_lengths_[k]) +
                      " exceeds max_len " + std::to_string(layout_.max_len));
      ++k;
    }
  }
  // 4. Pool counters.
  const pool_stats s = stats();
  if (s.timeouts > s.waits)
    out.push_back("counters: timeouts (" + std::to_string(s.timeouts) + ") exceed waits (" + std::to_string(s.waits) +
                  ")");
  if (s.allocs < s.used)
    out.push_back("counters: " + std::to_string(s.used) + " slots in use but only " + std::to_string(s.allocs) +
                  " allocations recorded");
  if (notes != nullptr && s.waiters != 0)
    notes->push_back(std::to_string(s.waiters) +
                     " registered waiter(s) (normal while allocs block; a killed waiter leaves it high, harmlessly)");
  return out;
}

}  // namespace shmpool::tool
