// Helper for tools/tests/tool_test.sh: makes slots owned by live and by dead
// processes in an existing i64 pool, attaching to it by its header.
//   tool_test_helper die FILE      a child allocates one slot and exits without
//                                  freeing it; prints the slot and the dead pid
//   tool_test_helper hold FILE     allocates one slot, prints it, and sleeps
//                                  until killed
//   tool_test_helper hold-exec FILE  allocates one slot, prints it, then execs
//                                  `sleep 60`: the same process (pid and start
//                                  time) holds the slot, its image forgot it
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "shmpool/pool.hpp"

namespace {

shmpool::i64_pool attach(const char* path) {
  const int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    std::perror(path);
    std::_Exit(1);
  }
  auto p = shmpool::i64_pool::from_fd(fd);
  ::close(fd);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: tool_test_helper die|hold|hold-exec FILE\n");
    return 64;
  }
  const std::string mode = argv[1];
  if (mode == "hold" || mode == "hold-exec") {
    auto p = attach(argv[2]);
    const auto i = p.try_alloc();
    if (!i) return 1;
    std::printf("%llu %d\n", static_cast<unsigned long long>(*i), static_cast<int>(::getpid()));
    std::fflush(stdout);
    if (mode == "hold-exec") {
      ::execlp("sleep", "sleep", "60", static_cast<char*>(nullptr));
      return 1;
    }
    for (;;) ::pause();
  }
  if (mode == "die") {
    int pipefd[2];
    if (::pipe(pipefd) != 0) return 1;
    const pid_t child = ::fork();
    if (child < 0) return 1;
    if (child == 0) {
      auto p = attach(argv[2]);
      const auto i = p.try_alloc();
      const unsigned long long slot = i ? *i : ~0ULL;
      if (::write(pipefd[1], &slot, sizeof slot) != sizeof slot) std::_Exit(1);
      std::_Exit(0);  // dies holding the slot
    }
    ::close(pipefd[1]);  // so a child that dies early ends the read
    unsigned long long slot = 0;
    const bool got = ::read(pipefd[0], &slot, sizeof slot) == sizeof slot;
    int status = 0;
    ::waitpid(child, &status, 0);  // reaped: certainly dead
    if (!got || slot == ~0ULL) return 1;
    std::printf("%llu %d\n", slot, static_cast<int>(child));
    return 0;
  }
  std::fprintf(stderr, "tool_test_helper: unknown mode %s\n", mode.c_str());
  return 64;
}
