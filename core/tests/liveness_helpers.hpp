// Real environments for the liveness tests: child processes that report
// back through a pipe, namespaces, a hidden or missing /proc, the fd limit.
// Every setup returns 0 or the errno with which the kernel refused it (the
// test then skips, naming it).
#pragma once

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace liveness_test {

// What a child tells its parent.
struct report {
  std::uint64_t id = 0;   // an identity the child recorded or produced
  std::int64_t value = 0;  // a verdict, a count, a slot...
  pid_t holder = 0;        // a process (in our pid namespace) to kill at teardown
  int refused = 0;         // errno of a setup the kernel refused (skip)
  char what[96] = {};      // which setup was refused
};

inline void send(int fd, const report& r) {
  if (::write(fd, &r, sizeof r) != static_cast<ssize_t>(sizeof r)) ::_exit(111);
}
inline void send_refused(int fd, int err, const char* what) {
  report r;
  r.refused = err;
  std::snprintf(r.what, sizeof r.what, "%s", what);
  send(fd, r);
}
inline bool receive(int fd, report& r) {
  std::size_t got = 0;
  auto* p = reinterpret_cast<char*>(&r);
  while (got < sizeof r) {
    const ssize_t n = ::read(fd, p + got, sizeof r - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
  }
  return true;
}

// Forks; the child runs fn(write_fd) and exits 0 when it returns.  The
// parent gets the child's first report (false if it died without one).
template <class Fn>
bool fork_reporting(Fn&& fn, report& r, pid_t& child) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  child = ::fork();
  if (child < 0) return false;
  if (child == 0) {
    ::close(fds[0]);
    fn(fds[1]);
    ::_exit(0);
  }
  ::close(fds[1]);
  const bool ok = receive(fds[0], r);
  ::close(fds[0]);
  return ok;
}

inline void wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}
inline void kill_and_wait(pid_t pid) {
  ::kill(pid, SIGKILL);
  wait_for(pid);
}
[[noreturn]] inline void block_forever() {
  for (;;) ::pause();
}

// ---- environments (run in a child) ----------------------------------------------

constexpr long boottime_shift_s = 1000;

// This process's children live in a time namespace whose boot time is
// shifted by boottime_shift_s.
inline int enter_time_namespace_for_children() {
  if (::unshare(CLONE_NEWTIME) != 0) return errno;
  const int fd = ::open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char line[64];
  const int n = std::snprintf(line, sizeof line, "%d %ld 0\n", CLOCK_BOOTTIME, boottime_shift_s);
  const bool ok = ::write(fd, line, static_cast<std::size_t>(n)) == n;
  const int err = errno;
  ::close(fd);
  return ok ? 0 : err;
}

// setns(2) into the time namespace that `ns_path` names (/proc/<pid>/ns/time,
// /proc/self/ns/time_for_children): unlike unshare, it moves the caller
// itself, and only a single-threaded caller.  0 or the errno.
inline int join_time_namespace(const char* ns_path) {
  const int fd = ::open(ns_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int rc = ::setns(fd, CLONE_NEWTIME);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? 0 : err;
}

// Threads of this process (/proc/self/status), or -1.
inline long thread_count() {
  FILE* f = std::fopen("/proc/self/status", "re");
  if (f == nullptr) return -1;
  char line[256];
  long n = -1;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::strncmp(line, "Threads:", 8) == 0) n = std::strtol(line + 8, nullptr, 10);
  std::fclose(f);
  return n;
}

// Reports a refused setns(CLONE_NEWTIME).  EUSERS means the caller was not
// single-threaded: in a fork child that is a sanitizer's own runtime thread
// (ThreadSanitizer starts one in every child), which the message names.
inline void send_setns_refused(int fd, int err, const char* what) {
  char text[96];
  if (err == EUSERS)
    std::snprintf(text, sizeof text, "%s: needs a single-threaded caller, this child has %ld threads", what,
                  thread_count());
  else
    std::snprintf(text, sizeof text, "%s", what);
  send_refused(fd, err, text);
}

// This (single-threaded) process itself moves into a new time namespace
// whose boot time is shifted by boottime_shift_s: unshare, set the offset,
// then setns into the namespace made for its children.
inline int move_into_shifted_time_namespace() {
  if (const int err = enter_time_namespace_for_children()) return err;
  return join_time_namespace("/proc/self/ns/time_for_children");
}

// A private mount namespace (changes stay in this process).
inline int private_mounts() {
  if (::unshare(CLONE_NEWNS) != 0) return errno;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return errno;
  return 0;
}

// /proc remounted with hidepid=2, then this process becomes nobody: other
// users' processes (the test's, run as root) are invisible.
inline int hide_other_processes() {
  if (const int err = private_mounts()) return err;
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2") != 0) return errno;
  if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) return errno;
  return 0;
}

inline int unmount_proc() {
  if (const int err = private_mounts()) return err;
  if (::umount2("/proc", MNT_DETACH) != 0) return errno;
  return 0;
}

// Lowers RLIMIT_NOFILE and fills every descriptor: the next open fails
// with EMFILE.  Returns 0 or errno; *taken lists the descriptors it opened.
inline int exhaust_fds(std::vector<int>* taken = nullptr) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return errno;
  lim.rlim_cur = 64;
  if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) return errno;
  if (taken != nullptr) taken->reserve(64);
  const int base = ::open("/dev/null", O_RDONLY);
  if (base < 0) return errno;
  for (int fd = base; fd >= 0; fd = ::fcntl(base, F_DUPFD, 0))
    if (taken != nullptr) taken->push_back(fd);
  return errno == EMFILE ? 0 : errno;
}
// Undoes exhaust_fds.
inline void release_fds(const std::vector<int>& taken) {
  for (const int fd : taken) ::close(fd);
}

// The state (field 3) and thread count (field 20) of /proc/<pid>/stat.
inline bool stat_state(pid_t pid, char& state, long& threads) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return false;
  char buf[1024] = {};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const char* p = std::strrchr(buf, ')');
  if (n == 0 || p == nullptr) return false;
  state = p[2];
  p += 2;
  for (int field = 3; field < 20 && *p != '\0'; ++p)
    if (*p == ' ') ++field;
  threads = std::strtol(p, nullptr, 10);
  return true;
}

// Polls until /proc/<pid>/stat shows state `want` (5 s at most).
inline bool await_state(pid_t pid, char want) {
  for (int i = 0; i < 5000; ++i) {
    char s = '?';
    long threads = 0;
    if (stat_state(pid, s, threads) && s == want) return true;
    ::usleep(1000);
  }
  return false;
}

}  // namespace liveness_test
