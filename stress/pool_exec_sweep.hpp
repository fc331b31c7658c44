// Issue 20, verifier (b), pool half: the process re-executes itself at each
// crash point of the pool's operations (pool_crash_sweep --exec-at-pool-points).
//
// The operations and known pools of the crash sweep (crash_sweep_scenarios),
// on a memfd pool; the child arms crash point N with crash_action::exec_self
// and runs the operation.  At its Nth point the process execs
// /proc/self/exe (--exec-image): the same pid and start time, so the same
// identity, but none of the old image's threads or memory.  Two more
// scenarios have threads of the old image asleep in alloc() on a full pool
// when it execs (`alloc_wait+sleepers`, `free+sleepers`: three sleepers
// registered before the point is armed; in the second the free wakes them).
//
// The new image opens the pool (from_fd of an inherited descriptor) and:
//   X1  every problem check() reports is explained by what the old image
//       left: a slot in flight naming this pid (or one planted for a dead
//       owner), a waiter entry naming this process with no thread of this
//       image waiting, a tentative group mark (a scan in flight), or a
//       group marked full over a free slot (a free in flight, or the stale
//       mark planted for recover_stale and reset);
//   X2  release_owner(getpid()) frees exactly the slots whose words name
//       this identity, and afterwards no slot word and no waiter entry
//       names it and stats().waiters is 0 (item 4: everything the old image
//       left goes with it);
//   X3  check() afterwards reports nothing about this process (only marks
//       and planted dead owners, which recovery repairs).
// Every point runs twice: the new image releases at once, or first calls
// recover_stale(), which must free none of its (live) slots and must take
// every waiter entry of the earlier image (I7: no thread of this image
// waits), before release_owner.
// Then the sweeper (another process) checks, while the new image is a
// zombie: X4 no word and no waiter entry names it, stats().waiters is 0;
// and after recover_stale() and reaping, as the kill sweep does, the pool
// is whole (check() empty, used() exact, the parent's slots and data
// intact, fillable and emptied).  N advances until the operation completes.
#pragma once

#include <cstdint>
#include <string>

namespace stress {

struct pool_exec_figures {
  std::uint64_t points = 0;             // crash points at which a process re-executed itself
  std::uint64_t runs = 0;
  std::uint64_t runs_with_waiters = 0;  // the old image left waiter entries behind
  std::uint64_t slots_released = 0;     // by the new images' release_owner(getpid())
  std::uint64_t problems_explained = 0; // check() problems of the new images, all explained
  std::uint64_t failures = 0;
};

// Runs every operation; failures are printed as "[exec-sweep] FAIL ...".
// json: where to write the figures ("" for none).
pool_exec_figures run_pool_exec_sweep(const std::string& json);

// The new image (pool_crash_sweep --exec-image FD OUT release|recover):
// judges the pool of FD as X1-X3 need and writes its findings to OUT, then
// exits 0.  recover_first: recover_stale() before release_owner.
[[noreturn]] void pool_exec_image(int pool_fd, int out, bool recover_first);

}  // namespace stress
