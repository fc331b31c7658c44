// The wake-up half of the crash-point sweep: a waiter asleep in an untimed
// alloc() on a full pool, while another process frees slots (free, free_n,
// or recover_stale of a dead owner's slots) and is killed at each crash
// point in turn.  After the operation completes, or after it died and the
// parent ran recover_stale(), the waiter must get a slot within a second:
// no waiter stays asleep while a slot is free (W1, and its crash windows).
#pragma once

#include <string>

namespace stress {

int run_wakeup_sweep(const std::string& json_path);

}  // namespace stress
