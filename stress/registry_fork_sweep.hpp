// Issue 20, verifier (b), registry half: a fork while another thread stands
// at each registry crash point (pool_crash_sweep --fork-at-registry-points).
//
// A fresh process (the subject) runs three threads.  Thread A uses the
// registry (use_the_registry: first attach, insert, last release outside
// and inside a delay scope, re-adoption of a parked block, exclusive
// append) armed with crash_action::park_thread at its Nth registry crash
// point: A alone waits there, holding whatever it holds (the attach gate,
// the registry lock L, a dropped count), while the rest of the process
// runs.  Thread B then forks.  B's fork may wait for A (the prepare handler
// takes the attach gate and L, F1); the subject sees B asleep in fork and
// lets A run on.  In the fork child (one thread, B's):
//   K1  the child completes registry operations within 3 s (alarm): first
//       use, create, copy, adopt, release, delay scopes, exclusive append,
//       its anchor leads to its registry (F2);
//   K2  only the forking thread's delay scope stays open (F3): A's scopes
//       are closed in the child; a block released inside B's scope stays
//       known until the child closes that scope, and then every pending
//       block (B's, A's) is freed;
//   K3  the child's counts are the snapshot's (F4): B's buffer has its one
//       reference and its bytes.
// In the subject, after A is let go:
//   K4  A's results were all right, B's state is intact, and the registry
//       is quiescent (no live block but B's, nothing pending, depth as B
//       left it).
// Two scenarios: `first_attach` (A's operations make the process's first
// registry use, so A's points include the anchor's publication, under the
// attach gate) and `attached` (B attached first and holds a buffer and an
// open delay scope with a block parked in it).  N advances until A runs to
// its end without reaching an Nth point.
#pragma once

#include <cstdint>
#include <string>

namespace stress {

struct registry_fork_figures {
  std::uint64_t first_attach_points = 0;  // A's points when its use is the first attach
  std::uint64_t attached_points = 0;      // A's points in a process already attached
  std::uint64_t forks_waited = 0;         // B's fork waited for the parked A (it holds the gate or L)
  std::uint64_t forks_while_parked = 0;   // B's fork completed while A stood at its point
  std::uint64_t runs = 0;
  std::uint64_t failures = 0;
};

// Runs both scenarios; failures are printed as "[fork-sweep] FAIL ...".
registry_fork_figures run_registry_fork_sweep();

}  // namespace stress
