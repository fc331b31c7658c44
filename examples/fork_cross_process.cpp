// The seed's "Cross-process via fork": children open the same file-backed
// pool by path, each allocates a slot, writes its pid, and exits without
// freeing.  The parent sees every child's value, then recovers the slots of
// the dead children ("Crash recovery").
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "check.hpp"
#include <shmpool/pool.hpp>

int main() {
  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/shmpool-fork.XXXXXX";
  CHECK(::mkdtemp(tmpl) != nullptr);
  const fs::path path = fs::path(tmpl) / "ints.shm";

  auto ints = shmpool::i64_pool::open(path, 1000);
  constexpr int children = 4;
  std::set<long> pids;
  for (int c = 0; c < children; ++c) {
    const pid_t pid = ::fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      auto child = shmpool::i64_pool::open(path, 1000);  // same file, same parameters
      const auto i = child.alloc();
      if (!i) std::_Exit(2);
      child.set(*i, ::getpid());
      std::_Exit(0);  // exits holding the slot, as the seed's child does
    }
    pids.insert(pid);
  }
  for (int c = 0; c < children; ++c) {
    int status = 0;
    CHECK(::wait(&status) > 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }

  // Every child's slot is still allocated, owned by the child, holding its pid.
  const auto slots = ints.allocated_slots();
  CHECK(slots.size() == children);
  std::set<long> seen;
  for (const auto i : slots) {
    CHECK(ints.get(i) == ints.owner(i));
    seen.insert(static_cast<long>(ints.get(i)));
  }
  CHECK(seen == pids);

  // The children are dead (and reaped): recovery frees exactly their slots.
  CHECK(ints.recover_stale() == children);
  CHECK(ints.used() == 0);
  CHECK(ints.stats().recoveries == children);
  CHECK(ints.check().empty());

  std::printf("fork_cross_process: ok (%d children, %d slots recovered)\n", children, children);
  fs::remove_all(tmpl);
  return 0;
}
