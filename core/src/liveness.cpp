// proc_liveness: owner identities from /proc, and the "certainly dead" test.
#include "shmpool/platform/liveness.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace shmpool::platform {
namespace {

struct proc_stat {
  bool exists = false;
  char state = '?';
  std::uint64_t start_ticks = 0;
};

// Reads /proc/<pid>/stat: the state (field 3) and start time (field 22).
// Only async-signal-safe calls, so it may run in a fork child.
proc_stat read_proc_stat(pid_t pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char buf[1024];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return {};
  buf[n] = '\0';
  // The command name (field 2) may hold spaces and ')': parse after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return {};
  p += 2;
  proc_stat st;
  st.exists = true;
  st.state = *p;
  for (int field = 3; field < 22 && *p != '\0'; ++p)
    if (*p == ' ') ++field;
  std::uint64_t v = 0;
  while (*p >= '0' && *p <= '9') v = v * 10 + static_cast<std::uint64_t>(*p++ - '0');
  st.start_ticks = v;
  return st;
}

// 10 bits of a hash of this process's pid namespace ("pid:[4026531836]").
std::uint64_t namespace_tag() noexcept {
  char link[128];
  const ssize_t n = ::readlink("/proc/self/ns/pid", link, sizeof link);
  std::uint64_t h = 14695981039346656037ULL;
  for (ssize_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(link[i])) * 1099511628211ULL;
  return h & ((1u << identity_tag_bits) - 1);
}

std::atomic<std::uint64_t>& self_tag_cache() noexcept {
  static std::atomic<std::uint64_t> tag{~std::uint64_t{0}};
  return tag;
}

std::uint64_t self_tag() noexcept {
  std::uint64_t t = self_tag_cache().load(std::memory_order_relaxed);
  if (t == ~std::uint64_t{0}) {
    t = namespace_tag();
    self_tag_cache().store(t, std::memory_order_relaxed);
  }
  return t;
}

}  // namespace

std::atomic<std::uint64_t>& proc_liveness::cached_identity() noexcept {
  static std::atomic<std::uint64_t> identity{0};
  return identity;
}

std::uint64_t proc_liveness::compute_self() noexcept {
  // The child of a fork is another process: forget the cached identity there
  // (and the namespace tag: a child of unshare(CLONE_NEWPID) lives elsewhere).
  static const bool registered = [] {
    ::pthread_atfork(nullptr, nullptr, [] {
      cached_identity().store(0, std::memory_order_relaxed);
      self_tag_cache().store(~std::uint64_t{0}, std::memory_order_relaxed);
    });
    return true;
  }();
  (void)registered;
  const pid_t pid = ::getpid();
  const std::uint64_t id = make_identity(self_tag(), static_cast<std::uint64_t>(pid), read_proc_stat(pid).start_ticks);
  cached_identity().store(id, std::memory_order_relaxed);
  return id;
}

std::uint64_t proc_liveness::identity_of(pid_t pid) noexcept {
  const proc_stat st = read_proc_stat(pid);
  if (!st.exists) return 0;
  return make_identity(self_tag(), static_cast<std::uint64_t>(pid), st.start_ticks);
}

bool proc_liveness::certainly_dead(std::uint64_t identity) noexcept {
  const pid_t pid = identity_pid(identity);
  if (pid <= 0) return false;  // names nobody: cannot judge
#if defined(SHMPOOL_MUTANT_PID_ONLY_LIVENESS)
  // Defect: trust the pid alone (wrong after PID reuse, and for zombies).
  return ::kill(pid, 0) == -1 && errno == ESRCH;
#else
  if (identity_ns_tag(identity) != self_tag()) return false;  // another pid namespace
  if (::kill(pid, 0) == -1 && errno == ESRCH) return true;
  const proc_stat st = read_proc_stat(pid);
  if (!st.exists) return true;
  if (st.state == 'Z' || st.state == 'X') return true;  // exited, not yet reaped
  return (st.start_ticks & ((1u << identity_start_bits) - 1)) != identity_start(identity);  // pid reused
#endif
}

}  // namespace shmpool::platform
