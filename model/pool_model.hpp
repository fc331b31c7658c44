// The plain model of a pool, the system under test (two handles onto one
// pool), and the comparison run after every command.  Used by
// pool_model_test.cpp; one traits struct per variant.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <rapidcheck.h>

#include "shmpool/pool.hpp"

namespace shmpool::model {

namespace fs = std::filesystem;
inline constexpr std::uint64_t model_capacity = 6;  // small: full pools come often

// ---- variants ------------------------------------------------------------------

struct i64_traits {
  using pool_type = shmpool::i64_pool;
  using value = std::int64_t;
  static constexpr bool integer = true;
  static constexpr const char* name = "i64_pool";
  static pool_type open(const fs::path& p) { return pool_type::open(p, model_capacity); }
  static pool_type memfd() { return pool_type::memfd("model", model_capacity); }
  static rc::Gen<value> gen() { return rc::gen::arbitrary<value>(); }
  static value stored(value v) { return v; }
  static value read(const pool_type& p, slot_index i) { return p.get(i); }
  static std::string show(value v) { return std::to_string(v); }
};

struct i32_traits {
  using pool_type = shmpool::i32_pool;
  using value = std::int32_t;
  static constexpr bool integer = true;
  static constexpr const char* name = "i32_pool";
  static pool_type open(const fs::path& p) { return pool_type::open(p, model_capacity); }
  static pool_type memfd() { return pool_type::memfd("model", model_capacity); }
  static rc::Gen<value> gen() { return rc::gen::arbitrary<value>(); }
  static value stored(value v) { return v; }
  static value read(const pool_type& p, slot_index i) { return p.get(i); }
  static std::string show(value v) { return std::to_string(v); }
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
    return rc::gen::container<std::string>(*rc::gen::inRange<std::size_t>(0, max_len + 5),
                                           rc::gen::inRange('a', 'z'));
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
    return rc::gen::container<std::string>(*rc::gen::inRange<std::size_t>(0, elem_size + 4),
                                           rc::gen::inRange('A', 'Z'));
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
  static std::string show(const value& v) { return "as_bytes(\"" + v + "\")"; }
};

// Passes a model value to the pool's set()/alloc_set().
template <class T>
auto arg_of(const typename T::value& v) {
  if constexpr (std::is_same_v<T, f64_traits>) return T::as_arg(v);
  else if constexpr (std::is_same_v<T, raw_traits>)
    return std::as_bytes(std::span<const char>(v.data(), v.size()));
  else return v;
}

// ---- the model -----------------------------------------------------------------

template <class T>
struct pool_model {
  std::map<slot_index, std::optional<typename T::value>> held;  // ours; value unknown until set
  std::set<slot_index> dead;  // held by a child process that has exited
  std::uint64_t allocs = 0, waits = 0, timeouts = 0, recoveries = 0;
  bool file_backed = true;

  bool is_free(slot_index s) const { return held.count(s) == 0 && dead.count(s) == 0; }
  std::uint64_t used() const { return held.size() + dead.size(); }
  std::uint64_t free_count() const { return model_capacity - used(); }
  std::vector<slot_index> allocated() const {
    std::set<slot_index> all(dead);
    for (const auto& [s, v] : held) all.insert(s);
    return {all.begin(), all.end()};
  }
  bool known(slot_index s) const { return held.count(s) && held.at(s).has_value(); }
};

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
};

// ---- comparison after every command -------------------------------------------------

template <class T>
void expect_same(const pool_model<T>& m, pool_sut<T>& sut) {
  for (auto& h : sut.h) {
    auto& p = *h;
    RC_ASSERT(p.check().empty());
    RC_ASSERT(p.used() == m.used());
    RC_ASSERT(p.available() == model_capacity - m.used());
    RC_ASSERT(p.allocated_slots() == m.allocated());
    std::vector<slot_index> seen;
    p.each_allocated([&](slot_index i) { seen.push_back(i); });
    RC_ASSERT(seen == m.allocated());
    for (slot_index s = 0; s < model_capacity; ++s) {
      RC_ASSERT(p.is_allocated(s) == !m.is_free(s));
      if (m.known(s)) RC_ASSERT(T::read(p, s) == *m.held.at(s));
    }
    const pool_stats st = p.stats();
    RC_ASSERT(st.capacity == model_capacity);
    RC_ASSERT(st.used == m.used());
    RC_ASSERT(st.available == model_capacity - m.used());
    RC_ASSERT(st.waiters == 0u);
    RC_ASSERT(st.allocs == m.allocs);
    RC_ASSERT(st.frees == m.allocs - m.used());
    RC_ASSERT(st.waits == m.waits);
    RC_ASSERT(st.timeouts == m.timeouts);
    RC_ASSERT(st.recoveries == m.recoveries);
  }
}

// Runs fn(pool) in a forked child that then exits; returns the slots it
// reported through a pipe (fn returns them).
template <class Pool, class F>
std::vector<slot_index> slots_left_by_child(Pool& p, F&& fn) {
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
  RC_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return got;
}

}  // namespace shmpool::model
