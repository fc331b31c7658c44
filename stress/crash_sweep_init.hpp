// The pool-initialisation half of the crash-point sweep: a process opening a
// named pool is killed at each crash point of creation and open in turn
// (crash sites 70..77, platform/seam.hpp), for every way open can find the
// path, each alone and with a second opener racing it.
//
// What a creator's death may leave is the directory and the processes that
// wait on the path.  After every run:
//   P1  the victim died at its crash point, or completed with the expected
//       outcome (a pool, or a clear exceeds_backing error);
//   P2  the racing opener (if any) finished within the time limit with a
//       pool: a dead creator never blocks it and never hands it a broken file;
//   P3  open() by a survivor succeeds, its check() is empty, and it is the
//       pool the racing opener and a completed victim wrote to (one name,
//       one pool): never "bad magic", never a re-initialised pool;
//   P4  nothing else is in the directory but complete pools under a
//       temporary name (a creator killed between naming its complete pool
//       and publishing it); never an incomplete file; a refused creator
//       leaves a placeholder as it found it;
//   P5  after recover_stale() the pool is whole: every slot free, all of
//       them can be taken and given back.
#pragma once

#include <cstdint>

namespace stress {

struct init_sweep_figures {
  std::uint64_t points = 0;  // crash points of the victims, all scenarios
  std::uint64_t runs = 0;
  std::uint64_t leftovers = 0;  // complete pools left under a temporary name (P4)
  std::uint64_t failures = 0;
};

// Runs every scenario; failures are printed as "[sweep] FAIL ...".
init_sweep_figures run_init_sweep();

}  // namespace stress
