// The exact checks of a stopped pool (kill_stress_checks.hpp).
#include "kill_stress_checks.hpp"

#include <unistd.h>

#include <cstring>
#include <map>

namespace stress {
namespace {

using shmpool::detail::slot_state;

bool in_flight(std::uint64_t w) {
  const slot_state st = state_of_word(w);
  return st == slot_state::claiming || st == slot_state::releasing;
}

}  // namespace

snapshot_figures stopped_pool_checker::figures() const {
  snapshot_figures f;
  for (std::uint64_t s = 0; s < view_.capacity(); ++s)
    if (in_flight(view_.word(s))) ++f.in_flight;
  return f;
}

std::vector<std::string> stopped_pool_checker::run(std::uint64_t lost_updates_allowed) const {
  std::vector<std::string> out;
  check_owners(live_identities(), out);
  check_words_and_used(out);
  check_holder_table(out);
  check_shared_counter(lost_updates_allowed, out);
  if (figures().quiescent()) {
    for (const std::string& p : pool_.check()) out.push_back("check() with no operation in flight: " + p);
    if (pool_.allocated_slots().size() != pool_.used())
      out.push_back("quiescent, yet used() = " + std::to_string(pool_.used()) + " while " +
                    std::to_string(pool_.allocated_slots().size()) + " slots are allocated");
  }
  return out;
}

// The parent and every worker whose token is current and whose process runs.
std::set<std::uint64_t> stopped_pool_checker::live_identities() const {
  std::set<std::uint64_t> live{my_identity()};
  for (unsigned k = 0; k < workers_; ++k) {
    const worker_cell& c = board_.workers[k];
    if (!token_is_live(board_, c.token.load())) continue;
    if (const std::uint64_t id = identity_of_process(c.pid.load())) live.insert(id);
  }
  return live;
}

// I4 after recovery: every taken slot names a live process; a process is
// mid-operation on at most one slot.
void stopped_pool_checker::check_owners(const std::set<std::uint64_t>& live, std::vector<std::string>& out) const {
  std::map<std::uint64_t, int> in_flight_by;
  for (std::uint64_t s = 0; s < view_.capacity(); ++s) {
    const std::uint64_t w = view_.word(s);
    if (w == 0) continue;
    if (live.count(identity_of_word(w)) == 0)
      out.push_back(slot_text(s, w) + " names no live process after recover_stale (a lost slot)");
    if (in_flight(w) && ++in_flight_by[identity_of_word(w)] > 1)
      out.push_back(slot_text(s, w) + ": a second slot in flight for one stopped process");
  }
}

// I5 with operations possibly stopped mid-flight: used() counts the
// non-FREE words, whatever their state.  (Group marks may be stale while a
// stopped freer or scanner sits between its steps; check() after the
// final recovery judges them.)
void stopped_pool_checker::check_words_and_used(std::vector<std::string>& out) const {
  std::uint64_t taken = 0;
  std::uint64_t allocated = 0;
  for (std::uint64_t s = 0; s < view_.capacity(); ++s) {
    const std::uint64_t w = view_.word(s);
    taken += w != 0 ? 1 : 0;
    if (state_of_word(w) == slot_state::allocated) ++allocated;
  }
  const std::uint64_t used = pool_.used();
  if (used != taken)
    out.push_back("used() = " + std::to_string(used) + " but " + std::to_string(taken) + " slot words are taken");
  if (used < allocated)
    out.push_back("used() = " + std::to_string(used) + " is below the " + std::to_string(allocated) +
                  " allocated slot words");
}

// No slot held by two live workers: an entry naming a live worker means
// that worker's alloc returned the slot and its free has not begun.
void stopped_pool_checker::check_holder_table(std::vector<std::string>& out) const {
  for (std::uint64_t s = 0; s < view_.capacity(); ++s) {
    const std::uint32_t t = holders_[s].load();
    if (!token_is_live(board_, t)) continue;
    const pid_t holder = board_.workers[index_of_token(t)].pid.load();
    const std::uint64_t w = view_.word(s);
    if (state_of_word(w) != slot_state::allocated || identity_of_word(w) != identity_of_process(holder))
      out.push_back(slot_text(s, w) + " is believed held by live worker pid " + std::to_string(holder));
  }
}

// Integer pools: the parent's counter slot leads the workers' tallies by
// at most one add per kill and per stopped worker; it never trails them.
void stopped_pool_checker::check_shared_counter(std::uint64_t allowed, std::vector<std::string>& out) const {
  if (counter_bits_ == 0) return;
  const std::uint64_t s = board_.counter_slot.load();
  if (s == ~std::uint64_t{0}) return;
  std::uint64_t tallies = 0;
  for (unsigned k = 0; k < workers_; ++k) tallies += board_.workers[k].counter_adds.load();
  std::uint64_t value = 0;
  if (counter_bits_ == 64) {
    value = static_cast<std::uint64_t>(static_cast<const shmpool::i64_pool&>(pool_).get(s));
  } else {
    value = static_cast<std::uint32_t>(static_cast<const shmpool::i32_pool&>(pool_).get(s));
  }
  const std::uint64_t mask = counter_bits_ == 64 ? ~std::uint64_t{0} : 0xFFFFFFFFu;
  const std::uint64_t lead = (value - tallies) & mask;
  if (lead > allowed)
    out.push_back("shared counter " + std::to_string(value) + " vs workers' tallies " + std::to_string(tallies & mask) +
                  ": lead " + std::to_string(lead) + " outside [0, " + std::to_string(allowed) + "] (lost updates)");
}

}  // namespace stress
