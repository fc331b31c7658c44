// The peers the pool is measured against, each placed in a MAP_SHARED mapping
// so that forked workers share it exactly as they share a pool:
//
//   shared_region     an anonymous MAP_SHARED mapping (inherited by fork)
//   hw_floor          the hardware floor: one std::atomic word on the mapping
//   mutex_freelist    a stack of free indices under a process-shared robust
//                     pthread_mutex (the "just use a lock" baseline)
//   loffli_peer       iceoryx's lock-free index free list (LoFFLi), the list
//                     iceoryx's shared-memory mempools allocate chunks from
//   boost_peer        Boost.Interprocess managed_shared_memory: fixed-size
//                     allocate/deallocate, node_allocator, adaptive_pool
//
// A peer missing at build time (bench/CMakeLists.txt) is compiled out;
// print_skipped_peers() says which.
#pragma once

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

#if defined(SHMPOOL_BENCH_HAVE_ICEORYX)
#include "iceoryx_hoofs/internal/concurrent/loffli.hpp"
#endif
#if defined(SHMPOOL_BENCH_HAVE_BOOST)
#include <boost/interprocess/allocators/adaptive_pool.hpp>
#include <boost/interprocess/allocators/node_allocator.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#endif

namespace shmpool::bench {

inline bool smoke_mode() {
  const char* s = std::getenv("SHMPOOL_BENCH_SMOKE");
  return s != nullptr && *s != '\0' && *s != '0';
}

inline void print_skipped_peers() {
#if !defined(SHMPOOL_BENCH_HAVE_ICEORYX)
  std::fprintf(stderr, "peer skipped: iceoryx LoFFLi (libiceoryx-hoofs-dev not found at build time)\n");
#endif
#if !defined(SHMPOOL_BENCH_HAVE_BOOST)
  std::fprintf(stderr, "peer skipped: Boost.Interprocess (libboost-dev not found at build time)\n");
#endif
}

// An anonymous MAP_SHARED mapping: the same bytes in every forked child.
class shared_region {
 public:
  explicit shared_region(std::size_t bytes) : size_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      std::perror("mmap");
      std::abort();
    }
    base_ = static_cast<std::byte*>(p);
  }
  shared_region(const shared_region&) = delete;
  shared_region& operator=(const shared_region&) = delete;
  ~shared_region() { ::munmap(base_, size_); }
  std::byte* base() const noexcept { return base_; }
  template <class T>
  T* at(std::size_t offset = 0) const noexcept { return reinterpret_cast<T*>(base_ + offset); }

 private:
  std::byte* base_;
  std::size_t size_;
};

// ---- the hardware floor -------------------------------------------------------
struct alignas(64) hw_floor {
  std::atomic<std::uint64_t> word{0};
  void fetch_add() noexcept { word.fetch_add(1, std::memory_order_acq_rel); }
  void cas_increment() noexcept {
    std::uint64_t cur = word.load(std::memory_order_relaxed);
    while (!word.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) {
    }
  }
};

// ---- the mutex baseline -------------------------------------------------------
// A stack of free indices under a robust, process-shared mutex.
class mutex_freelist {
 public:
  static std::size_t bytes_for(std::uint32_t capacity) {
    return sizeof(mutex_freelist) + sizeof(std::uint32_t) * capacity;
  }
  static mutex_freelist* create(void* where, std::uint32_t capacity) {
    auto* f = new (where) mutex_freelist;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&f->mutex_, &a);
    pthread_mutexattr_destroy(&a);
    f->top_ = capacity;
    for (std::uint32_t i = 0; i < capacity; ++i) f->stack()[i] = capacity - 1 - i;
    return f;
  }
  bool alloc(std::uint32_t& out) {
    lock();
    const bool ok = top_ != 0;
    if (ok) out = stack()[--top_];
    pthread_mutex_unlock(&mutex_);
    return ok;
  }
  void free(std::uint32_t i) {
    lock();
    stack()[top_++] = i;
    pthread_mutex_unlock(&mutex_);
  }

 private:
  void lock() {
    if (pthread_mutex_lock(&mutex_) == EOWNERDEAD) pthread_mutex_consistent(&mutex_);
  }
  std::uint32_t* stack() noexcept { return reinterpret_cast<std::uint32_t*>(this + 1); }
  pthread_mutex_t mutex_;
  std::uint32_t top_ = 0;
};

// ---- iceoryx LoFFLi ---------------------------------------------------------------
#if defined(SHMPOOL_BENCH_HAVE_ICEORYX)
// The list object and its index memory both live in the shared mapping.
// (LoFFLi reaches its index memory through a RelativePointer; fork keeps
// the mapping at one address, so every worker resolves it the same way.)
class loffli_peer {
 public:
  using index_t = iox::concurrent::LoFFLi::Index_t;
  static std::size_t bytes_for(std::uint32_t capacity) {
    return 64 + iox::concurrent::LoFFLi::requiredIndexMemorySize(capacity);
  }
  static iox::concurrent::LoFFLi* create(void* where, std::uint32_t capacity) {
    auto* l = new (where) iox::concurrent::LoFFLi;
    auto* mem = reinterpret_cast<index_t*>(static_cast<std::byte*>(where) + 64);
    static_assert(sizeof(iox::concurrent::LoFFLi) <= 64);
    l->init(iox::cxx::not_null<index_t*>(mem), capacity);
    return l;
  }
};
#endif

// ---- Boost.Interprocess ------------------------------------------------------
#if defined(SHMPOOL_BENCH_HAVE_BOOST)
namespace bip = boost::interprocess;
// A named segment (Boost needs a name), removed when this object dies in the
// process that created it.
class boost_segment {
 public:
  explicit boost_segment(std::size_t bytes)
      : name_("shmpool_bench_" + std::to_string(::getpid())), owner_(::getpid()) {
    bip::shared_memory_object::remove(name_.c_str());
    seg_ = new bip::managed_shared_memory(bip::create_only, name_.c_str(), bytes);
  }
  boost_segment(const boost_segment&) = delete;
  boost_segment& operator=(const boost_segment&) = delete;
  ~boost_segment() {
    delete seg_;
    if (::getpid() == owner_) bip::shared_memory_object::remove(name_.c_str());
  }
  bip::managed_shared_memory& seg() noexcept { return *seg_; }

 private:
  std::string name_;
  pid_t owner_;
  bip::managed_shared_memory* seg_;
};
using boost_node_alloc = bip::node_allocator<std::int64_t, bip::managed_shared_memory::segment_manager>;
using boost_adaptive = bip::adaptive_pool<std::int64_t, bip::managed_shared_memory::segment_manager>;
#endif

}  // namespace shmpool::bench
