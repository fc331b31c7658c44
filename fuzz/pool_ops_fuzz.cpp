// fuzz_ops: an operation sequence run against a pool and a model of it in
// the same process; any divergence traps.  After every operation: check()
// finds nothing, used() and allocated_slots() equal the model.
//
// Input: [0] variant  [1] capacity 1..130  [2] elem_size / max_len, then one
// operation per byte (with its arguments after it) until the input ends or
// max_ops have run.  Beside the API calls there are two of the harness's
// own: "kill", which forges a held slot's word as owned by a dead incarnation
// of this process (what a crash leaves), and "attach", a second handle on
// the same memfd as some variant.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "pool_fuzz_support.hpp"
#include "pool_fuzz_typed.hpp"

namespace {

using namespace shmpool_fuzz;

constexpr int max_ops = 256;

struct held_slot {
  std::optional<std::string> value;  // what get() answers, once written
  bool dead = false;                 // owner forged dead by "kill"
};

// The model: which slots are held, with what, and by whom.
struct model {
  std::uint64_t capacity;
  std::map<slot_index, held_slot> held;
  bool full() const { return held.size() == capacity; }
  std::size_t dead() const {
    std::size_t n = 0;
    for (const auto& [i, s] : held) n += s.dead ? 1 : 0;
    return n;
  }
};

template <class Pool>
class ops_run {
 public:
  ops_run(Pool p, byte_reader& in)
      : pool_(std::move(p)), in_(in), map_(pool_.memfd(), pool_.stats().mmap_size),
        layout_(*format_says_valid(map_.base(), map_.size())), m_{pool_.capacity(), {}} {}

  void run() {
    for (int k = 0; k < max_ops && !in_.empty(); ++k) {
      step(in_.u8() % 13);
      require_agrees();
    }
  }

 private:
  void step(unsigned op) {
    switch (op) {
      case 0: got_one(pool_.try_alloc()); break;
      case 1: got_one(pool_.alloc(std::chrono::microseconds(20))); break;
      case 2: free_one(); break;
      case 3: alloc_batch(); break;
      case 4: free_batch(); break;
      case 5: case 6: write_slot(op == 6); break;
      case 7: read_slot(); break;
      case 8: recover(); break;
      case 9: pool_.reset(); m_.held.clear(); break;
      case 10: kill_owner(); break;
      case 11: attach_peer(); break;
      default: guard(); break;
    }
  }

  slot_index any_index() { return in_.u16() % (m_.capacity + 2); }
  // A held slot when there is one (and the input asks), else any index.
  slot_index some_index() {
    const std::uint8_t pick = in_.u8();
    if (m_.held.empty() || (pick & 1)) return any_index();
    return std::next(m_.held.begin(), static_cast<long>(pick / 2 % m_.held.size()))->first;
  }

  void got_one(std::optional<slot_index> i) {
    require(i.has_value() == !m_.full(), "alloc disagrees with the model about fullness", m_.held.size());
    if (!i) return;
    require(*i < m_.capacity && m_.held.count(*i) == 0, "alloc handed out a held or out-of-range slot", *i);
    m_.held[*i] = {};
  }

  void free_one() {
    const slot_index i = any_index();
    try {
      require(pool_.free(i) == (m_.held.erase(i) == 1), "free's answer disagrees with the model", i);
      require(i < m_.capacity, "free accepted an index beyond capacity", i);
    } catch (const std::out_of_range&) {
      require(i >= m_.capacity, "free refused an index in range", i);
    }
  }

  void alloc_batch() {
    const std::size_t n = in_.u8() % (m_.capacity + 2);
    try {
      const auto got = pool_.alloc_n(n, std::chrono::seconds(0));
      require(n <= m_.capacity, "alloc_n beyond capacity did not throw", n);
      require(got.has_value() == (n <= m_.capacity - m_.held.size()), "alloc_n disagrees about room", n);
      if (!got) return;
      require(got->size() == n, "alloc_n returned another count", got->size(), n);
      for (const slot_index i : *got) {
        require(i < m_.capacity && m_.held.count(i) == 0, "alloc_n handed out a held or out-of-range slot", i);
        m_.held[i] = {};
      }
    } catch (const std::invalid_argument&) {
      require(n > m_.capacity, "alloc_n within capacity threw", n);
    }
  }

  void free_batch() {
    std::vector<slot_index> batch;
    for (unsigned k = in_.u8() % 5; k > 0; --k) batch.push_back(some_index());
    bool in_range = true;
    for (const slot_index i : batch) in_range &= i < m_.capacity;
    try {
      const std::size_t freed = pool_.free_n(batch);
      require(in_range, "free_n accepted an index beyond capacity");
      std::size_t want = 0;
      for (const slot_index i : batch) want += m_.held.erase(i);
      require(freed == want, "free_n freed another count", freed, want);
    } catch (const std::out_of_range&) {
      require(!in_range, "free_n refused a batch in range");
    }
  }

  void write_slot(bool update) {
    const slot_index i = some_index();
    try {
      std::string v = update ? typed<Pool>::update(pool_, i, in_) : typed<Pool>::write(pool_, i, in_);
      require(m_.held.count(i) == 1, "data access to a free slot did not throw", i);
      m_.held[i].value = std::move(v);
    } catch (const std::logic_error&) {  // out_of_range is a logic_error too
      require(m_.held.count(i) == 0, "data access to a held slot threw", i);
    }
  }

  void read_slot() {
    const slot_index i = some_index();
    try {
      const std::string v = typed<Pool>::read(pool_, i);
      const auto it = m_.held.find(i);
      require(it != m_.held.end(), "reading a free slot did not throw", i);
      require(!it->second.value || *it->second.value == v, "get() disagrees with the last write", i);
    } catch (const std::logic_error&) {
      require(m_.held.count(i) == 0, "reading a held slot threw", i);
    }
  }

  void recover() {
    require(pool_.recover_stale() == m_.dead(), "recover_stale freed another count than the dead owners held",
            m_.dead());
    std::erase_if(m_.held, [](const auto& kv) { return kv.second.dead; });
  }

  void kill_owner() {
    if (m_.held.empty()) return;
    const auto it = std::next(m_.held.begin(), static_cast<long>(in_.u8() % m_.held.size()));
    map_.word_at(layout_.meta_offset + 16 * it->first).store(slot_word(allocated, dead_identity()));
    it->second.dead = true;
  }

  void attach_peer() {
    const pool_variant v = all_variants[in_.u8() % 5];
    with_variant(v, [&](auto tag) {
      auto peer = attach<typename decltype(tag)::type>(pool_.memfd());
      require(peer.has_value() == (v == pool_.variant()), "attach as a variant: wrong verdict",
              static_cast<std::uint64_t>(v));
      if (peer) require(peer->used() == m_.held.size(), "a second handle sees another used()", peer->used());
    });
  }

  void guard() {
    auto g = pool_.try_alloc_guard();
    require(g.has_value() == !m_.full(), "alloc_guard disagrees with the model about fullness");
    if (!g) return;
    require(m_.held.count(g->index()) == 0, "alloc_guard handed out a held slot", g->index());
    if (in_.u8() & 1) m_.held[g->release()] = {};  // kept: the guard gives it up
  }

  void require_agrees() {
    require(pool_.used() == m_.held.size(), "used() disagrees with the model", pool_.used(), m_.held.size());
    const auto slots = pool_.allocated_slots();  // ascending, as the model's keys
    require(std::equal(slots.begin(), slots.end(), m_.held.begin(), m_.held.end(),
                       [](slot_index i, const auto& kv) { return i == kv.first; }),
            "allocated_slots() disagrees with the model");
    const auto problems = pool_.check();
    if (!problems.empty()) std::fprintf(stderr, "check(): %s\n", problems.front().c_str());
    require(problems.empty(), "check() finds a problem in a pool the model calls healthy", problems.size());
  }

  Pool pool_;
  byte_reader& in_;
  region_map map_;
  format_layout layout_;
  model m_;
};

template <class Pool>
Pool create(std::uint64_t capacity, std::uint64_t size_param) {
  if constexpr (std::is_same_v<Pool, shmpool::pool> || std::is_same_v<Pool, shmpool::str_pool>)
    return Pool::memfd("fuzz-ops", capacity, size_param);
  else
    return Pool::memfd("fuzz-ops", capacity);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  byte_reader in(data, size);
  const pool_variant v = all_variants[in.u8() % 5];
  const std::uint64_t capacity = 1 + in.u8() % 130;
  const std::uint64_t size_param = 1 + in.u8() % 40;
  with_variant(v, [&](auto tag) {
    using Pool = typename decltype(tag)::type;
    ops_run<Pool>(create<Pool>(capacity, size_param), in).run();
  });
  return 0;
}
