// The system-call seam: every call the core makes into the kernel goes
// through one of these wrappers, and nowhere else (scripts/check-seam).
//
// In a production build each wrapper is the bare call, inlined: nothing is
// paid.  In a fault build (SHMPOOL_FAULTS=ON, preset `faults`) every wrapper
// first asks the fault plan whether this call fails, and if so returns the
// call's own failure value with errno set, without entering the kernel.  The
// plan makes the Nth counted call fail with a chosen errno, or every counted
// call from the Nth on ("sticky"), optionally counting only one kind of call.
// The fault sweep (stress/fault_sweep.cpp) runs each scenario once to count
// its calls, then once per (call, errno) pair; see stress/README.md.
//
// The plan comes from arm_fault() or, at the first counted call, from the
// environment:
//   SHMPOOL_FAULT_AT=N          the Nth counted call fails (1-based; 0 or unset: none)
//   SHMPOOL_FAULT_ERRNO=E       errno to fail with: a number or a name (EMFILE, ENOSPC, ...)
//   SHMPOOL_FAULT_CALL=K        count only calls of kind K (a call_name: open, mmap, ...)
//   SHMPOOL_FAULT_STICKY=1      every counted call from the Nth on fails
//   SHMPOOL_FAULT_TRACE=FILE    append "<n> <kind>" for every counted call to FILE
//
// Wrappers keep the kernel's conventions (return -1 and set errno; mmap
// returns MAP_FAILED; posix_fallocate returns the error number) so that the
// code using them reads like the plain calls it replaces.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/vfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstddef>
#include <cstdint>

namespace shmpool::platform::sys {

// Every kind of call the seam routes.  Names (call_name) are stable: fault
// reports and replay commands use them.
enum class call : std::uint8_t {
  open,              // open(2), openat(2)
  close,             // close(2) (counted; never failed: a failed close leaks nothing we can act on)
  fstat,             // fstat(2)
  read,              // read(2), also of /proc files
  pread,             // pread(2)
  write,             // write(2)
  pwrite,            // pwrite(2)
  ftruncate,         // ftruncate(2)
  fallocate,         // posix_fallocate(3)
  mmap,              // mmap(2)
  munmap,            // munmap(2) (counted; never failed)
  madvise,           // madvise(2)
  msync,             // msync(2)
  flock,             // flock(2)
  fcntl,             // fcntl(2): dup, seals, record locks
  memfd_create,      // memfd_create(2)
  link,              // link(2), linkat(2)
  unlink,            // unlink(2)
  rename,            // rename(2)
  kill,              // kill(2) (the existence test)
  readlink,          // readlink(2)
  opendir,           // opendir(3) (directory scans)
  futex_wait,        // futex(2) FUTEX_WAIT
  futex_wake,        // futex(2) FUTEX_WAKE
  eventfd,           // eventfd(2)
  getrandom,         // getrandom(2)
  clock_gettime,     // clock_gettime(2)
  pipe,              // pipe2(2)
  process_vm_readv,  // process_vm_readv(2)
  // ---- added for pool lifecycle
  fstatat,           // fstatat(2): does a path still name the file we hold?
  statvfs,           // fstatvfs(3), fstatfs(2): free space of a backing's filesystem
  sysinfo,           // sysinfo(2): memory and swap, when /proc/meminfo is unreadable
  getrlimit,         // getrlimit(2): RLIMIT_FSIZE
  fchmod,            // fchmod(2): a pool replacing a placeholder keeps its mode
  count_             // number of kinds, not a kind
};

inline constexpr const char* call_names[] = {
    "open",   "close",  "fstat",        "read", "pread",  "write",   "pwrite",     "ftruncate",
    "fallocate", "mmap", "munmap",      "madvise", "msync", "flock", "fcntl",      "memfd_create",
    "link",   "unlink", "rename",       "kill", "readlink", "opendir", "futex_wait", "futex_wake",
    "eventfd", "getrandom", "clock_gettime", "pipe", "process_vm_readv",
    // ---- added for pool lifecycle
    "fstatat", "statvfs", "sysinfo", "getrlimit", "fchmod"};
static_assert(sizeof call_names / sizeof call_names[0] == static_cast<std::size_t>(call::count_));

constexpr const char* call_name(call c) noexcept { return call_names[static_cast<std::size_t>(c)]; }

#if defined(SHMPOOL_FAULTS)
inline constexpr bool faults_compiled_in = true;

// What the plan makes fail.  nth == 0 disarms (calls are still counted).
struct fault_plan {
  std::uint64_t nth = 0;
  int error = 0;
  bool only_one_kind = false;
  call kind = call::open;
  bool sticky = false;
};

void arm_fault(const fault_plan& plan) noexcept;  // resets the counts and the call log
std::uint64_t calls_counted() noexcept;           // counted calls since arming
std::uint64_t faults_injected() noexcept;         // failures injected since arming
int first_injected_kind() noexcept;               // the call kind of the first injected failure, or -1
// The kinds of the first counted calls since arming, in order (the sweep's
// counting run reads them to choose the errnos worth injecting at each N).
inline constexpr std::size_t call_log_capacity = 4096;
std::size_t logged_calls(call* out, std::size_t max) noexcept;
// Counts this call; true (with err set) if the plan makes it fail.
bool fault_fires(call c, int& err) noexcept;
#else
inline constexpr bool faults_compiled_in = false;
inline bool fault_fires(call, int&) noexcept { return false; }
#endif

// errno names the sweep and the environment variable accept ("EMFILE" -> 24);
// 0 for an unknown name.
int errno_from_name(const char* name) noexcept;
const char* errno_name(int err) noexcept;  // "EMFILE", or "E?" if unknown

// ---- the wrappers -------------------------------------------------------------
// Each: if the plan fires, set errno and return the call's failure value.

#define SHMPOOL_SYS_FAULT(kind, failure)                     \
  do {                                                       \
    int shmpool_fault_errno_ = 0;                            \
    if (fault_fires(call::kind, shmpool_fault_errno_)) {     \
      errno = shmpool_fault_errno_;                          \
      return failure;                                        \
    }                                                        \
  } while (false)

inline int open(const char* path, int flags, mode_t mode = 0) noexcept {
  SHMPOOL_SYS_FAULT(open, -1);
  return ::open(path, flags, mode);
}
inline int openat(int dirfd, const char* path, int flags, mode_t mode = 0) noexcept {
  SHMPOOL_SYS_FAULT(open, -1);
  return ::openat(dirfd, path, flags, mode);
}
inline int close(int fd) noexcept {
  int ignored = 0;
  (void)fault_fires(call::close, ignored);  // counted only
  return ::close(fd);
}
inline int fstat(int fd, struct stat* st) noexcept {
  SHMPOOL_SYS_FAULT(fstat, -1);
  return ::fstat(fd, st);
}
inline ssize_t read(int fd, void* buf, std::size_t n) noexcept {
  SHMPOOL_SYS_FAULT(read, -1);
  return ::read(fd, buf, n);
}
inline ssize_t pread(int fd, void* buf, std::size_t n, off_t off) noexcept {
  SHMPOOL_SYS_FAULT(pread, -1);
  return ::pread(fd, buf, n, off);
}
inline ssize_t write(int fd, const void* buf, std::size_t n) noexcept {
  SHMPOOL_SYS_FAULT(write, -1);
  return ::write(fd, buf, n);
}
inline ssize_t pwrite(int fd, const void* buf, std::size_t n, off_t off) noexcept {
  SHMPOOL_SYS_FAULT(pwrite, -1);
  return ::pwrite(fd, buf, n, off);
}
inline int ftruncate(int fd, off_t size) noexcept {
  SHMPOOL_SYS_FAULT(ftruncate, -1);
  return ::ftruncate(fd, size);
}
// Returns 0 or an error number, as posix_fallocate(3) does (never EINTR:
// retried here).
inline int fallocate(int fd, off_t offset, off_t len) noexcept {
  int injected = 0;
  if (fault_fires(call::fallocate, injected)) return injected;
  int rc;
  do {
    rc = ::posix_fallocate(fd, offset, len);
  } while (rc == EINTR);
  return rc;
}
inline void* mmap(void* addr, std::size_t len, int prot, int flags, int fd, off_t off) noexcept {
  SHMPOOL_SYS_FAULT(mmap, MAP_FAILED);
  return ::mmap(addr, len, prot, flags, fd, off);
}
inline int munmap(void* addr, std::size_t len) noexcept {
  int ignored = 0;
  (void)fault_fires(call::munmap, ignored);  // counted only
  return ::munmap(addr, len);
}
inline int madvise(void* addr, std::size_t len, int advice) noexcept {
  SHMPOOL_SYS_FAULT(madvise, -1);
  return ::madvise(addr, len, advice);
}
inline int msync(void* addr, std::size_t len, int flags) noexcept {
  SHMPOOL_SYS_FAULT(msync, -1);
  return ::msync(addr, len, flags);
}
inline int flock(int fd, int op) noexcept {
  SHMPOOL_SYS_FAULT(flock, -1);
  return ::flock(fd, op);
}
inline int fcntl(int fd, int cmd, long arg = 0) noexcept {
  SHMPOOL_SYS_FAULT(fcntl, -1);
  return ::fcntl(fd, cmd, arg);
}
inline int fcntl_lock(int fd, int cmd, struct flock* lock) noexcept {
  SHMPOOL_SYS_FAULT(fcntl, -1);
  return ::fcntl(fd, cmd, lock);
}
inline int memfd_create(const char* name, unsigned flags) noexcept {
  SHMPOOL_SYS_FAULT(memfd_create, -1);
  return ::memfd_create(name, flags);
}
inline int link(const char* from, const char* to) noexcept {
  SHMPOOL_SYS_FAULT(link, -1);
  return ::link(from, to);
}
inline int linkat(int fromdir, const char* from, int todir, const char* to, int flags) noexcept {
  SHMPOOL_SYS_FAULT(link, -1);
  return ::linkat(fromdir, from, todir, to, flags);
}
inline int unlink(const char* path) noexcept {
  SHMPOOL_SYS_FAULT(unlink, -1);
  return ::unlink(path);
}
inline int rename(const char* from, const char* to) noexcept {
  SHMPOOL_SYS_FAULT(rename, -1);
  return ::rename(from, to);
}
inline int kill(pid_t pid, int sig) noexcept {
  SHMPOOL_SYS_FAULT(kill, -1);
  return ::kill(pid, sig);
}
inline ssize_t readlink(const char* path, char* buf, std::size_t n) noexcept {
  SHMPOOL_SYS_FAULT(readlink, -1);
  return ::readlink(path, buf, n);
}
inline DIR* opendir(const char* path) noexcept {
  SHMPOOL_SYS_FAULT(opendir, nullptr);
  return ::opendir(path);
}
// FUTEX_WAIT on a shared (not FUTEX_PRIVATE) word; returns the raw result.
inline long futex_wait(int* word, int expected, const timespec* timeout) noexcept {
  SHMPOOL_SYS_FAULT(futex_wait, -1);
  return ::syscall(SYS_futex, word, FUTEX_WAIT, expected, timeout, nullptr, 0);
}
inline long futex_wake(int* word, int count) noexcept {
  SHMPOOL_SYS_FAULT(futex_wake, -1);
  return ::syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
}
inline int eventfd(unsigned initval, int flags) noexcept {
  SHMPOOL_SYS_FAULT(eventfd, -1);
  return ::eventfd(initval, flags);
}
inline ssize_t getrandom(void* buf, std::size_t n, unsigned flags) noexcept {
  SHMPOOL_SYS_FAULT(getrandom, -1);
  return ::getrandom(buf, n, flags);
}
inline int clock_gettime(clockid_t clock, timespec* ts) noexcept {
  SHMPOOL_SYS_FAULT(clock_gettime, -1);
  return ::clock_gettime(clock, ts);
}
inline int pipe2(int fds[2], int flags) noexcept {
  SHMPOOL_SYS_FAULT(pipe, -1);
  return ::pipe2(fds, flags);
}
// Through syscall(2): sanitizers intercept the libc wrapper and would
// report a deliberate probe of unmapped memory.
inline long process_vm_readv(pid_t pid, const iovec* local, unsigned long nlocal, const iovec* remote,
                             unsigned long nremote) noexcept {
  SHMPOOL_SYS_FAULT(process_vm_readv, -1);
  return ::syscall(SYS_process_vm_readv, pid, local, nlocal, remote, nremote, 0UL);
}
inline long raw_write(int fd, const void* buf, std::size_t n) noexcept {  // write(2) through syscall(2), see above
  SHMPOOL_SYS_FAULT(write, -1);
  return ::syscall(SYS_write, fd, buf, n);
}

// ---- added for pool lifecycle
inline int fstatat(int dirfd, const char* path, struct stat* st, int flags) noexcept {
  SHMPOOL_SYS_FAULT(fstatat, -1);
  return ::fstatat(dirfd, path, st, flags);
}
inline int fstatvfs(int fd, struct statvfs* st) noexcept {
  SHMPOOL_SYS_FAULT(statvfs, -1);
  return ::fstatvfs(fd, st);
}
inline int fstatfs(int fd, struct statfs* st) noexcept {
  SHMPOOL_SYS_FAULT(statvfs, -1);
  return ::fstatfs(fd, st);
}
inline int sysinfo(struct sysinfo* info) noexcept {
  SHMPOOL_SYS_FAULT(sysinfo, -1);
  return ::sysinfo(info);
}
// decltype: glibc's C++ declaration takes an enum, others an int.
inline int getrlimit(decltype(RLIMIT_FSIZE) resource, struct rlimit* limit) noexcept {
  SHMPOOL_SYS_FAULT(getrlimit, -1);
  return ::getrlimit(resource, limit);
}
inline int fchmod(int fd, mode_t mode) noexcept {
  SHMPOOL_SYS_FAULT(fchmod, -1);
  return ::fchmod(fd, mode);
}

#undef SHMPOOL_SYS_FAULT

}  // namespace shmpool::platform::sys
