// The plain model of a pool, the system under test (two handles onto one
// pool), and the comparison run after every command.  Used by
// pool_model_test.cpp; one traits struct per variant.
//
// The helpers below the model (taken, vacant, pool_sut::forge,
// alloc_woken_by_free, ...) are also what a pasted regression test calls:
// every command's show() prints a statement over them and the handles h0/h1
// (preamble at the top of pool_model_test.cpp).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <rapidcheck.h>

#include "shmpool/detail/format.hpp"
#include "shmpool/platform/liveness.hpp"
#include "shmpool/pool.hpp"

namespace shmpool::model {

namespace fs = std::filesystem;
using detail::slot_state;
inline constexpr std::uint64_t model_capacity = 6;  // small: full pools come often

// A value in [lo, hi), drawn from the whole range whatever the test size
// (RapidCheck's inRange scales with size: at max_size=40 a handle would
// almost always be h0 and a batch almost never longer than one slot).
template <class I>
rc::Gen<I> any_in(I lo, I hi) {
  return rc::gen::resize(100, rc::gen::inRange<I>(lo, hi));
}

// ---- variants ------------------------------------------------------------------

// Integer values: mostly arbitrary, often an edge where add() wraps.
template <class V>
rc::Gen<V> integer_values() {
  using lim = std::numeric_limits<V>;
  return rc::gen::weightedOneOf<V>({{3, rc::gen::arbitrary<V>()},
                                    {1, rc::gen::element<V>(lim::min(), lim::max(), V{0}, V{-1}, V{1})}});
}
// A C++ expression for an integer (the most negative one has no literal).
template <class V>
std::string integer_literal(V v) {
  if (v == std::numeric_limits<V>::min())
    return "std::numeric_limits<" + std::string(sizeof(V) == 8 ? "std::int64_t" : "std::int32_t") + ">::min()";
  return std::to_string(v);
}

// i64 and i32 pools differ only in the type of their slot.
template <class Pool, class V>
struct integer_traits {
  using pool_type = Pool;
  using value = V;
  static constexpr bool integer = true;
  static pool_type open(const fs::path& p) { return pool_type::open(p, model_capacity); }
  static pool_type memfd() { return pool_type::memfd("model", model_capacity); }
  static rc::Gen<value> gen() { return integer_values<value>(); }
  static value stored(value v) { return v; }
  static value read(const pool_type& p, slot_index i) { return p.get(i); }
  static std::string show(value v) { return integer_literal(v); }
};
struct i64_traits : integer_traits<shmpool::i64_pool, std::int64_t> {
  static constexpr const char* name = "i64_pool";
};
struct i32_traits : integer_traits<shmpool::i32_pool, std::int32_t> {
  static constexpr const char* name = "i32_pool";
};

struct f64_traits {
  using pool_type = shmpool::f64_pool;
  using value = std::uint64_t;  // the double's bits: NaNs compare equal to themselves
  static constexpr bool integer = false;
  static constexpr const char* name = "f64_pool";
  static pool_type open(const fs::path& p) { return pool_type::open(p, model_capacity); }
  static pool_type memfd() { return pool_type::memfd("model", model_capacity); }
  static rc::Gen<value> gen() {
    return rc::gen::map(rc::gen::arbitrary<double>(), [](double d) { return std::bit_cast<value>(d); });
  }
  static double as_arg(value v) { return std::bit_cast<double>(v); }
  static value stored(value v) { return v; }
  static value read(const pool_type& p, slot_index i) { return std::bit_cast<value>(p.get(i)); }
  static std::string show(value v) {
    return "std::bit_cast<double>(std::uint64_t{" + std::to_string(v) + "u})";
  }
};

struct str_traits {
  using pool_type = shmpool::str_pool;
  using value = std::string;
  static constexpr bool integer = false;
  static constexpr std::uint64_t max_len = 8;
  static constexpr const char* name = "str_pool";
  static pool_type open(const fs::path& p) { return pool_type::open(p, model_capacity, max_len); }
  static pool_type memfd() { return pool_type::memfd("model", model_capacity, max_len); }
  static rc::Gen<value> gen() {
    return rc::gen::container<std::string>(*any_in<std::size_t>(0, max_len + 5),
                                           any_in('a', 'z'));
  }
  static value stored(const value& v) { return v.substr(0, max_len); }  // truncation
  static value read(const pool_type& p, slot_index i) { return p.get(i); }
  static std::string show(const value& v) { return "\"" + v + "\""; }
};

struct raw_traits {
  using pool_type = shmpool::pool;
  using value = std::string;  // bytes
  static constexpr bool integer = false;
  static constexpr std::uint64_t elem_size = 12;
  static constexpr const char* name = "pool";
  static pool_type open(const fs::path& p) { return pool_type::open(p, model_capacity, elem_size); }
  static pool_type memfd() { return pool_type::memfd("model", model_capacity, elem_size); }
  static rc::Gen<value> gen() {
    return rc::gen::container<std::string>(*any_in<std::size_t>(0, elem_size + 4),
                                           any_in('A', 'Z'));
  }
  // set() truncates to elem_size and zero-fills the rest; get() is the whole slot.
  static value stored(const value& v) {
    value s = v.substr(0, elem_size);
    s.resize(elem_size, '\0');
    return s;
  }
  static value read(const pool_type& p, slot_index i) {
    const auto b = p.get(i);
    return value(reinterpret_cast<const char*>(b.data()), b.size());
  }
  static std::string show(const value& v) { return "bytes_of(\"" + v + "\")"; }
};

// The bytes of a string, as a raw pool's set() takes them.
inline std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// Passes a model value to the pool's set()/alloc_set().
template <class T>
auto arg_of(const typename T::value& v) {
  if constexpr (std::is_same_v<T, f64_traits>) return T::as_arg(v);
  else if constexpr (std::is_same_v<T, raw_traits>) return bytes_of(v);
  else return v;
}

// ---- the model -----------------------------------------------------------------

// Who a slot word names when it is not this process.  Which of them
// recover_stale() may take back is the point of the liveness oracle.
enum class owner_kind {
  exited_child,     // a forked child that allocated and was reaped
  vanished_pid,     // a pid with no process (forged)
  reused_pid,       // this process's pid with another start time: PID reuse (forged)
  other_namespace,  // a vanished pid tagged with another pid namespace: "maybe alive" (forged)
  live_parent,      // our parent process, alive (forged)
};
constexpr bool certainly_dead(owner_kind k) noexcept {
  return k == owner_kind::exited_child || k == owner_kind::vanished_pid || k == owner_kind::reused_pid;
}
inline const char* name_of(owner_kind k) {
  switch (k) {
    case owner_kind::exited_child: return "owner_kind::exited_child";
    case owner_kind::vanished_pid: return "owner_kind::vanished_pid";
    case owner_kind::reused_pid: return "owner_kind::reused_pid";
    case owner_kind::other_namespace: return "owner_kind::other_namespace";
    case owner_kind::live_parent: return "owner_kind::live_parent";
  }
  return "?";
}
inline const char* name_of(slot_state s) {
  switch (s) {
    case slot_state::free: return "slot_state::free";
    case slot_state::claiming: return "slot_state::claiming";
    case slot_state::allocated: return "slot_state::allocated";
    case slot_state::releasing: return "slot_state::releasing";
  }
  return "?";
}

// A slot whose word names another identity: allocated, claiming or releasing.
template <class V>
struct foreign_slot {
  slot_state state = slot_state::allocated;
  owner_kind owner = owner_kind::exited_child;
  pid_t pid = 0;    // what owner() reports
  std::optional<V> value;  // ALLOCATED only: data is readable by anyone
};

template <class T>
struct pool_model {
  using value = typename T::value;
  // Slots ALLOCATED by this process, with their value: unknown until set or
  // first read (alloc neither clears nor keeps a slot's data; see README).
  std::map<slot_index, std::optional<value>> held;
  std::map<slot_index, foreign_slot<value>> foreign;
  std::uint64_t allocs = 0, waits = 0, timeouts = 0, recoveries = 0;

  // FREE slot word: alloc may take it (owner() == 0).
  bool claimable(slot_index s) const { return s < model_capacity && !held.count(s) && !foreign.count(s); }
  std::uint64_t claimable_count() const { return model_capacity - held.size() - foreign.size(); }
  // used() counts the non-FREE slot words (I5): ours and every forged one.
  std::uint64_t used() const { return held.size() + foreign.size(); }
  // Allocations counted and not yet ended: every non-FREE word (a forged
  // CLAIMING word is a claimant killed after its count, C3), so frees =
  // allocs - this, as stats() computes it.
  std::uint64_t allocations_outstanding() const { return held.size() + foreign.size(); }
  bool allocated(slot_index s) const {
    return held.count(s) || (foreign.count(s) && foreign.at(s).state == slot_state::allocated);
  }
  std::vector<slot_index> allocated_slots() const {
    std::vector<slot_index> out;
    for (slot_index s = 0; s < model_capacity; ++s)
      if (allocated(s)) out.push_back(s);
    return out;
  }
  std::vector<slot_index> vacant_slots() const {
    std::vector<slot_index> out;
    for (slot_index s = 0; s < model_capacity; ++s)
      if (claimable(s)) out.push_back(s);
    return out;
  }
  // Slots check() must name: words of a claim or release that never finished.
  std::vector<slot_index> in_flight() const {
    std::vector<slot_index> out;
    for (const auto& [s, f] : foreign)
      if (f.state != slot_state::allocated) out.push_back(s);
    return out;
  }
  std::size_t recoverable() const {
    std::size_t n = 0;
    for (const auto& [s, f] : foreign) n += certainly_dead(f.owner) ? 1 : 0;
    return n;
  }
  // The value of an ALLOCATED slot (ours or not); nullptr when data access throws.
  std::optional<value>* value_of(slot_index s) {
    if (held.count(s)) return &held[s];
    if (foreign.count(s) && foreign[s].state == slot_state::allocated) return &foreign[s].value;
    return nullptr;
  }
  const std::optional<value>* value_of(slot_index s) const { return const_cast<pool_model*>(this)->value_of(s); }
  void release(slot_index s) {
    held.erase(s);
    foreign.erase(s);
  }
};

// ---- naming slots independently of which slot alloc picked ------------------------

// Which slot alloc returns depends on a per-process hint (a hash of the pid),
// so commands name slots by position: the k-th allocated slot, the k-th
// vacant one, or an index beyond capacity.  Resolved against the model in the
// property and against the pool in a pasted test; both agree because they
// were compared after the previous command.
inline slot_index nth_or_wrap(const std::vector<slot_index>& slots, std::size_t k) {
  return slots.empty() ? k % model_capacity : slots[k % slots.size()];
}
template <class Pool>
slot_index taken(const Pool& p, std::size_t k) {
  return nth_or_wrap(p.allocated_slots(), k);
}
template <class Pool>
slot_index vacant(const Pool& p, std::size_t k) {
  std::vector<slot_index> v;
  for (slot_index s = 0; s < p.capacity(); ++s)
    if (p.owner(s) == 0) v.push_back(s);
  return nth_or_wrap(v, k);
}

struct slot_pick {
  enum kind_t { taken, vacant, beyond } kind = taken;
  std::size_t k = 0;
  template <class T>
  slot_index resolve(const pool_model<T>& m) const {
    switch (kind) {
      case taken: return nth_or_wrap(m.allocated_slots(), k);
      case vacant: return nth_or_wrap(m.vacant_slots(), k);
      case beyond: break;
    }
    return model_capacity + k % 2;
  }
  bool beyond_range() const { return kind == beyond; }
  std::string show(const std::string& handle) const {
    switch (kind) {
      case taken: return "taken(" + handle + ", " + std::to_string(k) + ")";
      case vacant: return "vacant(" + handle + ", " + std::to_string(k) + ")";
      case beyond: break;
    }
    return std::to_string(model_capacity + k % 2);
  }
};
// Mostly allocated slots; with_beyond adds out-of-range indices.
inline rc::Gen<slot_pick> gen_pick(bool with_beyond = true) {
  auto kind = with_beyond ? rc::gen::weightedElement<slot_pick::kind_t>(
                                {{4, slot_pick::taken}, {2, slot_pick::vacant}, {1, slot_pick::beyond}})
                          : rc::gen::weightedElement<slot_pick::kind_t>({{2, slot_pick::taken}, {1, slot_pick::vacant}});
  return rc::gen::apply([](slot_pick::kind_t kd, std::size_t k) { return slot_pick{kd, k}; }, kind,
                        any_in<std::size_t>(0, model_capacity));
}

// How a call ended: std::out_of_range (index >= capacity), std::logic_error
// alone (data access to a slot that is not ALLOCATED), or normally.
enum class ending { normal, out_of_range, not_allocated, other };
template <class F>
ending ending_of(F&& call) {
  try {
    call();
    return ending::normal;
  } catch (const std::out_of_range&) {
    return ending::out_of_range;
  } catch (const std::logic_error&) {
    return ending::not_allocated;
  } catch (...) {
    return ending::other;
  }
}
template <class T>
ending expected_ending(const pool_model<T>& m, slot_index s) {
  return s >= model_capacity ? ending::out_of_range : m.allocated(s) ? ending::normal : ending::not_allocated;
}

// ---- forged slot words ----------------------------------------------------------------

// The identity a forged word names (platform/liveness.hpp layout).
inline std::uint64_t identity_for(owner_kind k) {
  const std::uint64_t me = platform::proc_liveness::self();
  const std::uint64_t tag = platform::identity_ns_tag(me);
  // A pid with no process now: the top of the 22-bit range, downwards.
  auto vanished = [] {
    for (pid_t p = (pid_t{1} << platform::identity_pid_bits) - 1; p > 1; --p)
      if (::kill(p, 0) == -1 && errno == ESRCH) return static_cast<std::uint64_t>(p);
    return std::uint64_t{0};
  };
  switch (k) {
    case owner_kind::vanished_pid: return platform::make_identity(tag, vanished(), 12345);
    case owner_kind::reused_pid:
      return platform::make_identity(tag, static_cast<std::uint64_t>(::getpid()), platform::identity_start(me) ^ 0x100);  // > 1 tick apart
    case owner_kind::other_namespace: return platform::make_identity(tag ^ 1, vanished(), 12345);
    case owner_kind::live_parent: return platform::proc_liveness::identity_of(::getppid());
    case owner_kind::exited_child: break;
  }
  return 0;
}

// ---- the system under test -------------------------------------------------------

// Two handles onto one pool: h[0] and h[1] (a second open of the file, or
// from_fd of the memfd).  Commands pick a handle.
template <class T>
struct pool_sut {
  fs::path dir;
  std::optional<typename T::pool_type> h[2];
  pool_model<T> shadow;  // what the pool must hold (advanced by each command)
  bool file_backed;

  explicit pool_sut(bool file) : file_backed(file) {
    char tmpl[] = "/tmp/shmpool-model-XXXXXX";
    dir = ::mkdtemp(tmpl);
    open_both();
  }
  ~pool_sut() {
    h[0].reset();
    h[1].reset();
    fs::remove_all(dir);
  }
  pool_sut(const pool_sut&) = delete;
  pool_sut& operator=(const pool_sut&) = delete;

  fs::path file() const { return dir / "pool.shm"; }
  void open_both() {
    if (file_backed) {
      h[0].emplace(T::open(file()));
      h[1].emplace(T::open(file()));
    } else {
      if (!h[0]) h[0].emplace(T::memfd());
      h[1].emplace(T::pool_type::from_fd(h[0]->memfd()));
    }
  }
  // Closes every handle and opens the pool again; state must survive.
  void reopen() {
    if (file_backed) {
      h[0].reset();
      h[1].reset();
    } else {
      h[0].reset();                     // the memfd lives on in h[1]
      h[0].emplace(T::pool_type::from_fd(h[1]->memfd()));
      h[1].reset();
    }
    open_both();
  }
  // An fd onto the pool's bytes; close it only if owned.
  int pool_fd(bool& owned) const {
    owned = file_backed;
    return file_backed ? ::open(file().c_str(), O_RDWR | O_CLOEXEC) : h[0]->memfd();
  }
  // Replaces h1 with a from_fd attach (of the file or of the memfd).
  void reattach_h1_by_fd() {
    bool owned = false;
    const int fd = pool_fd(owned);
    RC_ASSERT(fd >= 0);
    h[1].reset();
    h[1].emplace(T::pool_type::from_fd(fd));
    if (owned) ::close(fd);
  }

  // Writes, into the vacant slot s, the slot word (and alloc count) that an owner of kind `who` would have left had it died in
  // `state`: a claimant bumps the slot's alloc count just before it
  // publishes (slot_protocol.hpp publish_claim, I6), so a forged ALLOCATED
  // or RELEASING word counts one alloc and a forged CLAIMING word none.
  // Goes through a mapping of our own, placed by the pool's header.
  // Returns the owner's pid, as owner() reports it (0: s was not vacant).
  pid_t forge(slot_index s, owner_kind who, slot_state state) {
    using meta_t = detail::slot_meta<detail::shm_platform>;
    bool owned = false;
    const int fd = pool_fd(owned);
    RC_ASSERT(fd >= 0);
    detail::pool_header hdr{};
    RC_ASSERT(::pread(fd, &hdr, sizeof hdr, 0) == static_cast<ssize_t>(sizeof hdr));
    RC_ASSERT((hdr.magic == detail::pool_magic && s < hdr.capacity));
    void* base = ::mmap(nullptr, hdr.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (owned) ::close(fd);
    RC_ASSERT(static_cast<bool>(base != MAP_FAILED));
    auto* bytes = static_cast<std::byte*>(base);
    auto& meta = reinterpret_cast<meta_t*>(bytes + hdr.meta_offset)[s];
    const std::uint64_t id = identity_for(who);
    RC_ASSERT(id != 0u);
    if (meta.word.load() != 0) {  // not vacant (a full pool): nothing to forge, as the model skips it
      ::munmap(base, hdr.total_size);
      return 0;
    }
    meta.allocs.fetch_add(1);  // a claimant killed after its count (C3), or a publish
    meta.word.store(detail::make_slot_word(state, id));
    ::munmap(base, hdr.total_size);
    return platform::identity_pid(id);
  }
};

// ---- comparison after every command -------------------------------------------------

template <class T>
void expect_same(const pool_model<T>& m, pool_sut<T>& sut) {
  const std::vector<slot_index> allocated = m.allocated_slots();
  const std::vector<slot_index> in_flight = m.in_flight();
  for (auto& h : sut.h) {
    auto& p = *h;
    // check() names exactly the unfinished claims/releases (one line each).
    const auto problems = p.check();
    RC_ASSERT(problems.size() == in_flight.size());
    for (std::size_t i = 0; i < problems.size(); ++i)
      RC_ASSERT((problems[i].rfind("slot " + std::to_string(in_flight[i]) + ": ", 0) == 0 &&
                problems[i].find("in flight") != std::string::npos));
    RC_ASSERT(p.used() == m.used());
    RC_ASSERT(p.available() == model_capacity - m.used());
    RC_ASSERT(p.allocated_slots() == allocated);
    std::vector<slot_index> seen;
    p.each_allocated([&](slot_index i) { seen.push_back(i); });
    RC_ASSERT(seen == allocated);
    for (slot_index s = 0; s < model_capacity; ++s) {
      RC_ASSERT(p.is_allocated(s) == m.allocated(s));
      const pid_t want_owner = m.held.count(s) ? ::getpid() : m.foreign.count(s) ? m.foreign.at(s).pid : 0;
      RC_ASSERT(p.owner(s) == want_owner);
      if (const auto* v = m.value_of(s); v && v->has_value()) RC_ASSERT(T::read(p, s) == **v);
    }
    const pool_stats st = p.stats();
    RC_ASSERT(st.capacity == model_capacity);
    RC_ASSERT(st.used == m.used());
    RC_ASSERT(st.available == model_capacity - m.used());
    RC_ASSERT(st.waiters == 0u);
    RC_ASSERT(st.allocs == m.allocs);
    RC_ASSERT(st.frees == m.allocs - m.allocations_outstanding());
    RC_ASSERT(st.waits == m.waits);
    RC_ASSERT(st.timeouts == m.timeouts);
    RC_ASSERT(st.recoveries == m.recoveries);
  }
}

// Runs fn(pool) in a forked child that then exits; returns the slots it
// reported through a pipe (fn returns them) and sets `pid` to the child's.
template <class Pool, class F>
std::vector<slot_index> slots_left_by_child(Pool& p, F&& fn, pid_t& child) {
  int fds[2];
  RC_ASSERT(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    for (slot_index s : fn(p)) (void)!::write(fds[1], &s, sizeof s);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::vector<slot_index> got;
  slot_index s;
  while (::read(fds[0], &s, sizeof s) == sizeof s) got.push_back(s);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);  // reaped: its identity is certainly dead
  RC_ASSERT((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  child = pid;
  return got;
}

// A child process try_allocs k slots and exits without freeing them.
struct child_slots {
  std::vector<slot_index> slots;
  pid_t pid = 0;
};
template <class Pool>
child_slots child_allocs_and_exits(Pool& p, int k) {
  child_slots r;
  r.slots = slots_left_by_child(
      p,
      [k](Pool& q) {
        std::vector<slot_index> got;
        for (int i = 0; i < k; ++i)
          if (auto s = q.try_alloc()) got.push_back(*s);
        return got;
      },
      r.pid);
  return r;
}

// ---- a blocking alloc woken by another thread's free ---------------------------------

struct woken_alloc {
  std::optional<slot_index> got;  // what alloc() returned
  bool registered = false;        // the waiter was seen in stats().waiters
  bool freed = false;             // free/free_n freed the victim
  bool woken = false;             // alloc() returned without the rescue
};

// On a full pool: alloc() through `waiter` blocks; once it is registered as
// a waiter, another thread frees `victim` through `freer` (free, or free_n
// of one slot), which must wake it.  If alloc() has not returned a second
// later the wake-up was lost: recover_stale() (which always wakes sleepers)
// rescues it so the property can report instead of hanging.
template <class Pool>
woken_alloc alloc_woken_by_free(Pool& waiter, Pool& freer, slot_index victim, bool by_free_n) {
  using namespace std::chrono_literals;
  woken_alloc r;
  std::atomic<bool> returned{false};
  std::thread sleeper([&] {
    r.got = waiter.alloc();
    returned.store(true);
  });
  const auto give_up = std::chrono::steady_clock::now() + 2s;
  while (!(r.registered = freer.stats().waiters == 1) && !returned.load() &&
         std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(50us);
  std::this_thread::sleep_for(2ms);  // let it reach its futex wait
  r.freed = by_free_n ? freer.free_n(std::span<const slot_index>(&victim, 1)) == 1 : freer.free(victim);
  const auto wake_deadline = std::chrono::steady_clock::now() + 1s;
  while (!returned.load() && std::chrono::steady_clock::now() < wake_deadline) std::this_thread::sleep_for(50us);
  r.woken = returned.load();
  if (!r.woken) (void)freer.recover_stale();
  sleeper.join();
  return r;
}

}  // namespace shmpool::model
