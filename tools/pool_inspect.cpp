// Read-only inspection of a pool file (pool_inspect.hpp).
#include "pool_inspect.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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

}  // namespace

detail::pool_layout read_layout(int fd, const std::string& where) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(inspect_error::system, where, std::string("fstat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(inspect_error::not_a_pool, where, "not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  detail::pool_header h{};
  if (size < sizeof h)
    fail(inspect_error::not_a_pool, where,
         "not a shmpool pool (" + std::to_string(size) + " bytes, smaller than a pool header)");
  if (::pread(fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h))
    fail(inspect_error::system, where, std::string("reading the header: ") + std::strerror(errno ? errno : EIO));
  const detail::header_verdict v = detail::validate_header(h, size);
  if (!v.layout) {
    if (is_foreign(v.reason)) fail(inspect_error::not_a_pool, where, std::string("not a shmpool pool: ") + v.what);
    fail(inspect_error::damaged, where, std::string("damaged header: ") + v.what);
  }
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

pool_file pool_file::open_readonly(const std::string& path) {
  pool_file f;
  f.fd_ = open_nonblocking(path, O_RDONLY);
  f.layout_ = read_layout(f.fd_, path);
  struct stat st {};
  if (::fstat(f.fd_, &st) != 0) fail(inspect_error::system, path, std::string("fstat: ") + std::strerror(errno));
  f.file_size_ = static_cast<std::uint64_t>(st.st_size);
  if (::pread(f.fd_, &f.header_, sizeof f.header_, 0) != static_cast<ssize_t>(sizeof f.header_))
    fail(inspect_error::system, path, "reading the header");
  void* p = ::mmap(nullptr, f.layout_.total_size, PROT_READ, MAP_SHARED, f.fd_, 0);
  if (p == MAP_FAILED) fail(inspect_error::system, path, std::string("mmap: ") + std::strerror(errno));
  f.base_ = p;
  return f;
}

pool_file::pool_file(pool_file&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      base_(std::exchange(o.base_, nullptr)),
      file_size_(o.file_size_),
      header_(o.header_),
      layout_(o.layout_) {}

pool_file::~pool_file() {
  if (base_ != nullptr) ::munmap(base_, layout_.total_size);
  if (fd_ >= 0) ::close(fd_);
}

// The protocol over a PROT_READ mapping.  Only its const members are used
// (check, used, word, waiters, counters_seen), and they only load.
detail::slot_protocol<P> pool_file::protocol() const noexcept {
  auto* base = static_cast<std::byte*>(base_);
  detail::pool_view<P> v;
  v.groups = reinterpret_cast<detail::group_word<P>*>(base + layout_.groups_offset);
  v.meta = reinterpret_cast<detail::slot_meta<P>*>(base + layout_.meta_offset);
  v.control = reinterpret_cast<detail::pool_control<P>*>(base + detail::control_offset);
  v.capacity = layout_.capacity;
  return detail::slot_protocol<P>(v);
}

const detail::slot_meta<P>& pool_file::meta(std::uint64_t i) const noexcept {
  return reinterpret_cast<const detail::slot_meta<P>*>(static_cast<const std::byte*>(base_) + layout_.meta_offset)[i];
}

const detail::pool_control<P>& pool_file::control() const noexcept {
  return *reinterpret_cast<const detail::pool_control<P>*>(static_cast<const std::byte*>(base_) +
                                                           detail::control_offset);
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
  const auto* groups = reinterpret_cast<const detail::group_word<P>*>(static_cast<const std::byte*>(base_) +
                                                                      layout_.groups_offset);
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
  // 3. Per-slot counters and str lengths.
  const auto* data = static_cast<const std::byte*>(base_) + layout_.data_offset;
  for (std::uint64_t i = 0; i < layout_.capacity; ++i) {
    const std::uint64_t w = meta(i).word.load(std::memory_order_acquire);
    if (w == 0) continue;
    if (meta(i).allocs.load(std::memory_order_relaxed) == 0)
      out.push_back("slot " + std::to_string(i) + ": taken but its alloc count is 0");
    if (layout_.variant == detail::variant_code::str && detail::state_of(w) == detail::slot_state::allocated) {
      std::uint32_t len = 0;
      std::memcpy(&len, data + i * layout_.elem_size, sizeof len);
      if (len > layout_.max_len)
        out.push_back("slot " + std::to_string(i) + ": string length " + std::to_string(len) + " exceeds max_len " +
                      std::to_string(layout_.max_len));
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
