// The registry half of the crash-point sweep: a process using
// stable_reference_buffer is killed at each registry crash point in turn
// (crash sites 60, 61, 67, 68, 69 in platform/seam.hpp), first as a process
// that creates its registry (publishes its anchor page), then as a fork
// child that inherits one, then as a process that re-executed itself while
// its old image held blocks (the new image makes its own registry).
//
// The registry and its anchor page are process-private memory and die with
// their process; nothing is written outside it.  What a crash could damage
// is another process.  After every run:
//   S1  the victim left nothing in /dev/shm (no file carries its identity,
//       as format 1's root segment and temporaries did);
//   S2  a victim that ran to the end got every result right, and its
//       anchor still led to its registry;
//   S3  in the fork phase, the parent's counts, bytes and anchor are
//       unchanged whatever happened to the child (snapshot isolation);
//   S4  a live bystander's counts, bytes, delay scope and anchor are intact
//       (asked over a pipe), and its normal exit leaves nothing.
#pragma once

#include <cstdint>
#include <string>

namespace stress {

struct registry_sweep_figures {
  std::uint64_t attach_points = 0;  // crash points of a process creating its registry
  std::uint64_t fork_points = 0;    // crash points of a fork child inheriting one
  std::uint64_t exec_points = 0;    // crash points of a re-executed image making its own
  std::uint64_t runs = 0;
  std::uint64_t failures = 0;
};

// Every registry path with a crash site, in this process: the anchor's
// publication (on first use), insert, last release outside and inside a
// delay scope, re-adoption of a parked block, exclusive append.  True if
// every result was right and the anchor still leads to this registry.
bool use_the_registry();
// This process's anchor page leads to the registry this copy uses.
bool anchor_leads_home();

// Runs the whole registry sweep; failures are printed as "[sweep] FAIL ...".
registry_sweep_figures run_registry_sweep();
// The re-executed image of the exec phase (pool_crash_sweep
// --registry-exec-stage N): arms crash point n, uses a fresh registry,
// exits 0 if every result was right.
[[noreturn]] void registry_exec_stage(std::uint64_t n);

}  // namespace stress
