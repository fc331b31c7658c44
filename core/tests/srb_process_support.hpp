// Real-process helpers for the stable_reference_buffer tests: run this test
// executable again as a fresh process image (exec), optionally after
// preparing a hostile environment in the child (a private mount namespace
// with a read-only, full or empty /dev/shm, another uid, a file limit).
// The helper test selected by the filter reads SRB_HELPER to know its part.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

extern char** environ;

namespace srb_support {

inline constexpr const char* helper_env = "SRB_HELPER";

// The helper's mode, or nullptr when this process is not a helper.
inline const char* helper_mode() { return std::getenv(helper_env); }

// Replaces this process image with this executable running only `filter`
// with SRB_HELPER=mode.  Returns only if exec failed.
inline void exec_self(const char* filter, const char* mode) {
  char exe[4096] = {};
  if (::readlink("/proc/self/exe", exe, sizeof exe - 1) <= 0) return;
  const std::string filter_arg = std::string("--gtest_filter=") + filter;
  const std::string env_kv = std::string(helper_env) + "=" + mode;
  std::vector<char*> envp;
  // Not the caller's GTEST_OUTPUT either: the helper image must not write
  // (or fail to open, at its fd limit) the caller's report file.
  for (char** e = environ; *e != nullptr; ++e)
    if (std::string(*e).rfind(std::string(helper_env) + "=", 0) != 0 && std::string(*e).rfind("GTEST_OUTPUT=", 0) != 0)
      envp.push_back(*e);
  envp.push_back(const_cast<char*>(env_kv.c_str()));
  envp.push_back(nullptr);
  // The helper test is DISABLED_ (a normal run neither runs it nor counts
  // it as passed); the helper image asks for it explicitly.
  char also_disabled[] = "--gtest_also_run_disabled_tests";
  char* argv[] = {exe, const_cast<char*>(filter_arg.c_str()), also_disabled, nullptr};
  ::execve(exe, argv, envp.data());
}

// Forks; the child runs setup() (false: exit 90), then execs the helper.
// Returns the helper's exit status (0 = its test passed), 100 + signal if
// it was killed, or 90/91 when setup or exec failed.
template <class Setup>
int run_helper(const char* filter, const char* mode, Setup&& setup) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(60);
    if (!setup()) ::_exit(90);
    exec_self(filter, mode);
    ::_exit(91);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

inline int run_helper(const char* filter, const char* mode) {
  return run_helper(filter, mode, [] { return true; });
}

// In a child: a private mount namespace whose /dev/shm is a fresh tmpfs
// mounted with `options` (e.g. "size=4k", "ro").  False if not permitted.
inline bool private_dev_shm(const char* options) {
  if (::unshare(CLONE_NEWNS) != 0) return false;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return false;
  const bool ro = std::string(options) == "ro";
  return ::mount("tmpfs", "/dev/shm", "tmpfs", ro ? MS_RDONLY : 0, ro ? nullptr : options) == 0;
}

// Fills the file system of `dir` (a tiny tmpfs) until writes fail.
inline bool fill_up(const char* dir) {
  const std::string path = std::string(dir) + "/filler";
  const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  static const char chunk[4096] = {};
  while (::write(fd, chunk, sizeof chunk) > 0) {
  }
  ::close(fd);
  return true;
}

// Names of /dev/shm entries that start with prefix.
inline std::vector<std::string> dev_shm_entries(const std::string& prefix) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (const dirent* e = ::readdir(d)) {  // NOLINT(concurrency-mt-unsafe): our own DIR
      const std::string name = e->d_name;
      if (name != "." && name != ".." && name.rfind(prefix, 0) == 0) out.push_back(name);
    }
    ::closedir(d);
  }
  return out;
}

}  // namespace srb_support
