// The registry half of the crash-point sweep: a process using
// stable_reference_buffer is killed at each registry crash point in turn
// (crash sites 60..66, platform/seam.hpp), first as a process that creates
// its registry (root segment published, dead segments swept), then as a
// fork child that inherits one (the child publishes its own segment from
// its fork handler), each alone and with a concurrent sweeper.
//
// The registry itself is process-private memory and dies with its process,
// so what a crash can damage is what outlives it: files in /dev/shm, and
// the processes that share the directory.  After every run:
//   S1  the victim left nothing but its root segment and one temporary, and
//       a root segment it left is a complete, self-consistent record
//       (link(2) publishes atomically: complete or absent);
//   S2  a victim that ran to the end left nothing at all (normal exit
//       removes its segment);
//   S3  one sweep while the victim is a zombie removes everything naming it,
//       and the planted segment of an earlier dead process;
//   S4  a live bystander's segment is never removed or changed, and its
//       counts, bytes and delay scope are intact (asked over a pipe);
//   S5  in the fork phase, the parent's counts and its own segment are
//       unchanged whatever happened to the child (snapshot isolation).
#pragma once

#include <cstdint>
#include <string>

namespace stress {

struct registry_sweep_figures {
  std::uint64_t attach_points = 0;  // crash points of a process creating its registry
  std::uint64_t fork_points = 0;    // crash points of a fork child inheriting one
  std::uint64_t runs = 0;
  std::uint64_t failures = 0;
};

// Runs the whole registry sweep; failures are printed as "[sweep] FAIL ...".
registry_sweep_figures run_registry_sweep();

}  // namespace stress
