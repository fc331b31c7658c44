// proc_liveness: owner identities from /proc, and the "certainly dead" test.
// The rule and its reasons are in liveness.hpp and core/PROTOCOL.md; every
// system call goes through platform::sys.
#include "shmpool/platform/liveness.hpp"

#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "shmpool/error.hpp"
#include "shmpool/platform/sys.hpp"

namespace shmpool::platform {

constinit proc_liveness::self_cache proc_liveness::cache_{};
static_assert(sizeof(proc_liveness::self_cache) == 4096, "the cache must own its page: the whole page is wiped on fork");

namespace {

constexpr std::uint64_t tag_known = std::uint64_t{1} << 63;
constexpr std::uint32_t proc_ours = 1, proc_foreign = 2;

// Why a read of /proc failed: the file and the errno (0: unparsable).
struct failure {
  const char* what = "";
  int err = 0;
};

// Reads a whole /proc file into buf (NUL-terminated).  False on any error,
// including a file that does not fit: a partial read is never parsed.
bool read_whole(const char* path, char* buf, std::size_t cap, failure& f) noexcept {
  f.what = path;
  const int fd = sys::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    f.err = errno;
    return false;
  }
  std::size_t n = 0;
  for (;;) {
    if (n + 1 >= cap) {  // no room left to see the end of the file
      f.err = EOVERFLOW;
      sys::close(fd);
      return false;
    }
    const ssize_t got = sys::read(fd, buf + n, cap - 1 - n);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      f.err = errno;
      sys::close(fd);
      return false;
    }
    if (got == 0) break;
    n += static_cast<std::size_t>(got);
  }
  sys::close(fd);
  buf[n] = '\0';
  return true;
}

// The fields of /proc/<pid>/stat that liveness needs.
struct stat_fields {
  long long pid = 0;          // field 1
  char state = '?';           // field 3
  long long num_threads = 0;  // field 20
  long long start_ticks = 0;  // field 22, shifted by the reader's boottime offset
};

// One decimal field (optionally negative) followed by a space or the end of
// the line.  Advances p past the separator.
bool parse_number(const char*& p, long long& out) noexcept {
  bool negative = false;
  if (*p == '-') {
    negative = true;
    ++p;
  }
  if (*p < '0' || *p > '9') return false;
  unsigned long long v = 0;
  while (*p >= '0' && *p <= '9') v = v * 10 + static_cast<unsigned>(*p++ - '0');
  if (*p != ' ' && *p != '\n' && *p != '\0') return false;
  if (*p == ' ') ++p;
  out = negative ? -static_cast<long long>(v) : static_cast<long long>(v);
  return true;
}

// Every field through 22 must parse; the command name (field 2) may hold
// spaces and ')', so the fields after it start after the last ')'.
bool parse_stat(const char* buf, stat_fields& st) noexcept {
  const char* p = buf;
  if (!parse_number(p, st.pid)) return false;
  const char* close = std::strrchr(p, ')');
  if (close == nullptr || close[1] != ' ' || close[2] == '\0' || close[3] != ' ') return false;
  st.state = close[2];
  p = close + 4;
  for (int field = 4; field <= 22; ++field) {
    long long v = 0;
    if (!parse_number(p, v)) return false;
    if (field == 20) st.num_threads = v;
    if (field == 22) st.start_ticks = v;
  }
  return true;
}

bool read_stat(const char* path, stat_fields& st, failure& f) noexcept {
  char buf[2048];
  if (!read_whole(path, buf, sizeof buf, f)) return false;
  if (!parse_stat(buf, st)) {
    f.err = 0;  // read, but not what the kernel writes
    return false;
  }
  return true;
}

// 10 bits of a hash of this process's pid namespace ("pid:[4026531836]").
// Needs no fd, so it works at the fd limit.
bool self_tag(std::uint64_t& tag, failure& f) noexcept {
  const std::uint64_t cached = proc_liveness::cache_.ns_tag.load(std::memory_order_relaxed);
  if (cached != 0) {
    tag = cached & ~tag_known;
    return true;
  }
  char link[128];
  // thread-self: /proc/self/ns/ is unreadable once the leader has called
  // pthread_exit, and every thread of a process shares its pid namespace.
  const ssize_t n = sys::readlink("/proc/thread-self/ns/pid", link, sizeof link);
  if (n <= 0 || static_cast<std::size_t>(n) >= sizeof link) {
    f = {"/proc/thread-self/ns/pid", n < 0 ? errno : EOVERFLOW};
    return false;
  }
  std::uint64_t h = 14695981039346656037ULL;
  for (ssize_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(link[i])) * 1099511628211ULL;
  tag = h & ((1u << identity_tag_bits) - 1);
  proc_liveness::cache_.ns_tag.store(tag | tag_known, std::memory_order_relaxed);
  return true;
}

long ticks_per_second() noexcept {
  static const long hz = [] {
    const long v = ::sysconf(_SC_CLK_TCK);  // from the auxiliary vector: no system call
    return v > 0 ? v : 100;
  }();
  return hz;
}

// ---- the boot-time offset (liveness.hpp, "TIME NAMESPACES") ----------------------
//
// /proc/<pid>/stat shows start times shifted by the boottime offset of the
// *reading thread's* time namespace.  That namespace can change under a
// running process: setns(CLONE_NEWTIME) moves a single-threaded caller
// itself (issue 20, item 5).  So an offset is kept only together with the
// namespace it belongs to, and every use first asks which namespace this
// thread is in now (one readlink, no descriptor): an offset is never used
// in another namespace than its own.
//
// /proc/self/timens_offsets describes the namespace of the process's future
// *children* (time_for_children, what unshare(CLONE_NEWTIME) changes), not
// necessarily its own: it is read only while /proc/self/ns/time_for_children
// names the namespace this thread is in, checked before and after the read.
// A namespace's offsets are frozen once a task has entered it, and ours has
// one (us), so such a read is the offset of our namespace.

// The initial time namespace: its inode number is fixed (PROC_TIME_INIT_INO,
// in the UAPI as TIME_NS_INIT_INO since Linux 6.x) and its offsets are 0 and
// can never be written.
constexpr std::uint64_t initial_time_namespace = 0xEFFFFFFAu;

// The inode number of a time namespace link ("time:[4026531834]").  ENOENT
// on /proc/thread-self/ns/time (a kernel without time namespaces) gives 0
// and true: the caller decides what that means.
bool time_namespace_of(const char* link_path, std::uint64_t& ino, failure& f) noexcept {
  char link[64];
  const ssize_t n = sys::readlink(link_path, link, sizeof link - 1);
  if (n < 0 && errno == ENOENT) {
    ino = 0;
    return true;
  }
  if (n <= 0) {
    f = {link_path, n < 0 ? errno : 0};
    return false;
  }
  link[n] = '\0';
  const char* open = std::strchr(link, '[');
  char* end = nullptr;
  ino = open == nullptr ? 0 : std::strtoull(open + 1, &end, 10);
  if (ino == 0 || end == nullptr || *end != ']' || ino > 0xFFFFFFFFu) {
    f = {link_path, 0};  // not what the kernel writes
    return false;
  }
  return true;
}

// The offset cache: one word, so that the namespace and its offset are
// always read and written together.
//   bit 63       set: the word holds an offset
//   bits 62..30  inode number of the time namespace (0: none, a kernel without them)
//   bits 29..0   the offset in ticks, modulo 2^30: start times are kept to
//                30 bits (identity_start_mask), so that is all a comparison uses
// Not in the wipe-on-fork page: a fork child starts in its parent's
// time_for_children, which the key tells apart, and a child that can no
// longer read timens_offsets (its leader called pthread_exit) still finds
// the offset of the namespace it shares with its parent.
constexpr std::uint64_t offset_held = std::uint64_t{1} << 63;
std::atomic<std::uint64_t> g_offset{0};

constexpr std::uint64_t offset_word(std::uint64_t ns, std::int64_t ticks) noexcept {
  return offset_held | (ns << identity_start_bits) | (static_cast<std::uint64_t>(ticks) & identity_start_mask);
}
constexpr std::uint64_t offset_namespace(std::uint64_t word) noexcept {
  return (word & ~offset_held) >> identity_start_bits;
}
constexpr std::int64_t offset_ticks(std::uint64_t word) noexcept {
  return static_cast<std::int64_t>(word & identity_start_mask);
}

// Parses timens_offsets' boottime line into ticks (floored, as the kernel
// rounds start times).  False if the line is missing or malformed.
bool parse_boottime(const char* buf, std::int64_t& ticks) noexcept {
  const char* line = std::strstr(buf, "boottime");
  long long sec = 0, nsec = 0;
  if (line == nullptr || std::sscanf(line, "boottime %lld %lld", &sec, &nsec) != 2 || nsec < 0 ||
      nsec >= 1'000'000'000)
    return false;
  const long long ns_per_tick = 1'000'000'000LL / ticks_per_second();
  const long long total_ns = sec * 1'000'000'000LL + nsec;
  ticks = total_ns / ns_per_tick - (total_ns % ns_per_tick < 0 ? 1 : 0);
  return true;
}

// This thread's boottime offset in ticks, modulo 2^30.  False ("maybe
// alive" for a judge) when it cannot be known for the namespace this thread
// is in now.  A kernel without time namespaces (no ns/time link, no
// timens_offsets): offset 0, but only once /proc itself is known readable
// (the caller has just read a stat).
bool read_boot_offset(std::int64_t& ticks, failure& f) noexcept {
  std::uint64_t ns = 0;
  if (!time_namespace_of("/proc/thread-self/ns/time", ns, f)) return false;
  if (const std::uint64_t w = g_offset.load(std::memory_order_acquire); w != 0 && offset_namespace(w) == ns) {
    ticks = offset_ticks(w);
    return true;
  }
  std::int64_t offset = 0;
  if (ns == initial_time_namespace) {
    offset = 0;
  } else {
    // timens_offsets shows the leader's time_for_children: only while that
    // is our namespace, before and after the read, is it ours.
    constexpr const char* offsets_path = "/proc/self/timens_offsets";
    constexpr const char* children_path = "/proc/self/ns/time_for_children";
    std::uint64_t children = 0;
    if (ns != 0 && !time_namespace_of(children_path, children, f)) return false;
    if (children != ns) {  // after unshare(CLONE_NEWTIME), or the leader is gone (the link is absent)
      f = {children_path, 0};
      return false;
    }
    char buf[512];
    if (!read_whole(offsets_path, buf, sizeof buf, f)) {
      if (f.err != ENOENT || ns != 0) return false;
      offset = 0;  // no time namespaces
    } else if (ns == 0 || !parse_boottime(buf, offset)) {
      f = {offsets_path, 0};  // empty (the leader is gone), or not what the kernel writes
      return false;
    } else if (!time_namespace_of(children_path, children, f) || children != ns) {
      f = {children_path, 0};  // changed under the read
      return false;
    }
  }
  const std::uint64_t w = offset_word(ns, offset);
  g_offset.store(w, std::memory_order_release);
  ticks = offset_ticks(w);
  return true;
}

#if defined(SHMPOOL_MUTANT_TIMENS_OFFSET_CACHED)
// Mutant (the defect of issue 20, item 5): the first offset found is kept
// for the process's life, refreshed only in a fork child, whatever
// namespace setns moves the process into.
std::atomic<std::uint64_t> g_mutant_offset{0};
[[maybe_unused]] const bool g_mutant_offset_forgotten_in_child =
    ::pthread_atfork(nullptr, nullptr, [] { g_mutant_offset.store(0, std::memory_order_relaxed); }) == 0;

bool self_boot_offset(std::int64_t& ticks, failure& f) noexcept {
  if (const std::uint64_t w = g_mutant_offset.load(std::memory_order_acquire); w != 0) {
    ticks = offset_ticks(w);
    return true;
  }
  if (!read_boot_offset(ticks, f)) return false;
  g_mutant_offset.store(offset_word(0, ticks), std::memory_order_release);
  return true;
}
#else
bool self_boot_offset(std::int64_t& ticks, failure& f) noexcept { return read_boot_offset(ticks, f); }
#endif

std::uint64_t normalised(const stat_fields& st, std::int64_t offset) noexcept {
#if defined(SHMPOOL_MUTANT_NO_TIMENS_OFFSET)
  // Mutant: start times as this reader's time namespace shows them.
  (void)offset;
  return static_cast<std::uint64_t>(st.start_ticks) & identity_start_mask;
#else
  return static_cast<std::uint64_t>(st.start_ticks - offset) & identity_start_mask;
#endif
}

// Computes and caches this process's identity; 0 (nothing cached) on failure.
std::uint64_t compute_self(failure& f) noexcept {
  std::uint64_t tag = 0;
  stat_fields st;
  std::int64_t offset = 0;
  if (!self_tag(tag, f) || !read_stat("/proc/self/stat", st, f) || !self_boot_offset(offset, f)) return 0;
  const pid_t pid = ::getpid();
  // /proc/self follows us into any mount; /proc/<pid> names our process only
  // when /proc was mounted for our pid namespace.  Judging needs the latter.
  proc_liveness::cache_.proc_is_ours.store(st.pid == pid ? proc_ours : proc_foreign, std::memory_order_relaxed);
  const std::uint64_t id = make_identity(tag, static_cast<std::uint64_t>(pid), normalised(st, offset));
  proc_liveness::cache_.identity.store(id, std::memory_order_relaxed);
  return id;
}

bool transient(int err) noexcept { return err == EINTR || err == EAGAIN || err == EMFILE || err == ENFILE || err == ENOMEM; }

// Fallback when the cache page cannot be wiped on fork: forget everything in
// the child.  Registered at load, so only handlers registered by code that
// ran earlier still precede it (liveness.hpp, "OWN IDENTITY").
void forget_in_child() noexcept {
  auto& c = proc_liveness::cache_;
  c.identity.store(0, std::memory_order_relaxed);
  c.ns_tag.store(0, std::memory_order_relaxed);
  c.proc_is_ours.store(0, std::memory_order_relaxed);
}

bool g_wiped_on_fork = false;

// At library load, before user code can fork: mark the cache page and
// compute the identity once (a failure here is not fatal: self() retries).
[[maybe_unused]] const bool g_prepared_at_load = [] {
  g_wiped_on_fork = sys::madvise(&proc_liveness::cache_, sizeof proc_liveness::cache_, MADV_WIPEONFORK) == 0;
  if (!g_wiped_on_fork) ::pthread_atfork(nullptr, nullptr, forget_in_child);
  (void)proc_liveness::try_self();
  return true;
}();

}  // namespace

bool proc_liveness::cache_wiped_on_fork() noexcept { return g_wiped_on_fork; }

std::uint64_t proc_liveness::try_self() noexcept {
  const std::uint64_t cached = cache_.identity.load(std::memory_order_relaxed);
  if (cached != 0) return cached;
  failure f;
  return compute_self(f);
}

std::uint64_t proc_liveness::self_slow() {
  failure f;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (const std::uint64_t id = compute_self(f); id != 0) return id;
    if (!transient(f.err)) break;
  }
  const std::string why = f.err != 0 ? std::strerror(f.err) : "unexpected contents";
  throw error(make_error_code(errc::identity_unavailable),
              std::string("shmpool: cannot determine this process's owner identity: ") + f.what + ": " + why);
}

std::uint64_t proc_liveness::identity_of(pid_t pid) noexcept {
  if (pid <= 0 || try_self() == 0) return 0;
  if (cache_.proc_is_ours.load(std::memory_order_relaxed) != proc_ours) return 0;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  stat_fields st;
  failure f;
  std::uint64_t tag = 0;
  std::int64_t offset = 0;
  if (!self_tag(tag, f) || !read_stat(path, st, f) || !self_boot_offset(offset, f)) return 0;
  return make_identity(tag, static_cast<std::uint64_t>(pid), normalised(st, offset));
}

verdict proc_liveness::judge(std::uint64_t identity) noexcept {
  const pid_t pid = identity_pid(identity);
  if (pid <= 0) return verdict::unknown;  // names nobody: cannot judge
#if defined(SHMPOOL_MUTANT_PID_ONLY_LIVENESS)
  // Defect: trust the pid alone (wrong after PID reuse, and for zombies).
  return sys::kill(pid, 0) == -1 && errno == ESRCH ? verdict::dead : verdict::alive;
#else
  failure f;
  std::uint64_t tag = 0;
  if (!self_tag(tag, f)) return verdict::unknown;
  if (identity_ns_tag(identity) != tag) return verdict::other_namespace;
  // 1. The existence test.  EPERM: the pid exists (another user's process).
  if (sys::kill(pid, 0) == -1) {
    if (errno == ESRCH) return verdict::dead;
    if (errno != EPERM) return verdict::unknown;
  }
  // 2. The stat, read whole, of a /proc that is ours.
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  stat_fields st;
  std::int64_t offset = 0;
#if defined(SHMPOOL_MUTANT_STAT_FAILURE_IS_DEATH)
  // Mutant: a stat that cannot be read (EMFILE, hidepid, no /proc) means dead.
  if (!read_stat(path, st, f)) return verdict::dead;
#endif
  if (!read_stat(path, st, f) || st.pid != pid) return verdict::unknown;
  if (try_self() == 0 || cache_.proc_is_ours.load(std::memory_order_relaxed) != proc_ours) return verdict::unknown;
  if (!self_boot_offset(offset, f)) return verdict::unknown;
  // 3. Another start time: the pid was reused.
  if (!same_start(normalised(st, offset), identity_start(identity))) return verdict::dead;
  // 4. Exited, not yet reaped; a leader in Z with threads left is alive.
  if (st.state == 'X' || st.state == 'x') return verdict::dead;
#if defined(SHMPOOL_MUTANT_ZOMBIE_LEADER_DEAD)
  if (st.state == 'Z') return verdict::dead;  // Mutant: a leader that called pthread_exit counts as dead
#endif
  if (st.state == 'Z' && st.num_threads <= 1) return verdict::dead;
  return verdict::alive;
#endif
}

}  // namespace shmpool::platform
