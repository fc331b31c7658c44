// A linearizability checker for concurrent histories of an i64 pool.
//
// WHAT IT DECIDES
//   Given what each actor (a process or a thread) did — per operation: what
//   it asked, when it was invoked, when it returned, what it returned — is
//   there ONE sequential order of all operations that
//     (a) keeps every actor's own order,
//     (b) respects real time: if x returned before y was invoked, x comes
//         first,
//     (c) gives every operation its recorded result when the sequential
//         specification (pool_spec below) runs them in that order, and
//     (d) optionally, ends in the pool state observed after the run?
//
// HOW (Wing & Gong, with the memo of Lowe's WGL)
//   Depth-first search over "what to linearize next".  An actor's next
//   operation x is a candidate iff no operation still to be placed returned
//   before x was invoked: invoked(x) <= min response of the pending ops.
//   Because every actor is sequential, "which ops are placed" is one
//   counter per actor; a (counters, spec state) pair that failed once fails
//   again, so it is memoised.  Histories here hold at most a few dozen
//   operations on a pool of at most max_capacity slots: the search is
//   instant.
//
// THE SEQUENTIAL SPECIFICATION (pool.hpp, i64_pool; one point per operation)
//   state: which slots are allocated; each slot's value.  Values persist
//   across free/alloc (nothing in the pool zeroes data; a fresh pool is
//   zero-filled) — a value read after a re-alloc must be explained by some
//   earlier write or the initial 0.
//   try_alloc / alloc(t)   ok(s): s was free, becomes allocated.
//                          failed: every slot was allocated at that point.
//                          (A timed alloc that times out must therefore have
//                          seen a full pool at some point of its interval;
//                          one that failed while a slot was free throughout
//                          is a violation.)
//   alloc_n(k, t)          ok(s1..sk): distinct, all free, all allocated.
//                          failed: fewer than k slots were free.
//   free(s)                true iff s was allocated; frees it.
//   free_n(s1..sn)         frees each allocated slot in turn (a repeated
//                          slot counts once); returns how many it freed.
//                          Each slot is its own point, in the given order,
//                          inside the call: other operations may fall
//                          between them (pool.hpp: a sequence of frees).
//
//   BATCHES IN FLIGHT (pool.hpp GUARANTEES): a failing alloc_n holds the
//   slots it claimed until it rolls them back.  So a failed allocation
//   (any kind) is also accepted when the free slots at its point could all
//   be held by failing alloc_n(k) calls of other actors that overlap it in
//   time, each holding at most k-1.  Without a concurrent failing batch the
//   strict rule above applies.
//   set/get/add/cas/xchg   on an allocated slot: the atomic operation (add
//                          returns the new value, wraps; cas returns whether
//                          it swapped; xchg returns the old value).  On a
//                          free slot: throws std::logic_error, no effect.
//   An operation that threw anything else, or that the runner could not
//   classify, is never linearizable.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace shmpool::model::lin {

inline constexpr std::uint32_t max_capacity = 4;  // spec state is a bit mask
inline constexpr std::uint32_t max_batch = 3;     // slots in one alloc_n/free_n

enum class op_kind : std::uint8_t { try_alloc, timed_alloc, alloc_n, free, free_n, set, get, add, cas, xchg };

enum class outcome : std::uint8_t {
  ok,              // returned normally (an alloc that returned a slot; free/cas included whatever they returned)
  failed,          // an alloc or alloc_n returned nullopt
  threw_logic,     // std::logic_error: data access to a free slot
  threw_other,     // anything else: never linearizable
  not_run,         // the actor never got to it (crashed child): never linearizable
};

// One operation as it happened.  Plain data: the runner writes it into a
// MAP_SHARED buffer from a forked child.
struct op_record {
  op_kind kind = op_kind::try_alloc;
  outcome result = outcome::not_run;
  std::uint32_t count = 0;                      // alloc_n: k; free_n: number of slots in `slots`
  std::array<std::uint64_t, max_batch> slots{};  // argument slots (free, free_n, data ops: slots[0]) or returned slots (allocs)
  std::int64_t arg0 = 0, arg1 = 0;              // set/add/xchg: arg0; cas: expected arg0, desired arg1
  std::int64_t timeout_ms = 0;                  // timed_alloc, alloc_n
  std::int64_t value = 0;                       // get/add/xchg: value; cas/free: 0|1; free_n: count
  std::int64_t invoked_ns = 0, responded_ns = 0;
};

// ---- the sequential specification -------------------------------------------

struct pool_spec {
  std::uint32_t capacity = 0;
  std::uint32_t allocated = 0;  // bit s: slot s allocated
  std::array<std::int64_t, max_capacity> value{};

  explicit pool_spec(std::uint32_t cap = 0) : capacity(cap) {}
  bool is_allocated(std::uint64_t s) const { return (allocated >> s) & 1u; }
  std::uint32_t free_count() const {
    return capacity - static_cast<std::uint32_t>(__builtin_popcount(allocated));
  }
  bool operator==(const pool_spec&) const = default;

  // One slot of a free_n: true if it was allocated (and is now free).
  bool free_one_of_batch(std::uint64_t s) {
    const bool was = is_allocated(s);
    allocated &= ~(1u << s);
    return was;
  }

  // Applies op in this state.  Returns false (state unspecified) when the
  // recorded result is not what the specification gives.  held_in_flight:
  // how many free slots failing batches of other actors may hold right now.
  bool apply(const op_record& op, std::uint32_t held_in_flight = 0) {
    const std::uint32_t claimable = free_count() > held_in_flight ? free_count() - held_in_flight : 0;
    switch (op.kind) {
      case op_kind::try_alloc:
      case op_kind::timed_alloc:
        if (op.result == outcome::failed) return claimable == 0;
        if (op.result != outcome::ok || !valid_free(op.slots[0])) return false;
        allocated |= 1u << op.slots[0];
        return true;
      case op_kind::alloc_n: {
        if (op.result == outcome::failed) return claimable < op.count;
        if (op.result != outcome::ok || op.count == 0 || op.count > max_batch) return false;
        std::uint32_t taking = 0;
        for (std::uint32_t i = 0; i < op.count; ++i) {
          const auto s = op.slots[i];
          if (!valid_free(s) || ((taking >> s) & 1u)) return false;  // distinct and free
          taking |= 1u << s;
        }
        allocated |= taking;
        return true;
      }
      case op_kind::free: {
        if (op.result != outcome::ok || op.slots[0] >= capacity) return false;
        const bool was = is_allocated(op.slots[0]);
        allocated &= ~(1u << op.slots[0]);
        return op.value == (was ? 1 : 0);
      }
      case op_kind::free_n:
        return false;  // placed slot by slot by the checker (free_one_of_batch)
      case op_kind::set:
      case op_kind::get:
      case op_kind::add:
      case op_kind::cas:
      case op_kind::xchg:
        return apply_data(op);
    }
    return false;
  }

 private:
  bool valid_free(std::uint64_t s) const { return s < capacity && !is_allocated(s); }

  bool apply_data(const op_record& op) {
    const auto s = op.slots[0];
    if (s >= capacity) return false;
    if (!is_allocated(s)) return op.result == outcome::threw_logic;
    if (op.result != outcome::ok) return false;
    std::int64_t& v = value[s];
    switch (op.kind) {
      case op_kind::set:
        v = op.arg0;
        return true;
      case op_kind::get:
        return op.value == v;
      case op_kind::add:  // wraps like the hardware
        v = static_cast<std::int64_t>(static_cast<std::uint64_t>(v) + static_cast<std::uint64_t>(op.arg0));
        return op.value == v;
      case op_kind::cas:
        if (v == op.arg0) {
          v = op.arg1;
          return op.value == 1;
        }
        return op.value == 0;
      case op_kind::xchg: {
        const std::int64_t old = v;
        v = op.arg0;
        return op.value == old;
      }
      default:
        return false;
    }
  }
};

// The pool as observed after every actor finished: which slots are
// allocated, and the value of each allocated one.
struct final_observation {
  std::uint32_t allocated = 0;
  std::array<std::int64_t, max_capacity> value{};

  bool matches(const pool_spec& s) const {
    if (s.allocated != allocated) return false;
    for (std::uint32_t i = 0; i < s.capacity; ++i)
      if (s.is_allocated(i) && s.value[i] != value[i]) return false;
    return true;
  }
};

// ---- the checker -----------------------------------------------------------------

using history = std::vector<std::vector<op_record>>;  // per actor, in program order

struct verdict {
  bool linearizable = false;
  std::vector<std::pair<int, int>> order;  // a witness (actor, op index), when linearizable
  std::vector<std::pair<int, int>> deepest;  // the longest prefix any search branch placed, when not
  std::size_t states_visited = 0;
};

class checker {
 public:
  checker(const history& h, std::uint32_t capacity, std::optional<final_observation> final_state = std::nullopt)
      : h_(h), capacity_(capacity), final_(final_state), placed_(h.size(), 0), part_(h.size(), 0),
        freed_(h.size(), 0) {}

  verdict run() {
    verdict v;
    pool_spec start(capacity_);
    v.linearizable = search(start);
    v.order = v.linearizable ? path_ : std::vector<std::pair<int, int>>{};
    v.deepest = deepest_;
    v.states_visited = seen_.size();
    return v;
  }

 private:
  // Invariant: placed_[a] ops of actor a are linearized, in path_ order, and
  // `state` is the spec state after them.
  bool search(const pool_spec& state) {
    if (path_.size() > deepest_.size()) deepest_ = path_;
    std::int64_t earliest_response = std::numeric_limits<std::int64_t>::max();
    bool all_placed = true;
    for (std::size_t a = 0; a < h_.size(); ++a) {
      if (placed_[a] == h_[a].size()) continue;
      all_placed = false;
      earliest_response = std::min(earliest_response, h_[a][placed_[a]].responded_ns);
    }
    if (all_placed) return !final_ || final_->matches(state);
    if (!seen_.insert(key_of(state)).second) return false;  // this (placed, state) failed before
    for (std::size_t a = 0; a < h_.size(); ++a) {
      if (placed_[a] == h_[a].size()) continue;
      const op_record& op = h_[a][placed_[a]];
      if (op.invoked_ns > earliest_response) continue;  // something returned before it began
      if (op.kind == op_kind::free_n) {
        if (place_part_of_free_n(a, op, state)) return true;
        continue;
      }
      pool_spec next = state;
      if (!next.apply(op, held_in_flight(a, op))) continue;
      path_.emplace_back(static_cast<int>(a), static_cast<int>(placed_[a]));
      ++placed_[a];
      if (search(next)) return true;
      --placed_[a];
      path_.pop_back();
    }
    return false;
  }

  // The next slot of actor a's free_n; its count is checked at the last.
  // Invariant: part_[a] slots of it are placed, freed_[a] of them were allocated.
  bool place_part_of_free_n(std::size_t a, const op_record& op, const pool_spec& state) {
    if (op.result != outcome::ok || op.count == 0 || op.count > max_batch) return false;
    const std::uint32_t i = part_[a];
    if (op.slots[i] >= capacity_) return false;
    pool_spec next = state;
    const std::uint32_t freed = freed_[a] + (next.free_one_of_batch(op.slots[i]) ? 1 : 0);
    const bool last = i + 1 == op.count;
    if (last && freed != op.value) return false;
    const auto saved = std::make_pair(part_[a], freed_[a]);
    path_.emplace_back(static_cast<int>(a), static_cast<int>(placed_[a]));  // once per slot of the batch
    if (last) {
      ++placed_[a];
      part_[a] = freed_[a] = 0;
    } else {
      ++part_[a];
      freed_[a] = freed;
    }
    if (search(next)) return true;
    if (last) --placed_[a];
    std::tie(part_[a], freed_[a]) = saved;
    path_.pop_back();
    return false;
  }

  // Free slots that failing alloc_n calls of other actors may hold at op's
  // point: those whose interval overlaps op's, placed yet or not (their
  // place in the order says when they failed, not when they held), k-1 each.
  std::uint32_t held_in_flight(std::size_t a, const op_record& op) const {
    if (op.result != outcome::failed) return 0;
    std::uint32_t held = 0;
    for (std::size_t b = 0; b < h_.size(); ++b) {
      if (b == a) continue;
      for (const op_record& other : h_[b])
        if (other.kind == op_kind::alloc_n && other.result == outcome::failed && other.count > 0 &&
            other.invoked_ns <= op.responded_ns && other.responded_ns >= op.invoked_ns)
          held += other.count - 1;
    }
    return held;
  }

  std::string key_of(const pool_spec& s) const {
    std::string k;
    for (const std::size_t p : placed_) k.push_back(static_cast<char>(p));
    for (std::size_t a = 0; a < placed_.size(); ++a) {
      k.push_back(static_cast<char>(part_[a]));
      k.push_back(static_cast<char>(freed_[a]));
    }
    k.append(reinterpret_cast<const char*>(&s.allocated), sizeof s.allocated);
    k.append(reinterpret_cast<const char*>(s.value.data()), sizeof(std::int64_t) * s.capacity);
    return k;
  }

  const history& h_;
  std::uint32_t capacity_;
  std::optional<final_observation> final_;
  std::vector<std::size_t> placed_;
  std::vector<std::uint32_t> part_, freed_;  // progress through each actor's current free_n
  std::vector<std::pair<int, int>> path_, deepest_;
  std::set<std::string> seen_;
};

inline verdict check_linearizable(const history& h, std::uint32_t capacity,
                                  std::optional<final_observation> final_state = std::nullopt) {
  return checker(h, capacity, final_state).run();
}

// ---- printing -------------------------------------------------------------------

inline const char* name_of(op_kind k) {
  switch (k) {
    case op_kind::try_alloc: return "try_alloc";
    case op_kind::timed_alloc: return "alloc";
    case op_kind::alloc_n: return "alloc_n";
    case op_kind::free: return "free";
    case op_kind::free_n: return "free_n";
    case op_kind::set: return "set";
    case op_kind::get: return "get";
    case op_kind::add: return "add";
    case op_kind::cas: return "cas";
    case op_kind::xchg: return "xchg";
  }
  return "?";
}

// "{0, 2}": the slots a free_n was given or an alloc_n returned.
inline std::string slot_list(const op_record& op) {
  std::string out = "{";
  for (std::uint32_t i = 0; i < op.count; ++i) out += (i ? ", " : "") + std::to_string(op.slots[i]);
  return out + "}";
}

// "free(1) -> true", "alloc(2ms) -> nullopt", "get(0) -> threw logic_error", ...
inline std::string describe(const op_record& op) {
  std::ostringstream os;
  os << name_of(op.kind) << "(";
  switch (op.kind) {
    case op_kind::try_alloc: break;
    case op_kind::timed_alloc: os << op.timeout_ms << "ms"; break;
    case op_kind::alloc_n: os << op.count << ", " << op.timeout_ms << "ms"; break;
    case op_kind::free: os << op.slots[0]; break;
    case op_kind::free_n: os << slot_list(op); break;
    case op_kind::set:
    case op_kind::add:
    case op_kind::xchg: os << op.slots[0] << ", " << op.arg0; break;
    case op_kind::get: os << op.slots[0]; break;
    case op_kind::cas: os << op.slots[0] << ", " << op.arg0 << ", " << op.arg1; break;
  }
  os << ") -> ";
  switch (op.result) {
    case outcome::failed: return os.str() + "nullopt";
    case outcome::threw_logic: return os.str() + "threw logic_error";
    case outcome::threw_other: return os.str() + "threw (unexpected)";
    case outcome::not_run: return os.str() + "(never ran)";
    case outcome::ok: break;
  }
  switch (op.kind) {
    case op_kind::try_alloc:
    case op_kind::timed_alloc: os << op.slots[0]; break;
    case op_kind::alloc_n: os << slot_list(op); break;
    case op_kind::free:
    case op_kind::cas: os << (op.value ? "true" : "false"); break;
    case op_kind::set: os << "void"; break;
    default: os << op.value; break;
  }
  return os.str();
}

// One line per operation, per actor, times in µs from the earliest invocation.
inline void print_history(std::ostream& os, const history& h) {
  std::int64_t t0 = std::numeric_limits<std::int64_t>::max();
  for (const auto& actor : h)
    for (const auto& op : actor) t0 = std::min(t0, op.invoked_ns);
  for (std::size_t a = 0; a < h.size(); ++a) {
    os << "actor " << a << ":\n";
    for (std::size_t i = 0; i < h[a].size(); ++i) {
      const auto& op = h[a][i];
      os << "  #" << i << "  [" << (op.invoked_ns - t0) / 1000.0 << " us, " << (op.responded_ns - t0) / 1000.0
         << " us]  " << describe(op) << "\n";
    }
  }
}

}  // namespace shmpool::model::lin
