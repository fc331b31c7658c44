// The seed's "eventfd Integration": a consumer waits in poll(2) on the
// pool's eventfd; a producer (a forked child sharing an anonymous pool,
// "Anonymous (fork-inherited)") fills slots and notify()s.  The consumer
// wakes, drains the counter with eventfd_consume(), and reads the slots.
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>

#include "check.hpp"
#include <shmpool/pool.hpp>

int main() {
  auto pool = shmpool::i64_pool::anonymous(16);
  const int efd = pool.eventfd();  // non-blocking, CLOEXEC; inherited by fork
  CHECK(efd >= 0 && pool.fileno() == efd);
  CHECK(pool.eventfd_consume() == 0);  // nothing yet

  constexpr int messages = 3;
  const pid_t pid = ::fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    for (int m = 1; m <= messages; ++m) {
      const auto i = pool.alloc_set(100 + m);
      if (!i || !pool.notify()) std::_Exit(2);
      ::usleep(2000);
    }
    std::_Exit(0);  // the slots stay allocated: the parent takes them over below
  }

  std::uint64_t seen = 0;
  int wakeups = 0;
  while (seen < messages) {
    pollfd p{efd, POLLIN, 0};
    const int n = ::poll(&p, 1, 5000);
    CHECK(n == 1 && (p.revents & POLLIN) != 0);  // 5 s without a notify: fail
    seen += pool.eventfd_consume();
    ++wakeups;
  }
  CHECK(seen == messages);
  int status = 0;
  CHECK(::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);

  std::int64_t sum = 0;
  pool.each_allocated([&](shmpool::slot_index i) { sum += pool.get(i); });
  CHECK(sum == 101 + 102 + 103);
  CHECK(pool.recover_stale() == messages);  // the producer is gone
  std::printf("eventfd_poll: ok (%d notifications in %d wake-ups)\n", messages, wakeups);
  return 0;
}
