// The seed's "memfd (fd-passable)": the parent creates a memfd pool and
// sends its fd over a Unix socket (SCM_RIGHTS) to a forked child, which did
// not inherit it; the child attaches with from_fd (the header is validated),
// allocates a slot, writes to it, and sends the index back.
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "check.hpp"
#include <shmpool/pool.hpp>

namespace {

void send_fd(int sock, int fd) {
  char byte = 'F';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  CHECK(::sendmsg(sock, &msg, 0) == 1);
}

int receive_fd(int sock) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  if (::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1) return -1;
  const cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == nullptr || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

// The child: receives the fd, attaches, allocates, writes, reports the index.
int child(int sock) {
  const int fd = receive_fd(sock);
  if (fd < 0) return 3;
  auto pool = shmpool::i64_pool::from_fd(fd);  // dups the fd; validates the header
  ::close(fd);
  const auto i = pool.alloc_set(4242);
  if (!i) return 4;
  const std::uint64_t idx = *i;
  return ::write(sock, &idx, sizeof idx) == sizeof idx ? 0 : 5;
}

}  // namespace

int main() {
  int sv[2];
  CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  const pid_t pid = ::fork();  // before the pool exists: the child cannot inherit it
  CHECK(pid >= 0);
  if (pid == 0) {
    ::close(sv[0]);
    std::_Exit(child(sv[1]));
  }
  ::close(sv[1]);

  auto pool = shmpool::i64_pool::memfd("my_pool", 100);
  CHECK(pool.memfd() >= 0);
  send_fd(sv[0], pool.memfd());

  std::uint64_t idx = ~std::uint64_t{0};
  CHECK(::read(sv[0], &idx, sizeof idx) == sizeof idx);
  int status = 0;
  CHECK(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  CHECK(pool.is_allocated(idx));
  CHECK(pool.get(idx) == 4242);
  CHECK(pool.owner(idx) == pid);   // recorded as the child's
  CHECK(pool.recover_stale() == 1);  // the child exited holding it
  CHECK(pool.used() == 0);
  std::printf("memfd_scm_rights: ok (child %d wrote slot %llu through the passed fd)\n", static_cast<int>(pid),
              static_cast<unsigned long long>(idx));
  ::close(sv[0]);
  return 0;
}
