// What the crash-point sweep checks after a run (pool_crash_sweep.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "crash_sweep_scenarios.hpp"

namespace stress {

// Before recovery: the state the dead processes left.  Outside the planted
// slots, only CLAIMING/RELEASING words of a dead process may disagree with
// their bit (I1, I2), and every taken word names the parent or a dead
// process (I4: no anonymous owner).
std::vector<std::string> check_left_by_dead(const sweep_pool& sp, const std::vector<std::uint64_t>& dead);

// After one recover_stale() while the process is a zombie: nothing names it.
std::vector<std::string> check_nothing_names(const sweep_pool& sp, std::uint64_t identity);

// After recovery with every helper dead: every slot free or the parent's,
// the parent's slots and data intact (reset may have freed them), used()
// exact, check() empty, and the rest of the pool can be filled and emptied.
std::vector<std::string> check_whole_after_recovery(sweep_pool& sp, bool parent_slots_may_be_gone);

}  // namespace stress
