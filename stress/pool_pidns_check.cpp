// pool_pidns_check: a recoverer in another PID namespace must not free the
// slots of owners in this one (their identities carry another namespace
// tag, and certainly_dead answers "maybe alive"), while it still recovers
// the dead owners of its own namespace.  Needs root and a working
// `unshare --pid --fork --mount-proc`; exits 77 (ctest: skipped) otherwise.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "stress_util.hpp"

namespace {

constexpr int skipped = 77;

int fail(const char* what) {
  std::printf("[pidns] FAIL: %s\n", what);
  return 1;
}

// Inside the new namespace: recovery must free nothing of the outer
// namespace, then exactly the one slot a dead process of its own left.
int recover_inside(const char* path) {
  auto p = shmpool::i64_pool::open(path, 8);
  const std::size_t foreign = p.recover_stale();
  const pid_t child = ::fork();
  if (child == 0) ::_exit(p.try_alloc() ? 0 : 1);
  if (stress::reap(child) != 0) return fail("the inner helper could not allocate");
  const std::size_t own = p.recover_stale();
  std::printf("[pidns] inside pid namespace (pid %d): freed %zu outer slots, %zu of its own dead\n",
              static_cast<int>(::getpid()), foreign, own);
  return foreign == 0 && own == 1 ? 0 : 1;
}

bool unshare_works() {
  return ::getuid() == 0 && std::system("unshare --pid --fork --mount-proc true >/dev/null 2>&1") == 0;
}

int run_outside(const char* self) {
  if (!unshare_works()) {
    std::printf("[pidns] SKIP: needs root and `unshare --pid --fork --mount-proc` (uid %d)\n", static_cast<int>(::getuid()));
    return skipped;
  }
  const std::string path = "/dev/shm/shmpool-pidns-" + std::to_string(::getpid());
  std::filesystem::remove(path);
  auto p = shmpool::i64_pool::open(path, 8);
  const auto mine = *p.alloc();
  const pid_t live = ::fork();
  if (live == 0) {
    (void)p.alloc_n(2);
    ::pause();
    ::_exit(0);
  }
  while (p.used() < 3) ::usleep(1000);
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(p.try_alloc() ? 0 : 1);
  stress::reap(dead);  // one slot owned by a dead process of this namespace
  const std::string cmd = std::string("unshare --pid --fork --mount-proc ") + self + " --recover-inside " + path;
  const int inner = std::system(cmd.c_str());
  int rc = 0;
  if (inner != 0) rc = fail("the recoverer in the other namespace freed outer slots, or missed its own dead");
  if (p.used() != 4 || !p.is_allocated(mine)) rc = fail("outer slots changed under a foreign-namespace recoverer");
  if (p.recover_stale() != 1) rc = fail("this namespace did not recover its own dead owner's slot");
  ::kill(live, SIGKILL);
  stress::reap(live);
  if (p.recover_stale() != 2) rc = fail("the live worker's slots were not recovered once it died");
  p.free(mine);
  if (p.used() != 0 || !p.check().empty()) rc = fail("the pool is not empty and healthy at the end");
  std::filesystem::remove(path);
  if (rc == 0) std::printf("[pidns] PASS: a recoverer in another pid namespace left 3 live and 1 dead outer slots alone\n");
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--recover-inside") == 0) return recover_inside(argv[2]);
  return run_outside(argv[0]);
}
