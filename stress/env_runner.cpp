// env_runner: the environments no fault layer can fake, with real processes.
//
// Each case builds one environment — a main thread that called
// pthread_exit, another time namespace, /proc mounted hidepid=2, the fd limit
// reached, a time namespace joined by setns after load, exec while holding
// slots and buffers, exec while threads sleep in alloc(), /dev/shm read-only or full,
// a registry name pre-created by another uid, a fork while a creator is
// inside open's initialisation, a fork by a thread that reuses a joined
// thread's pthread_t — and checks what the core promises there:
// a live owner's slot is never freed, a dead one still is, errors are the
// documented ones, and nothing blocks forever.  Every case runs in forked
// children so that namespaces, mounts and limits never touch the runner.
// A case the kernel refuses (no root, no time namespaces) is skipped and
// counted as skipped; CI runs as root and runs them all.
//
//   env_runner [--only CASE] [--markdown FILE] [--list]
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "shmpool/error.hpp"
#include "shmpool/platform/liveness.hpp"
#include "shmpool/pool.hpp"
#include "shmpool/stable_reference_buffer.hpp"
#include "stress_util.hpp"

namespace {

namespace fs = std::filesystem;
using shmpool::i64_pool;
using shmpool::stable_reference_buffer;

constexpr std::uint64_t capacity = 8;

// A verdict: "" passes, "skip: ..." skips, anything else fails.
using verdict = std::string;
bool skipped(const verdict& v) { return v.rfind("skip:", 0) == 0; }

// ---- processes ------------------------------------------------------------------

// Runs fn in a child and returns its verdict (sent through a pipe); a child
// that hangs past `seconds` or dies by a signal fails.
verdict in_child(const std::function<verdict()>& fn, int seconds = 20) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    verdict v;
    try {
      v = fn();
    } catch (const std::exception& e) {
      v = std::string("unexpected exception: ") + e.what();
    }
    (void)!::write(fds[1], v.data(), v.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  verdict v;
  char buf[512];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  bool hung = false;
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0) {
      v.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      hung = true;
      break;
    }
    ::usleep(2000);
  }
  ::close(fds[0]);
  if (hung) ::kill(pid, SIGKILL);
  const int status = stress::reap(pid);
  if (hung) return "hung: no answer within " + std::to_string(seconds) + " s";
  if (WIFSIGNALED(status)) return std::string("the child died of ") + strsignal(WTERMSIG(status));
  return v;
}

// A process that holds `count` slots of the pool at `path` until killed,
// started by `start` (which may enter namespaces first and must fork the
// holder itself).  Returns once the slots are held.
struct holder {
  pid_t pid = -1;       // the process to kill at the end
  int ready_fd = -1;
};

void write_all(int fd, const void* p, std::size_t n) { (void)!::write(fd, p, n); }

// In the calling process: open the pool, take `count` slots with values,
// report "ok" on fd, wait forever.
[[noreturn]] void hold_slots(const std::string& path, int count, int fd) {
  try {
    i64_pool p = i64_pool::open(path, capacity);
    for (int k = 0; k < count; ++k) {
      const auto s = p.try_alloc();
      if (!s) ::_exit(3);
      p.set(*s, 4200 + static_cast<std::int64_t>(*s));
    }
    write_all(fd, "ok", 2);
    ::close(fd);
    for (;;) ::pause();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "env: a slot holder failed: %s\n", e.what());
    ::_exit(2);
  }
}

// A two-byte reply from a child ("ok", "no", "sk"), within `seconds`;
// false if the child closed the pipe or said nothing in time.
bool read_reply(int fd, char (&reply)[2], int seconds = 10) {
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = ::read(fd, reply, sizeof reply);
    if (n == 2) return true;
    if (n == 0) return false;
    ::usleep(1000);
  }
  return false;
}

bool wait_ready(int fd, int seconds = 10) {
  char reply[2];
  return read_reply(fd, reply, seconds);
}

// Lowers RLIMIT_NOFILE to the descriptors already open: the next open
// (even of /proc/<pid>/stat) fails with EMFILE.  0, or the errno.
int exhaust_fd_limit() {
  const int lowest = ::open("/dev/null", O_RDONLY);
  ::close(lowest);
  const rlimit lim{static_cast<rlim_t>(lowest), static_cast<rlim_t>(lowest)};
  return ::setrlimit(RLIMIT_NOFILE, &lim) == 0 ? 0 : errno;
}

// Kills pid and returns once it is dead: reaped if it is our child, else
// (a grandchild) once it is a zombie or gone.
void kill_and_reap(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  int status = 0;
  if (::waitpid(pid, &status, 0) == pid) return;
  for (int i = 0; i < 5000 && stress::process_is_running(pid); ++i) ::usleep(1000);
}

// A fresh pool file in a private directory, world-writable so another uid can use it.
struct scratch {
  std::string dir, path;
  pid_t creator = ::getpid();  // a fork child that unwinds (pthread_exit) must not remove it
  scratch() {
    char tmpl[] = "/dev/shm/shmpool-env-XXXXXX";
    dir = ::mkdtemp(tmpl);
    ::chmod(dir.c_str(), 0777);
    path = dir + "/pool";
    (void)i64_pool::open(path, capacity);
    ::chmod(path.c_str(), 0666);
  }
  ~scratch() {
    if (::getpid() != creator) return;
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

// Recovery by a separate process (optionally prepared by `enter`) must free
// nothing while the owner lives; then, with the owner killed, everything.
verdict live_owner_survives_recovery(const scratch& s, pid_t owner, std::uint64_t held,
                                     const std::function<verdict()>& enter = {}) {
  const verdict during = in_child([&]() -> verdict {
    if (enter) {
      verdict v = enter();
      if (!v.empty()) return v;
    }
    i64_pool p = i64_pool::open(s.path, capacity);
    const std::size_t freed = p.recover_stale();
    if (freed != 0) return "recover_stale freed " + std::to_string(freed) + " slots of a live owner";
    return "";
  });
  if (!during.empty()) {
    kill_and_reap(owner);
    return during;
  }
  i64_pool p = i64_pool::open(s.path, capacity);
  if (p.used() != held) {
    kill_and_reap(owner);
    return "the live owner's slots changed: " + std::to_string(p.used()) + " in use";
  }
  kill_and_reap(owner);
  const std::size_t freed = p.recover_stale();
  if (freed != held) return "after the owner died, recovery freed " + std::to_string(freed) + " of its " +
                            std::to_string(held) + " slots";
  return "";
}

verdict enter_private_mounts() {
  if (::unshare(CLONE_NEWNS) != 0) return std::string("skip: unshare(CLONE_NEWNS): ") + std::strerror(errno);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return std::string("skip: making / private: ") + std::strerror(errno);
  return "";
}

verdict mount_shm(const char* options, unsigned long flags) {
  if (::mount("tmpfs", "/dev/shm", "tmpfs", flags, options) != 0)
    return std::string("skip: mounting a tmpfs on /dev/shm: ") + std::strerror(errno);
  return "";
}

// Buffers work: create, copy, adopt, is_known, use_count.  Where the
// environment may refuse (refusal_allowed), every use throwing
// registry_error is the other documented outcome (never another type,
// never a split registry).
verdict buffers_work(bool refusal_allowed = false) {
  try {
    stable_reference_buffer b(64);
    stable_reference_buffer c = b;
    stable_reference_buffer adopted(b.get());
    if (!stable_reference_buffer::is_known(b.get())) return "a live block is not known";
    if (b.use_count() != 3) return "use_count " + std::to_string(b.use_count()) + ", expected 3";
    return "";
  } catch (const shmpool::registry_error& e) {
    if (refusal_allowed) return "";
    return std::string("stable_reference_buffer threw registry_error: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("stable_reference_buffer threw ") + typeid(e).name() + ": " + e.what();
  }
}

verdict buffers_work_or_registry_error() { return buffers_work(/*refusal_allowed=*/true); }

// ---- the cases ----------------------------------------------------------------

verdict case_pthread_exit_main() {
  scratch s;
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t owner = ::fork();
  if (owner == 0) {
    ::close(fds[0]);
    static int fd = fds[1];
    static std::string path = s.path;
    pthread_t t;
    ::pthread_create(&t, nullptr, [](void*) -> void* { hold_slots(path, 2, fd); }, nullptr);
    ::pthread_exit(nullptr);  // the leader becomes a zombie; its worker runs on
  }
  ::close(fds[1]);
  const bool ready = wait_ready(fds[0]);
  ::close(fds[0]);
  if (!ready) {
    kill_and_reap(owner);
    return "the owner's worker thread could not take its slots";
  }
  for (int i = 0; i < 1000 && stress::process_state(owner) != 'Z'; ++i) ::usleep(1000);
  if (stress::process_state(owner) != 'Z') {
    kill_and_reap(owner);
    return "skip: the leader never showed state Z";
  }
  return live_owner_survives_recovery(s, owner, 2);
}

// The children of the calling process will live in a new time namespace
// whose boot time is a day later (unshare -T --boottime 86400).
verdict enter_shifted() {
#if defined(CLONE_NEWTIME)
  if (::unshare(CLONE_NEWTIME) != 0) return std::string("skip: unshare(CLONE_NEWTIME): ") + std::strerror(errno);
  const int fd = ::open("/proc/self/timens_offsets", O_WRONLY);
  if (fd < 0) return std::string("skip: /proc/self/timens_offsets: ") + std::strerror(errno);
  const char offsets[] = "boottime 86400 0\n";
  const bool ok = ::write(fd, offsets, sizeof offsets - 1) == static_cast<ssize_t>(sizeof offsets - 1);
  ::close(fd);
  if (!ok) return std::string("skip: writing timens_offsets: ") + std::strerror(errno);
  return "";
#else
  return "skip: no CLONE_NEWTIME in these headers";
#endif
}

// The calling process itself (single-threaded) moves into that namespace:
// setns, unlike unshare, applies to the caller.
verdict join_shifted() {
  if (verdict v = enter_shifted(); !v.empty()) return v;
#if defined(CLONE_NEWTIME)
  const int fd = ::open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::string("skip: /proc/self/ns/time_for_children: ") + std::strerror(errno);
  const int rc = ::setns(fd, CLONE_NEWTIME);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return std::string("skip: setns(CLONE_NEWTIME): ") + std::strerror(err);
  return "";
#else
  return "skip: no CLONE_NEWTIME in these headers";
#endif
}

// The owner lives in a time namespace whose boot time is `offset` seconds
// later; the recoverer in the initial one (or the other way round).
verdict time_namespace_case(bool owner_shifted) {
  scratch s;
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  // The namespace applies to children of the unsharing process: the owner
  // (or the recoverer) is a grandchild.
  const pid_t middle = ::fork();
  if (middle == 0) {
    ::close(fds[0]);
    if (owner_shifted) {
      const verdict v = enter_shifted();
      if (!v.empty()) {
        write_all(fds[1], "sk", 2);
        ::_exit(0);
      }
    }
    const pid_t owner = ::fork();
    if (owner == 0) hold_slots(s.path, 2, fds[1]);
    stress::reap(owner);
    ::_exit(0);
  }
  ::close(fds[1]);
  char buf[2] = {};
  const bool ready = read_reply(fds[0], buf);
  ::close(fds[0]);
  if (ready && buf[0] == 's') {
    stress::reap(middle);
    return "skip: the kernel refused a time namespace";
  }
  if (!ready) {
    kill_and_reap(middle);
    return "the owner could not take its slots";
  }
  // Kill the whole owner side when done: the middle process reaps the owner.
  const std::function<verdict()> recoverer_enters = owner_shifted ? std::function<verdict()>{} : [&]() -> verdict {
    verdict v = enter_shifted();
    if (!v.empty()) return v;
    // Only children see the new namespace: recover from a grandchild.
    return in_child([&]() -> verdict {
      i64_pool p = i64_pool::open(s.path, capacity);
      const std::size_t freed = p.recover_stale();
      return freed == 0 ? "" : "recover_stale in another time namespace freed " + std::to_string(freed) +
                                   " slots of a live owner";
    });
  };
  // Find the owner (the middle's only child) to kill it later.
  pid_t owner = -1;
  {
    const std::string children = "/proc/" + std::to_string(middle) + "/task/" + std::to_string(middle) + "/children";
    if (FILE* f = std::fopen(children.c_str(), "r")) {
      int pid = -1;
      if (std::fscanf(f, "%d", &pid) == 1) owner = pid;
      std::fclose(f);
    }
  }
  if (owner <= 0) {
    kill_and_reap(middle);
    return "cannot find the owner process";
  }
  verdict v;
  if (owner_shifted) {
    v = live_owner_survives_recovery(s, owner, 2);
  } else {
    v = in_child(recoverer_enters);
    if (v.empty()) v = live_owner_survives_recovery(s, owner, 2);
  }
  kill_and_reap(owner);
  stress::reap(middle);
  return v;
}

verdict case_time_namespace_owner() { return time_namespace_case(true); }
verdict case_time_namespace_recoverer() { return time_namespace_case(false); }

verdict start_holder(const scratch& s, int count, pid_t& owner) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  owner = ::fork();
  if (owner == 0) {
    ::close(fds[0]);
    hold_slots(s.path, count, fds[1]);
  }
  ::close(fds[1]);
  const bool ready = wait_ready(fds[0]);
  ::close(fds[0]);
  return ready ? "" : "the owner could not take its slots";
}

// A recoverer that has judged once where it started (its boot-time offset
// is known by then) joins, by setns, a time namespace whose boot time is a
// day later, and recovers there: with the offset of the namespace it left
// the live owner would look like a reused pid (issue 20, item 5).
verdict case_setns_time_namespace() {
  scratch s;
  pid_t owner = -1;
  if (verdict v = start_holder(s, 2, owner); !v.empty()) return v;
  const verdict during = in_child([&]() -> verdict {
    i64_pool p = i64_pool::open(s.path, capacity);
    if (const std::size_t freed = p.recover_stale(); freed != 0)
      return "before setns, recover_stale freed " + std::to_string(freed) + " slots of a live owner";
    if (verdict v = join_shifted(); !v.empty()) return v;
    if (const std::size_t freed = p.recover_stale(); freed != 0)
      return "after setns into another time namespace, recover_stale freed " + std::to_string(freed) +
             " slots of a live owner";
    if (p.used() != 2) return "after setns, " + std::to_string(p.used()) + " slots in use, expected 2";
    return "";
  });
  if (!during.empty()) {
    kill_and_reap(owner);
    return during;
  }
  return live_owner_survives_recovery(s, owner, 2);
}

verdict case_hidepid() {
  scratch s;
  pid_t owner = -1;
  if (verdict v = start_holder(s, 2, owner); !v.empty()) return v;
  const verdict v = live_owner_survives_recovery(s, owner, 2, []() -> verdict {
    if (verdict m = enter_private_mounts(); !m.empty()) return m;
    if (::mount("proc", "/proc", "proc", 0, "hidepid=2") != 0)
      return std::string("skip: mounting /proc with hidepid=2: ") + std::strerror(errno);
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)
      return std::string("skip: becoming uid 65534: ") + std::strerror(errno);
    return "";
  });
  kill_and_reap(owner);
  return v;
}

verdict case_fd_limit_recoverer() {
  scratch s;
  pid_t owner = -1;
  if (verdict v = start_holder(s, 2, owner); !v.empty()) return v;
  // The recoverer opens the pool, then lowers its fd limit so that no
  // further file (not even /proc/<pid>/stat) can be opened.
  const verdict during = in_child([&]() -> verdict {
    i64_pool p = i64_pool::open(s.path, capacity);
    (void)p.used();
    if (const int err = exhaust_fd_limit()) return std::string("skip: setrlimit: ") + std::strerror(err);
    std::size_t freed = 0;
    try {
      freed = p.recover_stale();
    } catch (const shmpool::error&) {
      return "";  // refusing is conservative
    }
    return freed == 0 ? "" : "recover_stale at the fd limit freed " + std::to_string(freed) + " slots of a live owner";
  });
  if (!during.empty()) {
    kill_and_reap(owner);
    return during;
  }
  return live_owner_survives_recovery(s, owner, 2);
}

verdict case_fd_limit_identity() {
  scratch s;
  // A fresh process at its fd limit allocates: it must fail clearly or
  // record its true identity, never one a recoverer would judge dead.
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t owner = ::fork();
  if (owner == 0) {
    ::close(fds[0]);
    try {
      i64_pool p = i64_pool::open(s.path, capacity);
      (void)exhaust_fd_limit();
      bool allocated = false;
      try {
        allocated = p.try_alloc().has_value();
      } catch (const shmpool::error&) {
      }
      write_all(fds[1], allocated ? "ok" : "no", 2);
      ::close(fds[1]);
      for (;;) ::pause();
    } catch (...) {
      ::_exit(2);
    }
  }
  ::close(fds[1]);
  char buf[2] = {};
  const bool got = read_reply(fds[0], buf);
  ::close(fds[0]);
  if (!got) {
    kill_and_reap(owner);
    return "the owner at its fd limit neither allocated nor refused";
  }
  if (buf[0] == 'n') {
    kill_and_reap(owner);
    return "";  // refused with an error: conservative
  }
  return live_owner_survives_recovery(s, owner, 1);
}

std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

// After exec the new image uses stable_reference_buffer (the old image did
// too) and keeps running; the slot the old image took stays held.
verdict case_exec_holding() {
  scratch s;
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  std::fflush(nullptr);
  const pid_t owner = ::fork();
  if (owner == 0) {
    ::close(fds[0]);
    i64_pool p = i64_pool::open(s.path, capacity);
    (void)p.try_alloc();
    stable_reference_buffer b(64);  // this image's registry
    const std::string exe = self_exe(), fd = std::to_string(fds[1]);
    ::execl(exe.c_str(), exe.c_str(), "--exec-stage", fd.c_str(), static_cast<char*>(nullptr));
    ::_exit(4);
  }
  ::close(fds[1]);
  char buf[256];
  std::string reply;
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  for (int i = 0; i < 10000; ++i) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0) reply.append(buf, static_cast<std::size_t>(n));
    if (n == 0 || reply.find('\n') != std::string::npos) break;
    if (n < 0) ::usleep(1000);
  }
  ::close(fds[0]);
  if (reply != "ok\n") {
    kill_and_reap(owner);
    return "after exec: " + (reply.empty() ? std::string("no answer") : reply);
  }
  return live_owner_survives_recovery(s, owner, 1);
}

// The image after exec: buffers must work; report, then wait to be killed.
[[noreturn]] void exec_stage(int fd) {
  const verdict v = buffers_work_or_registry_error();
  std::string reply = v.empty() ? "ok\n" : v + "\n";
  try {
    stable_reference_buffer b(8);
    (void)b;
  } catch (const std::exception& e) {
    reply = std::string("a buffer after exec: ") + e.what() + "\n";
  }
  write_all(fd, reply.data(), reply.size());
  ::close(fd);
  for (;;) ::pause();
}

// Threads of one process sleep in alloc() on a full pool when the process
// re-executes itself.  The new image keeps the identity (pid and start
// time) but not the threads: its recover_stale() must clear the entries
// the vanished sleepers left, so that stats().waiters reads 0 (issue 20,
// item 4).
constexpr int exec_sleepers = 4;

verdict case_exec_with_waiters() {
  scratch s;
  pid_t holder = -1;
  if (verdict v = start_holder(s, static_cast<int>(capacity), holder); !v.empty()) return v;  // the pool is full
  int fds[2];
  if (::pipe(fds) != 0) {
    kill_and_reap(holder);
    return "pipe failed";
  }
  std::fflush(nullptr);
  const pid_t sleeper = ::fork();
  if (sleeper == 0) {
    ::close(fds[0]);
    ::alarm(60);  // survives the exec: a stage that hangs dies
    static i64_pool p = i64_pool::open(s.path, capacity);
    for (int k = 0; k < exec_sleepers; ++k) std::thread([] { (void)p.alloc(); }).detach();
    for (int i = 0; i < 5000 && p.stats().waiters < exec_sleepers; ++i) ::usleep(1000);
    if (p.stats().waiters != exec_sleepers) {
      const std::string v = "only " + std::to_string(p.stats().waiters) + " of " + std::to_string(exec_sleepers) +
                            " threads registered asleep in alloc()\n";
      write_all(fds[1], v.data(), v.size());
      ::_exit(0);
    }
    const std::string exe = self_exe(), fd = std::to_string(fds[1]);
    ::execl(exe.c_str(), exe.c_str(), "--exec-waiters-stage", s.path.c_str(), fd.c_str(), static_cast<char*>(nullptr));
    ::_exit(4);
  }
  ::close(fds[1]);
  char buf[256];
  std::string reply;
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  for (int i = 0; i < 20000; ++i) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0) reply.append(buf, static_cast<std::size_t>(n));
    if (n == 0 || reply.find('\n') != std::string::npos) break;
    if (n < 0) ::usleep(1000);
  }
  ::close(fds[0]);
  verdict v;
  if (reply != "ok\n") v = "after exec: " + (reply.empty() ? std::string("no answer") : reply.substr(0, reply.size() - 1));
  if (v.empty()) {
    // Seen from another process too.
    i64_pool p = i64_pool::open(s.path, capacity);
    if (p.stats().waiters != 0)
      v = "after the new image's recovery another process reads stats().waiters = " +
          std::to_string(p.stats().waiters);
  }
  kill_and_reap(sleeper);
  kill_and_reap(holder);
  if (v.empty()) {
    i64_pool p = i64_pool::open(s.path, capacity);
    if (const std::size_t freed = p.recover_stale(); freed != capacity)
      v = "after the holder died, recovery freed " + std::to_string(freed) + " of its " + std::to_string(capacity) +
          " slots";
  }
  return v;
}

// The image after exec: the pool is still full and none of its threads
// waits; one recovery must leave no waiter entry of this identity.
[[noreturn]] void exec_waiters_stage(const char* path, int fd) {
  std::string reply;
  try {
    i64_pool p = i64_pool::open(path, capacity);
    const std::uint64_t before = p.stats().waiters;
    (void)p.recover_stale();
    const std::uint64_t after = p.stats().waiters;
    reply = after == 0 ? "ok\n"
                       : "stats().waiters reads " + std::to_string(before) + " before and " + std::to_string(after) +
                             " after recover_stale(), with no thread waiting\n";
  } catch (const std::exception& e) {
    reply = std::string("exception: ") + e.what() + "\n";
  }
  write_all(fd, reply.data(), reply.size());
  ::close(fd);
  for (;;) ::pause();
}

verdict case_shm_readonly() {
  return in_child([]() -> verdict {
    if (verdict v = enter_private_mounts(); !v.empty()) return v;
    if (verdict v = mount_shm("size=1m", MS_RDONLY); !v.empty()) return v;
    if (verdict v = buffers_work_or_registry_error(); !v.empty()) return v;
    try {
      (void)i64_pool::open("/dev/shm/shmpool-env-ro", capacity);
      return "creating a pool on a read-only /dev/shm succeeded";
    } catch (const shmpool::error&) {
      return "";
    }
  });
}

verdict case_shm_full() {
  return in_child([]() -> verdict {
    if (verdict v = enter_private_mounts(); !v.empty()) return v;
    if (verdict v = mount_shm("size=256k", 0); !v.empty()) return v;
    // Fill it.
    if (FILE* f = std::fopen("/dev/shm/filler", "w")) {
      std::vector<char> junk(4096, 'x');
      while (std::fwrite(junk.data(), 1, junk.size(), f) == junk.size() && std::fflush(f) == 0) {
      }
      std::fclose(f);
    }
    if (verdict v = buffers_work_or_registry_error(); !v.empty()) return v;
    try {
      (void)i64_pool::open("/dev/shm/shmpool-env-full", 100000);
      return "creating a pool larger than a full /dev/shm succeeded";
    } catch (const shmpool::error&) {
    }
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/dev/shm", ec))
      if (e.path().filename() != "filler") return "a failed create left " + e.path().string() + " behind";
    return "";
  });
}

verdict case_shm_name_taken_by_other_uid() {
  // The victim waits; another uid creates every name the registry could
  // derive from the victim's identity; then the victim uses buffers.
  int go[2];
  if (::pipe(go) != 0) return "pipe failed";
  std::fflush(nullptr);
  int result[2];
  if (::pipe(result) != 0) return "pipe failed";
  const pid_t victim = ::fork();
  if (victim == 0) {
    ::close(go[1]);
    ::close(result[0]);
    char c;
    (void)!::read(go[0], &c, 1);
    const verdict v = buffers_work();  // another user must not be able to deny the library
    write_all(result[1], v.data(), v.size());
    ::_exit(0);
  }
  ::close(go[0]);
  ::close(result[1]);
  const std::uint64_t id = shmpool::platform::proc_liveness::identity_of(victim);
  char name[96];
  std::snprintf(name, sizeof name, "/dev/shm/shmpool-srb-%016llx", static_cast<unsigned long long>(id));
  const verdict planted = in_child([&]() -> verdict {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)
      return std::string("skip: becoming uid 65534: ") + std::strerror(errno);
    const int fd = ::open(name, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0) return std::string("skip: planting ") + name + ": " + std::strerror(errno);
    ::close(fd);
    return "";
  });
  write_all(go[1], "g", 1);
  ::close(go[1]);
  std::string v;
  char buf[256];
  ssize_t n;
  while ((n = ::read(result[0], buf, sizeof buf)) > 0) v.append(buf, static_cast<std::size_t>(n));
  ::close(result[0]);
  stress::reap(victim);
  ::unlink(name);
  if (!planted.empty()) return planted;
  if (!v.empty()) return "with a name planted by another uid: " + v;
  return "";
}

// A process forks (every 2 ms, 16 times) while a thread of it is creating
// a large pool, and is killed right after; the fork children live on.  A
// later open must not wait for the unrelated children.
verdict case_fork_during_open() {
  scratch s;
  const std::string path = s.dir + "/big";
  constexpr std::uint64_t big = std::uint64_t{1} << 23;  // about 200 MiB: initialisation takes tens of ms
  constexpr int forks = 16;
  std::fflush(nullptr);
  int kids[2];
  if (::pipe(kids) != 0) return "pipe failed";
  const pid_t creator = ::fork();
  if (creator == 0) {
    ::close(kids[0]);
    std::thread t([&] {
      try {
        (void)i64_pool::open(path, big);
      } catch (...) {
      }
    });
    for (int k = 0; k < forks; ++k) {
      ::usleep(2000);
      const pid_t child = ::fork();
      if (child == 0) {
        ::close(kids[1]);
        ::sleep(30);
        ::_exit(0);
      }
      const int c = child;
      write_all(kids[1], &c, sizeof c);
    }
    ::close(kids[1]);
    t.join();
    for (;;) ::pause();
  }
  ::close(kids[1]);
  std::vector<int> children;
  int c = -1;
  while (::read(kids[0], &c, sizeof c) == sizeof c) children.push_back(c);
  ::close(kids[0]);
  kill_and_reap(creator);  // dies during (or after) the initialisation
  const verdict v = in_child([&]() -> verdict {
    try {
      i64_pool p = i64_pool::open(path, big);
      return p.check().empty() ? "" : "the pool opened after the creator died is unhealthy";
    } catch (const shmpool::error&) {
      return "";  // a clear refusal is acceptable; blocking is not
    }
  }, 15);
  for (const int child : children) ::kill(child, SIGKILL);
  return v.rfind("hung", 0) == 0 ? "open waited on a lock held by the creator's unrelated fork children (" + v + ")"
                                 : v;
}

// A thread (T1) opens a delay scope, releases a block inside it and exits;
// the scope outlives it (a scope may be closed on any thread).  glibc gives
// a joined thread's pthread_t to the next thread it makes: threads are made
// and joined until one (T2) has T1's id.  T2 opens a scope of its own and
// forks.  In the child only T2's scope may stay open (F3, issue 20 item 7):
// a block released there stays known until the child closes it, then both
// blocks are freed (is_known false), and with no scope open safe_get() of a
// sole holder is nullptr.  A dead thread's scope inherited through its
// reused id would keep both blocks parked for ever.
struct reused_id_trial {
  pthread_t dead{};
  stable_reference_buffer::delay_deallocation* dead_scope = nullptr;
  const void* dead_block = nullptr;
  bool reused = false;
  verdict v;
};

verdict child_of_a_reused_thread_id(const reused_id_trial& t, stable_reference_buffer::delay_deallocation* own_scope) {
  ::alarm(5);  // a registry operation that blocks fails the case (the child is killed)
  stable_reference_buffer x(32);
  const void* x_block = x.get();
  x.reset();
  if (!stable_reference_buffer::is_known(x_block)) return "a block released inside the forking thread's own scope was freed";
  if (!stable_reference_buffer::is_known(t.dead_block))
    return "a block released inside another thread's scope was freed before the forking thread's scope ended";
  delete own_scope;  // the child's last scope: everything pending goes
  if (stable_reference_buffer::is_known(x_block))
    return "a block released inside the forking thread's scope is still known after the child closed that scope: the "
           "dead thread's scope, whose pthread_t the forking thread reused, stays open in the child";
  if (stable_reference_buffer::is_known(t.dead_block))
    return "a block released inside the dead thread's scope is still known in the fork child (its scope was inherited)";
  stable_reference_buffer y(16);
  if (y.safe_get() != nullptr) return "safe_get() of a sole holder is not nullptr although no scope of the child is open";
  const void* y_block = y.get();
  y.reset();
  if (stable_reference_buffer::is_known(y_block)) return "a block released with no scope open is still known";
  return "";
}

verdict case_thread_id_reused_before_fork() {
  return in_child([]() -> verdict {
    static reused_id_trial t;
    pthread_t t1;
    if (::pthread_create(&t1, nullptr, [](void*) -> void* {
          t.dead = ::pthread_self();
          t.dead_scope = new stable_reference_buffer::delay_deallocation;  // outlives its thread
          stable_reference_buffer b(64);
          t.dead_block = b.get();
          b.reset();  // pending: the scope is open
          return nullptr;
        }, nullptr) != 0)
      return "pthread_create failed";
    ::pthread_join(t1, nullptr);
    for (int attempt = 0; attempt < 1000 && !t.reused; ++attempt) {
      pthread_t t2;
      if (::pthread_create(&t2, nullptr, [](void*) -> void* {
            if (!::pthread_equal(::pthread_self(), t.dead)) return nullptr;
            t.reused = true;
            auto* own = new stable_reference_buffer::delay_deallocation;
            // The child's verdict comes back through in_child's pipe.
            t.v = in_child([&]() -> verdict { return child_of_a_reused_thread_id(t, own); }, 10);
            delete own;
            return nullptr;
          }, nullptr) != 0)
        return "pthread_create failed";
      ::pthread_join(t2, nullptr);
    }
    if (!t.reused) return "skip: glibc gave no new thread the joined thread's pthread_t in 1000 tries";
    if (!stable_reference_buffer::is_known(t.dead_block)) return "the dead thread's open scope lost its block in the parent";
    delete t.dead_scope;
    if (stable_reference_buffer::is_known(t.dead_block)) return "the dead thread's block outlived its scope in the parent";
    return t.v.empty() ? "" : "fork child: " + t.v;
  });
}

struct env_case {
  const char* name;
  const char* what;
  verdict (*run)();
};

const env_case cases[] = {
    {"pthread_exit_main", "the owner's main thread called pthread_exit; a worker holds its slots", case_pthread_exit_main},
    {"time_namespace_owner", "the owner runs in a time namespace with another boot time", case_time_namespace_owner},
    {"time_namespace_recoverer", "the recoverer runs in a time namespace with another boot time",
     case_time_namespace_recoverer},
    {"hidepid", "the recoverer sees /proc mounted hidepid=2, as another uid", case_hidepid},
    {"fd_limit_recoverer", "the recoverer is at its fd limit", case_fd_limit_recoverer},
    {"fd_limit_identity", "a process at its fd limit allocates its first slot", case_fd_limit_identity},
    {"setns_time_namespace", "the recoverer joins another time namespace by setns after its first judgement",
     case_setns_time_namespace},
    {"exec_holding", "the owner re-executes itself holding a slot and a buffer", case_exec_holding},
    {"exec_with_waiters", "a process re-executes itself while its threads sleep in alloc() on a full pool",
     case_exec_with_waiters},
    {"shm_readonly", "/dev/shm is read-only", case_shm_readonly},
    {"shm_full", "/dev/shm is full", case_shm_full},
    {"shm_name_other_uid", "another uid created the registry name of the victim first", case_shm_name_taken_by_other_uid},
    {"fork_during_open", "a fork while a creator is inside open's initialisation, then the creator dies",
     case_fork_during_open},
    {"thread_id_reused_fork", "a thread forks with the pthread_t of a joined thread whose delay scope is open",
     case_thread_id_reused_before_fork},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--exec-stage") exec_stage(std::atoi(argv[2]));
  if (argc == 4 && std::string(argv[1]) == "--exec-waiters-stage") exec_waiters_stage(argv[2], std::atoi(argv[3]));
  std::string only, markdown;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--markdown" && i + 1 < argc) markdown = argv[++i];
    else if (a == "--list") {
      for (const env_case& c : cases) std::printf("%-26s %s\n", c.name, c.what);
      return 0;
    } else {
      std::fprintf(stderr, "usage: env_runner [--only CASE] [--markdown FILE] [--list]\n");
      return 64;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  // Orphans of a case (children of a killed creator) become ours, and are
  // reaped after each case rather than left as zombies.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  int passed = 0, failed = 0, skips = 0;
  std::string table =
      "# Real environments\n\n`env_runner`: each case with real processes, namespaces, mounts and limits.\n\n"
      "| case | environment | verdict |\n|---|---|---|\n";
  for (const env_case& c : cases) {
    if (!only.empty() && only != c.name) continue;
    const auto start = std::chrono::steady_clock::now();
    verdict v;
    try {
      v = c.run();
    } catch (const std::exception& e) {
      v = std::string("runner exception: ") + e.what();
    }
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const char* word = v.empty() ? "PASS" : skipped(v) ? "SKIP" : "FAIL";
    (v.empty() ? passed : skipped(v) ? skips : failed) += 1;
    std::printf("env: %-26s %s%s%s (%.1f s)\n", c.name, word, v.empty() ? "" : ": ", v.c_str(), secs);
    std::fflush(stdout);
    std::string cell = v.empty() ? "pass" : v;
    for (char& ch : cell)
      if (ch == '|' || ch == '\n') ch = ' ';
    table += std::string("| ") + c.name + " | " + c.what + " | " + (v.empty() ? "pass" : (skipped(v) ? "" : "FAIL: ") + cell) + " |\n";
  }
  table += "\n" + std::to_string(passed) + " passed, " + std::to_string(failed) + " failed, " + std::to_string(skips) +
           " skipped.\n";
  if (!markdown.empty()) stress::write_text_file(markdown, table);
  std::printf("env: %d passed, %d failed, %d skipped\n", passed, failed, skips);
  return failed != 0 ? 1 : (passed == 0 && skips != 0 ? 77 : 0);
}
