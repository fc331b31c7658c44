// The fault plan behind platform/sys.hpp (fault builds only), and the errno
// names the sweep and the environment use (every build).
#include "shmpool/platform/sys.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace shmpool::platform::sys {
namespace {

struct errno_entry {
  int value;
  const char* name;
};
constexpr errno_entry errno_table[] = {
    {EPERM, "EPERM"},   {ENOENT, "ENOENT"}, {ESRCH, "ESRCH"},   {EINTR, "EINTR"},   {EIO, "EIO"},
    {EBADF, "EBADF"},   {EAGAIN, "EAGAIN"}, {ENOMEM, "ENOMEM"}, {EACCES, "EACCES"}, {EFAULT, "EFAULT"},
    {EBUSY, "EBUSY"},   {EEXIST, "EEXIST"}, {ENODEV, "ENODEV"}, {ENOTDIR, "ENOTDIR"}, {EINVAL, "EINVAL"},
    {ENFILE, "ENFILE"}, {EMFILE, "EMFILE"}, {EFBIG, "EFBIG"},   {ENOSPC, "ENOSPC"}, {EROFS, "EROFS"},
    {ENOSYS, "ENOSYS"}, {ELOOP, "ELOOP"},   {EDQUOT, "EDQUOT"}, {ETIMEDOUT, "ETIMEDOUT"},
    {EOPNOTSUPP, "EOPNOTSUPP"}, {EOVERFLOW, "EOVERFLOW"}, {ENAMETOOLONG, "ENAMETOOLONG"},
    {ENOLCK, "ENOLCK"}, {EMLINK, "EMLINK"},
};

}  // namespace

int errno_from_name(const char* name) noexcept {
  if (name == nullptr || *name == '\0') return 0;
  if (*name >= '0' && *name <= '9') return static_cast<int>(std::strtol(name, nullptr, 10));
  for (const errno_entry& e : errno_table)
    if (std::strcmp(e.name, name) == 0) return e.value;
  return 0;
}

const char* errno_name(int err) noexcept {
  for (const errno_entry& e : errno_table)
    if (e.value == err) return e.name;
  return "E?";
}

#if defined(SHMPOOL_FAULTS)
namespace {

// One plan per process, read by every thread.  Relaxed is enough: the plan
// is armed before the scenario starts, and counts are reported after it ends.
std::atomic<std::uint64_t> g_nth{0};
std::atomic<int> g_error{0};
std::atomic<int> g_kind{-1};  // -1: count every kind
std::atomic<bool> g_sticky{false};
std::atomic<std::uint64_t> g_counted{0};
std::atomic<std::uint64_t> g_injected{0};
std::atomic<int> g_first_injected_kind{-1};
std::atomic<bool> g_env_read{false};
std::atomic<int> g_trace_fd{-1};
std::atomic<std::uint8_t> g_log[call_log_capacity];

void read_environment() noexcept {
  // getenv before any thread of the scenario runs: the first counted call
  // comes from the scenario's first core call.
  const char* at = std::getenv("SHMPOOL_FAULT_AT");  // NOLINT(concurrency-mt-unsafe): fault builds, read once
  const char* err = std::getenv("SHMPOOL_FAULT_ERRNO");  // NOLINT(concurrency-mt-unsafe): fault builds, read once
  const char* kind = std::getenv("SHMPOOL_FAULT_CALL");  // NOLINT(concurrency-mt-unsafe): fault builds, read once
  const char* sticky = std::getenv("SHMPOOL_FAULT_STICKY");  // NOLINT(concurrency-mt-unsafe): fault builds, read once
  const char* trace = std::getenv("SHMPOOL_FAULT_TRACE");  // NOLINT(concurrency-mt-unsafe): fault builds, read once
  if (at != nullptr) g_nth.store(std::strtoull(at, nullptr, 10));
  g_error.store(err != nullptr ? errno_from_name(err) : EIO);
  if (kind != nullptr)
    for (std::size_t k = 0; k < static_cast<std::size_t>(call::count_); ++k)
      if (std::strcmp(call_names[k], kind) == 0) g_kind.store(static_cast<int>(k));
  g_sticky.store(sticky != nullptr && *sticky == '1');
  if (trace != nullptr) g_trace_fd.store(::open(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
}

}  // namespace

void arm_fault(const fault_plan& plan) noexcept {
  g_env_read.store(true);
  g_counted.store(0);
  g_injected.store(0);
  g_first_injected_kind.store(-1);
  g_error.store(plan.error);
  g_kind.store(plan.only_one_kind ? static_cast<int>(plan.kind) : -1);
  g_sticky.store(plan.sticky);
  g_nth.store(plan.nth);
}

std::uint64_t calls_counted() noexcept { return g_counted.load(); }

std::size_t logged_calls(call* out, std::size_t max) noexcept {
  const std::uint64_t n = g_counted.load();
  std::size_t k = 0;
  for (; k < max && k < n && k < call_log_capacity; ++k) out[k] = static_cast<call>(g_log[k].load());
  return k;
}
std::uint64_t faults_injected() noexcept { return g_injected.load(); }
int first_injected_kind() noexcept { return g_first_injected_kind.load(); }

bool fault_fires(call c, int& err) noexcept {
  if (!g_env_read.load(std::memory_order_acquire) && !g_env_read.exchange(true)) read_environment();
  const int kind = g_kind.load(std::memory_order_relaxed);
  if (kind >= 0 && kind != static_cast<int>(c)) return false;
  const std::uint64_t n = g_counted.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n <= call_log_capacity) g_log[n - 1].store(static_cast<std::uint8_t>(c), std::memory_order_relaxed);
  if (const int fd = g_trace_fd.load(std::memory_order_relaxed); fd >= 0) {
    char line[64];
    const int len = std::snprintf(line, sizeof line, "%llu %s\n", static_cast<unsigned long long>(n), call_name(c));
    if (len > 0) (void)!::write(fd, line, static_cast<std::size_t>(len));
  }
  const std::uint64_t nth = g_nth.load(std::memory_order_relaxed);
  if (nth == 0 || c == call::close || c == call::munmap) return false;
  if (n == nth || (g_sticky.load(std::memory_order_relaxed) && n > nth)) {
    err = g_error.load(std::memory_order_relaxed);
    if (g_injected.fetch_add(1, std::memory_order_relaxed) == 0) g_first_injected_kind.store(static_cast<int>(c));
    return true;
  }
  return false;
}
#endif

}  // namespace shmpool::platform::sys
