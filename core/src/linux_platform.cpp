// linux_platform: futex(2), the monotonic clock, and crash points.
#include "shmpool/platform/linux.hpp"
#include "shmpool/platform/sys.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace shmpool::platform {

constinit process_gates g_process_gates{};
static_assert(sizeof(process_gates) == 4096, "the gates must own their page: the whole page is wiped on fork");

namespace {
void lower_gates_in_child() noexcept {
  g_process_gates.checked_frees.store(0, std::memory_order_relaxed);
  g_process_gates.image_waiters.store(0, std::memory_order_relaxed);
}
// At load: the page is wiped in every fork child, however it forks; where
// the kernel refuses (before 4.14), a fork handler lowers the gates instead.
[[maybe_unused]] const bool g_gates_wiped_on_fork = [] {
  if (sys::madvise(&g_process_gates, sizeof g_process_gates, MADV_WIPEONFORK) == 0) return true;
  ::pthread_atfork(nullptr, nullptr, lower_gates_in_child);
  return false;
}();
}  // namespace

bool linux_platform::futex_wait(atomic<int>& word, int expected, std::int64_t timeout_ns) noexcept {
  static_assert(sizeof(atomic<int>) == sizeof(int));
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout_ns >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
    tsp = &ts;
  }
  // Not FUTEX_PRIVATE: the word lives in a mapping shared between processes.
  const long rc = sys::futex_wait(reinterpret_cast<int*>(&word), expected, tsp);
  return !(rc == -1 && errno == ETIMEDOUT);
}

void linux_platform::futex_wake(atomic<int>& word, int count) noexcept {
  sys::futex_wake(reinterpret_cast<int*>(&word), count);
}

std::int64_t linux_platform::now_ns() noexcept {
  timespec ts{};
  if (sys::clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  // CLOCK_MONOTONIC does not fail on Linux; if it ever did (a seccomp filter,
  // a fault build), a zero here would turn every deadline into "expired" and
  // a blocking alloc into a spurious timeout (found by the fault sweep).
  // The same clock through the C++ library is the fallback.
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

#if defined(SHMPOOL_CRASH_POINTS)
namespace {
std::atomic<std::uint64_t> g_crash_hits{0};
std::atomic<std::uint64_t> g_crash_at{0};  // 0: never
std::atomic<bool> g_crash_env_read{false};
std::atomic<crash_action> g_crash_action{crash_action::kill};
std::atomic<crash_site> g_last_site{crash_site{}};
// park_thread: 0 nobody parked since arming, 1 a thread waits at its point,
// 2 released.  Private to the process (a fork child's copy is its own).
std::atomic<int> g_parked{0};
std::atomic<char* const*> g_exec_argv{nullptr};

void park_this_thread() noexcept {
  static_assert(sizeof(std::atomic<int>) == sizeof(int));
  g_parked.store(1);
  sys::futex_wake(reinterpret_cast<int*>(&g_parked), 1 << 30);
  while (g_parked.load() == 1) sys::futex_wait(reinterpret_cast<int*>(&g_parked), 1, nullptr);
}

// exec_self: no allocation (another thread may hold malloc's lock): the
// environment is copied into static storage with the site appended.
void exec_self(crash_site site) noexcept {
  char* const* argv = g_exec_argv.load();
  if (argv == nullptr) return;
  static char site_env[64] = "SHMPOOL_CRASH_EXEC_SITE=";
  constexpr std::size_t prefix = sizeof "SHMPOOL_CRASH_EXEC_SITE=" - 1;
  char digits[8];
  unsigned v = static_cast<unsigned>(site), n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && n < sizeof digits);
  for (unsigned i = 0; i < n; ++i) site_env[prefix + i] = digits[n - 1 - i];
  site_env[prefix + n] = '\0';
  constexpr std::size_t max_env = 1024;
  static char* envp[max_env + 2];
  std::size_t k = 0;
  for (char** e = environ; e != nullptr && *e != nullptr && k < max_env; ++e)
    if (std::strncmp(*e, site_env, prefix) != 0) envp[k++] = *e;
  envp[k++] = site_env;
  envp[k] = nullptr;
  ::execve("/proc/self/exe", argv, envp);  // seam-exempt: a crash point must never be faulted away
}
}  // namespace

void arm_crash_point(std::uint64_t nth, crash_action action) noexcept {
  g_crash_env_read.store(true);
  g_crash_hits.store(0);
  g_crash_action.store(action);
  g_parked.store(0);
  g_crash_at.store(nth);
}

bool crash_point_parked() noexcept { return g_parked.load() == 1; }
void release_parked_thread() noexcept {
  int parked = 1;
  if (g_parked.compare_exchange_strong(parked, 2)) sys::futex_wake(reinterpret_cast<int*>(&g_parked), 1 << 30);
}
void set_crash_exec_argv(char* const* argv) noexcept { g_exec_argv.store(argv); }

std::uint64_t crash_points_hit() noexcept { return g_crash_hits.load(); }
crash_site last_crash_site() noexcept { return g_last_site.load(); }

void crash_point_hit(crash_site site) noexcept {
  if (!g_crash_env_read.exchange(true)) {
    // NOLINTNEXTLINE(concurrency-mt-unsafe): crash-point builds only; read once, at the first hit
    if (const char* at = std::getenv("SHMPOOL_CRASH_AT")) g_crash_at.store(std::strtoull(at, nullptr, 10));
    // NOLINTNEXTLINE(concurrency-mt-unsafe): as above
    if (const char* a = std::getenv("SHMPOOL_CRASH_ACTION"); a != nullptr && std::strcmp(a, "stop") == 0)
      g_crash_action.store(crash_action::stop);
  }
  g_last_site.store(site);
  const std::uint64_t hit = g_crash_hits.fetch_add(1) + 1;
  if (hit != g_crash_at.load()) return;
  const crash_action action = g_crash_action.load();
  if (action == crash_action::park_thread) {
    park_this_thread();
    return;
  }
  if (action == crash_action::exec_self) exec_self(site);  // returns only if the exec failed: killed below
  const int sig = action == crash_action::stop ? SIGSTOP : SIGKILL;
  ::kill(::getpid(), sig);  // seam-exempt: a crash point must never be faulted away
}
#endif

}  // namespace shmpool::platform
