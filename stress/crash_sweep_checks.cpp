// The sweep's checks (crash_sweep_checks.hpp).
#include "crash_sweep_checks.hpp"

#include <algorithm>
#include <chrono>

namespace stress {
namespace {

using shmpool::detail::slot_state;

}  // namespace

std::vector<std::string> check_left_by_dead(const sweep_pool& sp, const std::vector<std::uint64_t>& dead) {
  std::vector<std::string> out;
  const std::uint64_t parent = my_identity();
  for (std::uint64_t s = 0; s < sp.view.capacity(); ++s) {
    if (sp.planted.count(s) != 0) continue;
    const std::uint64_t w = sp.view.word(s);
    const slot_state st = state_of_word(w);
    if (w == 0) continue;
    const std::uint64_t id = identity_of_word(w);
    const bool by_dead = std::find(dead.begin(), dead.end(), id) != dead.end();
    if (id != parent && !by_dead) out.push_back(slot_text(s, w) + " names neither the parent nor a dead process");
    if (id == parent && st != slot_state::allocated) out.push_back(slot_text(s, w) + " in flight for the idle parent");
  }
  return out;
}

std::vector<std::string> check_nothing_names(const sweep_pool& sp, std::uint64_t identity) {
  std::vector<std::string> out;
  for (std::uint64_t s = 0; s < sp.view.capacity(); ++s) {
    const std::uint64_t w = sp.view.word(s);
    if (identity != 0 && w != 0 && identity_of_word(w) == identity)
      out.push_back(slot_text(s, w) + " still names the dead (zombie) process after recover_stale()");
  }
  return out;
}

std::vector<std::string> check_whole_after_recovery(sweep_pool& sp, bool parent_slots_may_be_gone) {
  std::vector<std::string> out;
  const std::uint64_t parent = my_identity();
  std::uint64_t allocated = 0;
  for (std::uint64_t s = 0; s < sp.view.capacity(); ++s) {
    const std::uint64_t w = sp.view.word(s);
    const bool parents = sp.parent_slots.count(s) != 0;
    if (w == 0) {
      if (parents && !parent_slots_may_be_gone) out.push_back("slot " + std::to_string(s) + " of the live parent was freed");
      continue;
    }
    ++allocated;
    if (state_of_word(w) != slot_state::allocated || identity_of_word(w) != parent || !parents)
      out.push_back(slot_text(s, w) + " after recovery is not one of the live parent's slots (lost slot)");
    else if (sp.pool.get(s) != 1000 + static_cast<std::int64_t>(s))
      out.push_back("slot " + std::to_string(s) + " of the live parent lost its data");
  }
  if (sp.pool.used() != allocated)
    out.push_back("used() = " + std::to_string(sp.pool.used()) + " but " + std::to_string(allocated) + " slots are taken");
  for (const std::string& p : sp.pool.check()) out.push_back("check(): " + p);
  const std::uint64_t room = sp.pool.capacity() - allocated;
  if (room != 0) {
    auto rest = sp.pool.alloc_n(room, std::chrono::milliseconds(0));
    if (!rest) out.push_back("the pool cannot be filled: " + std::to_string(room) + " slots should be free");
    else if (sp.pool.free_n(*rest) != room) out.push_back("the filled pool cannot be emptied");
  }
  if (sp.pool.used() != allocated) out.push_back("fill and empty changed used()");
  return out;
}

}  // namespace stress
