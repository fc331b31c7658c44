// The suspension sweep (issue 20, verifier a; the progress rule of
// core/PROTOCOL.md): at every crash point of every operation of the crash
// sweep the process is *stopped* (SIGSTOP, alive, holding what it holds)
// instead of killed.  While it stands there, other processes must keep
// their guarantees:
//   S1 no group is marked full (confirmed) over a free slot that is not the
//      stopped operation's own, and try_alloc / alloc_n(1, 0) find a free
//      slot whenever one exists (used() < capacity);
//   S2 a blocking alloc on a pool that try_alloc reports full goes to sleep
//      only when no slot is free but the stopped operation's own, and wakes
//      within 1 s of a free that completes in another process, and takes a
//      slot;
//   S3 after that free, try_alloc and alloc_n(1, 0) of a third process find
//      the slot;
//   S4 recover_stale() by another process changes no slot word and no waiter
//      entry naming the stopped (live) process.
// Then the process runs on to its next crash point and stops there once
// more, and so on to the end (the quick sample: n + 1 only): a free
// completed while it stood at point n must stay visible at every later
// point (a scanner that passed the slot before the free and marks its group
// after it: issue 20, item 3).  The final state is
// checked as the kill sweep checks it (S5: the operation's result is right,
// nothing names the dead process after recovery, the pool is whole).
#pragma once

#include <string>

namespace stress {

// quick: a sample for the quick gate (every point of alloc_scan_full,
// alloc_wait, free and guard_free, each stopped there and at the next).
// only: one operation by name (sweep_ops), or every one when empty.
int run_suspension_sweep(const std::string& json_path, bool quick, const std::string& only = {});

}  // namespace stress
