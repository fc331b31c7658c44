// fuzz_registry, mode 2: stable_reference_buffer operations against a model
// of blocks (bytes, references) and handles, inside up to three nested
// delay_deallocation scopes.  Single-threaded; every step is checked.
#pragma once

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "pool_fuzz_support.hpp"
#include "shmpool/stable_reference_buffer.hpp"

namespace shmpool_fuzz {

class buffer_ops {
 public:
  explicit buffer_ops(byte_reader& in) : in_(in) {}
  ~buffer_ops() {
    for (std::size_t k = 0; k < handles; ++k) drop(k), h_[k].reset();
    require_kept_intact();
    while (!scopes_.empty()) close_scope();
  }
  buffer_ops(const buffer_ops&) = delete;
  buffer_ops& operator=(const buffer_ops&) = delete;

  void run() {
    for (int k = 0; k < 128 && !in_.empty(); ++k) {
      step(in_.u8() % 9);
      require_agrees();
    }
  }

 private:
  static constexpr std::size_t handles = 6;
  static constexpr std::size_t max_scopes = 3;
  struct block {
    std::string bytes;
    std::size_t refs = 0;
    const void* at = nullptr;
  };
  struct handle {
    int block = -1;  // index into blocks_; -1 when empty
    bool adopted = false;
  };
  using srb = shmpool::stable_reference_buffer;

  std::size_t pick() { return in_.u8() % handles; }

  void step(unsigned op) {
    const std::size_t a = pick(), b = pick();
    if (trace_) std::fprintf(stderr, "step op=%u a=%zu b=%zu\n", op, a, b);
    switch (op) {
      case 0: create(a); break;
      case 1: take(b, handle(m_[a]), [&] { h_[b] = h_[a]; }); break;
      case 2: if (a != b) move(a, b); break;
      case 3: drop(a), h_[a].reset(), m_[a] = {}; break;
      case 4: adopt(a, b); break;
      case 5: append(a); break;
      case 6: if (scopes_.size() < max_scopes) scopes_.push_back(std::make_unique<srb::delay_deallocation>()); break;
      case 7: if (!scopes_.empty()) close_scope(); break;
      default: h_[a].swap(h_[b]), std::swap(m_[a], m_[b]); break;
    }
  }

  // Handle k gets `next` by running assign; the old reference is dropped after.
  template <class F>
  void take(std::size_t k, handle next, F&& assign) {
    if (next.block >= 0) ++blocks_[next.block].refs;
    const handle old = m_[k];
    m_[k] = next;  // drop() reads the old handle's block, not m_[k]
    release(old);
    assign();
  }

  // A move hands the reference over: no count changes but the target's old one.
  void move(std::size_t from, std::size_t to) {
    const handle moved = m_[from];
    take(to, moved, [&] { h_[to] = std::move(h_[from]); });
    m_[from] = {};
    if (moved.block >= 0) --blocks_[moved.block].refs;
  }

  void drop(std::size_t k) { release(m_[k]); m_[k] = {}; }
  void release(const handle& old) {
    if (old.block < 0) return;
    block& b = blocks_[old.block];
    if (--b.refs == 0 && !scopes_.empty()) kept_.push_back(b);  // must stay readable until the last scope ends
  }

  void create(std::size_t k) {
    const std::size_t n = in_.u8() % 40;
    srb fresh(n);
    handle next;
    if (n != 0) {
      blocks_.push_back({std::string(n, '\0'), 0, fresh.get()});
      next.block = static_cast<int>(blocks_.size() - 1);
    }
    take(k, next, [&] { h_[k] = std::move(fresh); });
  }

  void adopt(std::size_t from, std::size_t to) {
    if (m_[from].block < 0) return;
    srb adopted(h_[from].get());
    take(to, handle{m_[from].block, true}, [&] { h_[to] = std::move(adopted); });
  }

  void append(std::size_t k) {
    const std::string more = in_.bytes(1 + in_.u8() % 24);
    if (more.empty()) return;  // the input ran out: what append(p, 0) means is not our question
    handle& m = m_[k];
    try {
      h_[k].append(more.data(), more.size());
      require(!m.adopted, "append to an adopted buffer did not throw");
    } catch (const std::logic_error&) {
      require(m.adopted, "append threw on a buffer of its own");
      return;
    }
    if (m.block >= 0 && blocks_[m.block].refs == 1) {  // exclusive: grows in place (it may move)
      blocks_[m.block].bytes += more;
      blocks_[m.block].at = h_[k].get();
      return;
    }
    const std::string base = m.block >= 0 ? blocks_[m.block].bytes : std::string();
    const handle old = m;
    blocks_.push_back({base + more, 1, h_[k].get()});
    m = {static_cast<int>(blocks_.size() - 1), false};
    release(old);
  }

  void close_scope() {
    require_kept_intact();
    scopes_.pop_back();
    if (scopes_.empty()) kept_.clear();  // now freed, exactly once
  }

  void require_kept_intact() const {
    for (const block& b : kept_)
      require(std::memcmp(b.at, b.bytes.data(), b.bytes.size()) == 0, "a kept block changed before its scope ended");
  }

  void require_agrees() const {
    for (std::size_t k = 0; k < handles && trace_; ++k)
      std::fprintf(stderr, "  h%zu: get=%p use_count=%zu size=%zu | model block %d refs %zu adopted %d\n", k,
                   h_[k].get(), h_[k].use_count(), h_[k].size(), m_[k].block,
                   m_[k].block < 0 ? 0 : blocks_[m_[k].block].refs, m_[k].adopted);
    for (std::size_t k = 0; k < handles; ++k) {
      const srb& h = h_[k];
      if (m_[k].block < 0) {
        require(h.get() == nullptr && h.use_count() == 0 && h.size() == 0, "an empty buffer is not empty", k);
        continue;
      }
      const block& b = blocks_[m_[k].block];
      require(h.get() == b.at, "a buffer points elsewhere than the model", k);
      require(h.use_count() == b.refs, "use_count disagrees with the model", h.use_count(), b.refs);
      require(h.size() == (m_[k].adopted ? 0 : b.bytes.size()), "size disagrees with the model", h.size());
      require(std::memcmp(h.get(), b.bytes.data(), b.bytes.size()) == 0, "a buffer's bytes changed", k);
      require(srb::is_known(h.get()), "a referenced block is unknown to the registry", k);
    }
    require_kept_intact();
  }

  byte_reader& in_;
  const bool trace_ = std::getenv("SHMPOOL_FUZZ_TRACE") != nullptr;  // prints each step
  std::array<srb, handles> h_;
  std::array<handle, handles> m_{};
  std::vector<block> blocks_;
  std::vector<block> kept_;
  std::vector<std::unique_ptr<srb::delay_deallocation>> scopes_;
};

inline void run_buffer_ops(byte_reader& in) {
  buffer_ops ops(in);
  ops.run();
}

}  // namespace shmpool_fuzz
