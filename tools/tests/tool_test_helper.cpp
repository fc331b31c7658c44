// Helper for tools/tests/tool_test.sh: makes slots owned by live and by dead
// processes in an existing i64 pool, attaching to it by its header.
//   tool_test_helper die FILE      a child allocates one slot and exits without
//                                  freeing it; prints the slot and the dead pid
//   tool_test_helper hold FILE     allocates one slot, prints it, and sleeps
//                                  until killed
//   tool_test_helper hold-exec FILE  allocates one slot, prints it, then execs
//                                  `sleep 60`: the same process (pid and start
//                                  time) holds the slot, its image forgot it
//   tool_test_helper hold-named FILE HEX  renames itself (prctl PR_SET_NAME)
//                                  to the bytes HEX (at most 15, no NUL), then
//                                  does what hold does
//   tool_test_helper die-str FILE  as die, in a str pool, the string "hello"
//                                  set in the slot
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "shmpool/pool.hpp"

namespace {

template <class Pool = shmpool::i64_pool>
Pool attach(const char* path) {
  const int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    std::perror(path);
    std::_Exit(1);
  }
  auto p = Pool::from_fd(fd);
  ::close(fd);
  return p;
}

// The bytes HEX spells ("41ff" -> "A\xff"); empty if it is not hex.
std::string unhex(const char* hex) {
  std::string out;
  for (; hex[0] != 0 && hex[1] != 0; hex += 2) {
    const char pair[3] = {hex[0], hex[1], 0};
    char* end = nullptr;
    out += static_cast<char>(std::strtoul(pair, &end, 16));
    if (end != pair + 2) return "";
  }
  return hex[0] == 0 ? out : "";
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (argc != (mode == "hold-named" ? 4 : 3)) {
    std::fprintf(stderr, "usage: tool_test_helper die|die-str|hold|hold-exec FILE | hold-named FILE HEX\n");
    return 64;
  }
  if (mode == "hold-named") {
    const std::string name = unhex(argv[3]);
    if (name.empty() || name.size() > 15 || name.find('\0') != std::string::npos) {
      std::fprintf(stderr, "tool_test_helper: the name must be 1..15 bytes, no NUL, in hex\n");
      return 64;
    }
    char comm[16] = {};
    std::memcpy(comm, name.data(), name.size());
    if (::prctl(PR_SET_NAME, comm, 0, 0, 0) != 0) return 1;
  }
  if (mode == "hold" || mode == "hold-exec" || mode == "hold-named") {
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
  if (mode == "die" || mode == "die-str") {
    int pipefd[2];
    if (::pipe(pipefd) != 0) return 1;
    const pid_t child = ::fork();
    if (child < 0) return 1;
    if (child == 0) {
      std::optional<shmpool::slot_index> i;
      if (mode == "die-str") {
        auto p = attach<shmpool::str_pool>(argv[2]);
        i = p.try_alloc();
        if (i) p.set(*i, "hello");
      } else {
        auto p = attach(argv[2]);
        i = p.try_alloc();
      }
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
