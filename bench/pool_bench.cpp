// pool_bench: single-process throughput of every row of the seed's table,
// for every pool variant, next to the hardware floor and the peers, plus
// batch alloc_n/free_n and the blocking hand-off latency.
//
// One iteration is one row of the seed's table: "alloc+free" is one alloc
// and one free, "get/set" one get and one set, "add" one add.  items/s is
// therefore "row operations per second", the seed's unit.  Batch rows count
// one batch (n slots allocated and freed) per iteration.
#include <benchmark/benchmark.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "peers.hpp"
#include "shmpool/pool.hpp"

namespace {

using namespace shmpool;
using namespace shmpool::bench;

constexpr std::uint64_t kCapacity = 1024;  // single process: free slots always at hand
constexpr std::size_t kStrLen = 48;        // the seed's Str rows

// ---- the hardware floor --------------------------------------------------------

void BM_floor_fetch_add(benchmark::State& st) {
  shared_region r(4096);
  auto* f = new (r.base()) hw_floor;
  for (auto _ : st) f->fetch_add();
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_floor_fetch_add);

void BM_floor_cas_loop(benchmark::State& st) {
  shared_region r(4096);
  auto* f = new (r.base()) hw_floor;
  for (auto _ : st) f->cas_increment();
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_floor_cas_loop);

// One acquire load and one release store: the floor of get/set.
void BM_floor_load_store(benchmark::State& st) {
  shared_region r(4096);
  auto* f = new (r.base()) hw_floor;
  std::uint64_t v = 0;
  for (auto _ : st) {
    v = f->word.load(std::memory_order_acquire);
    benchmark::DoNotOptimize(v);
    f->word.store(v + 1, std::memory_order_release);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_floor_load_store);

// ---- the pool: every seed row, every variant ------------------------------------

template <class Pool>
Pool make_pool(std::uint64_t capacity) {
  if constexpr (std::is_same_v<Pool, str_pool>) return str_pool::anonymous(capacity, kStrLen);
  else if constexpr (std::is_same_v<Pool, pool>) return pool::anonymous(capacity, kStrLen);
  else return Pool::anonymous(capacity);
}

template <class Pool>
void BM_alloc_free(benchmark::State& st) {
  auto p = make_pool<Pool>(kCapacity);
  for (auto _ : st) {
    auto i = p.alloc();
    benchmark::DoNotOptimize(i);
    p.free(*i);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_alloc_free<i64_pool>)->Name("BM_i64_alloc_free");
BENCHMARK(BM_alloc_free<i32_pool>)->Name("BM_i32_alloc_free");
BENCHMARK(BM_alloc_free<f64_pool>)->Name("BM_f64_alloc_free");
BENCHMARK(BM_alloc_free<str_pool>)->Name("BM_str_alloc_free");
BENCHMARK(BM_alloc_free<pool>)->Name("BM_raw_alloc_free");

template <class Pool>
void BM_get_set(benchmark::State& st) {
  auto p = make_pool<Pool>(kCapacity);
  const auto i = *p.alloc();
  p.set(i, 1);
  for (auto _ : st) {
    auto v = p.get(i);
    benchmark::DoNotOptimize(v);
    p.set(i, v + 1);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_get_set<i64_pool>)->Name("BM_i64_get_set");
BENCHMARK(BM_get_set<i32_pool>)->Name("BM_i32_get_set");
BENCHMARK(BM_get_set<f64_pool>)->Name("BM_f64_get_set");

template <class Pool>
void BM_add(benchmark::State& st) {
  auto p = make_pool<Pool>(kCapacity);
  const auto i = *p.alloc();
  for (auto _ : st) benchmark::DoNotOptimize(p.add(i, 1));
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_add<i64_pool>)->Name("BM_i64_add");
BENCHMARK(BM_add<i32_pool>)->Name("BM_i32_add");

template <class Pool>
void BM_incr(benchmark::State& st) {
  auto p = make_pool<Pool>(kCapacity);
  const auto i = *p.alloc();
  for (auto _ : st) benchmark::DoNotOptimize(p.incr(i));
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_incr<i64_pool>)->Name("BM_i64_incr");
BENCHMARK(BM_incr<i32_pool>)->Name("BM_i32_incr");

// A successful CAS every time (the seed's row): expected tracks the value.
template <class Pool>
void BM_cas(benchmark::State& st) {
  auto p = make_pool<Pool>(kCapacity);
  const auto i = *p.alloc();
  p.set(i, 0);
  decltype(p.get(i)) v = 0;
  for (auto _ : st) {
    const bool ok = p.cas(i, v, v + 1);
    benchmark::DoNotOptimize(ok);
    ++v;
  }
  if (p.get(i) != v) st.SkipWithError("cas: lost an update");
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_cas<i64_pool>)->Name("BM_i64_cas");
BENCHMARK(BM_cas<i32_pool>)->Name("BM_i32_cas");

void BM_i64_xchg(benchmark::State& st) {
  auto p = i64_pool::anonymous(kCapacity);
  const auto i = *p.alloc();
  std::int64_t v = 0;
  for (auto _ : st) v = p.xchg(i, v + 1);
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_i64_xchg);

template <class Pool, class V>
void BM_alloc_set_free(benchmark::State& st, V v) {
  auto p = make_pool<Pool>(kCapacity);
  for (auto _ : st) {
    auto i = p.alloc_set(v);
    benchmark::DoNotOptimize(i);
    p.free(*i);
  }
  st.SetItemsProcessed(st.iterations());
}
const std::string k48(kStrLen, 'x');
const std::array<std::byte, kStrLen> k48bytes{};
void BM_i64_alloc_set_free(benchmark::State& st) { BM_alloc_set_free<i64_pool>(st, std::int64_t{42}); }
void BM_i32_alloc_set_free(benchmark::State& st) { BM_alloc_set_free<i32_pool>(st, std::int32_t{42}); }
void BM_f64_alloc_set_free(benchmark::State& st) { BM_alloc_set_free<f64_pool>(st, 4.2); }
void BM_str_alloc_set_free(benchmark::State& st) { BM_alloc_set_free<str_pool>(st, std::string_view(k48)); }
void BM_raw_alloc_set_free(benchmark::State& st) {
  BM_alloc_set_free<pool>(st, std::span<const std::byte>(k48bytes));
}
BENCHMARK(BM_i64_alloc_set_free);
BENCHMARK(BM_i32_alloc_set_free);
BENCHMARK(BM_f64_alloc_set_free);
BENCHMARK(BM_str_alloc_set_free);
BENCHMARK(BM_raw_alloc_set_free);

void BM_str_set_48(benchmark::State& st) {
  auto p = str_pool::anonymous(kCapacity, kStrLen);
  const auto i = *p.alloc();
  for (auto _ : st) p.set(i, k48);
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_str_set_48);

// str_pool::get returns a std::string: 48 bytes do not fit the SSO buffer,
// so every get allocates.  BM_raw_get_48 is the zero-copy view.
void BM_str_get_48(benchmark::State& st) {
  auto p = str_pool::anonymous(kCapacity, kStrLen);
  const auto i = *p.alloc();
  p.set(i, k48);
  for (auto _ : st) benchmark::DoNotOptimize(p.get(i));
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_str_get_48);

void BM_raw_set_48(benchmark::State& st) {
  auto p = pool::anonymous(kCapacity, kStrLen);
  const auto i = *p.alloc();
  for (auto _ : st) p.set(i, k48bytes);
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_raw_set_48);

void BM_raw_get_48(benchmark::State& st) {
  auto p = pool::anonymous(kCapacity, kStrLen);
  const auto i = *p.alloc();
  for (auto _ : st) {
    auto s = p.get(i);
    benchmark::DoNotOptimize(s.data());
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_raw_get_48);

// used() and stats() over a pool half full, at capacities 64 and 4096.
void BM_used(benchmark::State& st) {
  auto p = i64_pool::anonymous(static_cast<std::uint64_t>(st.range(0)));
  for (std::int64_t k = 0; k < st.range(0) / 2; ++k) (void)p.alloc();
  for (auto _ : st) benchmark::DoNotOptimize(p.used());
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_used)->Arg(64)->Arg(4096);

void BM_stats(benchmark::State& st) {
  auto p = i64_pool::anonymous(static_cast<std::uint64_t>(st.range(0)));
  for (std::int64_t k = 0; k < st.range(0) / 2; ++k) (void)p.alloc();
  for (auto _ : st) benchmark::DoNotOptimize(p.stats());
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_stats)->Arg(64)->Arg(4096);

// ---- batch: alloc_n + free_n against n single calls --------------------------------

void BM_batch_alloc_n_free_n(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  auto p = i64_pool::anonymous(kCapacity);
  for (auto _ : st) {
    auto got = p.alloc_n(n);
    p.free_n(*got);
  }
  st.SetItemsProcessed(st.iterations() * static_cast<std::int64_t>(n));
}
BENCHMARK(BM_batch_alloc_n_free_n)->Arg(1)->Arg(16)->Arg(64);

void BM_batch_single_calls(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  auto p = i64_pool::anonymous(kCapacity);
  std::vector<slot_index> got(n);
  for (auto _ : st) {
    for (std::size_t k = 0; k < n; ++k) got[k] = *p.alloc();
    for (std::size_t k = 0; k < n; ++k) p.free(got[k]);
  }
  st.SetItemsProcessed(st.iterations() * static_cast<std::int64_t>(n));
}
BENCHMARK(BM_batch_single_calls)->Arg(1)->Arg(16)->Arg(64);

// ---- blocking hand-off: free -> a waiter blocked in alloc --------------------------
//
// A forked child blocks in alloc() on a full pool of one slot; the parent
// waits until the child is counted as a waiter (and a little longer, so it
// is asleep in the futex), stamps the clock and frees.  The child stamps the
// clock when alloc returns and frees the slot; the parent takes it back.
// Reported: median and p99 of the hand-off in ns (manual time = median).

std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

struct handoff_shared {
  std::atomic<std::int64_t> freed_at{0};
  std::atomic<int> round{0};  // the parent holds the slot again for this round
  std::atomic<int> taken{0};  // the child has taken the slot this many times
  std::atomic<int> futex_word{0};
  std::int64_t* samples() noexcept { return reinterpret_cast<std::int64_t*>(this + 1); }
};

void BM_blocking_handoff(benchmark::State& st) {
  const int rounds = smoke_mode() ? 20 : 2000;
  shared_region r(sizeof(handoff_shared) + sizeof(std::int64_t) * static_cast<std::size_t>(rounds));
  auto* sh = new (r.base()) handoff_shared;
  auto p = i64_pool::anonymous(1);
  std::vector<double> lat;
  for (auto _ : st) {
    const auto held = *p.alloc();
    sh->round.store(0, std::memory_order_release);
    sh->taken.store(0, std::memory_order_release);
    const pid_t child = ::fork();
    if (child == 0) {
      for (int k = 0; k < rounds; ++k) {
        while (sh->round.load(std::memory_order_acquire) < k) ::sched_yield();
        const auto i = p.alloc();  // blocks: the parent holds the only slot
        sh->samples()[k] = now_ns() - sh->freed_at.load(std::memory_order_acquire);
        sh->taken.store(k + 1, std::memory_order_release);
        p.free(*i);
      }
      ::_exit(0);
    }
    auto slot = held;
    for (int k = 0; k < rounds; ++k) {
      while (p.stats().waiters == 0) ::sched_yield();
      timespec pause{0, 200'000};  // let the waiter reach futex_wait
      ::nanosleep(&pause, nullptr);
      sh->freed_at.store(now_ns(), std::memory_order_release);
      p.free(slot);
      while (sh->taken.load(std::memory_order_acquire) < k + 1) ::sched_yield();
      slot = *p.alloc();  // the child frees it right after stamping
      sh->round.store(k + 1, std::memory_order_release);
    }
    p.free(slot);
    int status = 0;
    ::waitpid(child, &status, 0);
    lat.assign(sh->samples(), sh->samples() + rounds);
    std::sort(lat.begin(), lat.end());
    st.SetIterationTime(lat[lat.size() / 2] * 1e-9);
  }
  st.counters["median_ns"] = lat[lat.size() / 2];
  st.counters["p99_ns"] = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
  st.counters["rounds"] = rounds;
}
BENCHMARK(BM_blocking_handoff)->Iterations(1)->UseManualTime();

// The floor of the hand-off: the same dance on a bare shared futex word
// (FUTEX_WAIT in the child, FUTEX_WAKE after the stamp in the parent).
void BM_floor_futex_handoff(benchmark::State& st) {
  const int rounds = smoke_mode() ? 20 : 2000;
  shared_region r(sizeof(handoff_shared) + sizeof(std::int64_t) * static_cast<std::size_t>(rounds));
  auto* sh = new (r.base()) handoff_shared;
  auto* word = reinterpret_cast<int*>(&sh->futex_word);
  std::vector<double> lat;
  for (auto _ : st) {
    sh->round.store(0);
    sh->taken.store(0);
    sh->futex_word.store(0);
    const pid_t child = ::fork();
    if (child == 0) {
      for (int k = 0; k < rounds; ++k) {
        while (sh->futex_word.load(std::memory_order_acquire) == k) {
          sh->round.store(k + 1, std::memory_order_release);  // "about to sleep"
          ::syscall(SYS_futex, word, FUTEX_WAIT, k, nullptr, nullptr, 0);
        }
        sh->samples()[k] = now_ns() - sh->freed_at.load(std::memory_order_acquire);
        sh->taken.store(k + 1, std::memory_order_release);
      }
      ::_exit(0);
    }
    for (int k = 0; k < rounds; ++k) {
      while (sh->round.load(std::memory_order_acquire) < k + 1) ::sched_yield();
      timespec pause{0, 200'000};
      ::nanosleep(&pause, nullptr);
      sh->freed_at.store(now_ns(), std::memory_order_release);
      sh->futex_word.store(k + 1, std::memory_order_release);
      ::syscall(SYS_futex, word, FUTEX_WAKE, 1, nullptr, nullptr, 0);
      while (sh->taken.load(std::memory_order_acquire) < k + 1) ::sched_yield();
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    lat.assign(sh->samples(), sh->samples() + rounds);
    std::sort(lat.begin(), lat.end());
    st.SetIterationTime(lat[lat.size() / 2] * 1e-9);
  }
  st.counters["median_ns"] = lat[lat.size() / 2];
  st.counters["p99_ns"] = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
  st.counters["rounds"] = rounds;
}
BENCHMARK(BM_floor_futex_handoff)->Iterations(1)->UseManualTime();

// ---- peers, single process ---------------------------------------------------------

void BM_peer_mutex_alloc_free(benchmark::State& st) {
  shared_region r(mutex_freelist::bytes_for(kCapacity));
  auto* f = mutex_freelist::create(r.base(), kCapacity);
  std::uint32_t i = 0;
  for (auto _ : st) {
    f->alloc(i);
    f->free(i);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_peer_mutex_alloc_free);

#if defined(SHMPOOL_BENCH_HAVE_ICEORYX)
void BM_peer_loffli_alloc_free(benchmark::State& st) {
  shared_region r(loffli_peer::bytes_for(kCapacity));
  auto* l = loffli_peer::create(r.base(), kCapacity);
  loffli_peer::index_t i = 0;
  for (auto _ : st) {
    l->pop(i);
    l->push(i);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_peer_loffli_alloc_free);
#endif

#if defined(SHMPOOL_BENCH_HAVE_BOOST)
void BM_peer_boost_alloc_free(benchmark::State& st) {
  boost_segment s(1 << 20);
  for (auto _ : st) {
    void* q = s.seg().allocate(sizeof(std::int64_t));
    benchmark::DoNotOptimize(q);
    s.seg().deallocate(q);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_peer_boost_alloc_free);

template <class Alloc>
void BM_peer_boost_pool(benchmark::State& st) {
  boost_segment s(1 << 20);
  Alloc a(s.seg().get_segment_manager());
  for (auto _ : st) {
    auto q = a.allocate(1);
    benchmark::DoNotOptimize(q);
    a.deallocate(q, 1);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_peer_boost_pool<boost_node_alloc>)->Name("BM_peer_boost_node_allocator_alloc_free");
BENCHMARK(BM_peer_boost_pool<boost_adaptive>)->Name("BM_peer_boost_adaptive_pool_alloc_free");
#endif

}  // namespace

int main(int argc, char** argv) {
  print_skipped_peers();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
