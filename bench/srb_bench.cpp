// srb_bench: stable_reference_buffer against std::shared_ptr.
//
//   BM_srb_copy_destroy        copy an instance and destroy the copy
//   BM_shared_ptr_copy_destroy the same with std::shared_ptr<char[]> (the peer)
//   BM_srb_adopt_destroy       adopt from a raw pointer (registry lookup) and destroy
//   BM_srb_append_16           append 16 bytes to an exclusive buffer (reset every 64 KiB)
//   BM_srb_delay_scope         enter and leave a delay_deallocation scope
//
// Argument: live buffers besides the one measured (1, 1K, 1M; 1K at most in
// smoke mode), kept in the registry for the whole run to show the cost is
// flat.  threads:2 runs: both threads copy the same block (a contended count).
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "peers.hpp"
#include "shmpool/stable_reference_buffer.hpp"

namespace {

using shmpool::stable_reference_buffer;

std::vector<stable_reference_buffer> g_live_srb;
std::vector<std::shared_ptr<char[]>> g_live_sp;
stable_reference_buffer g_srb;
std::shared_ptr<char[]> g_sp;

std::size_t live_count(std::int64_t arg) {
  const auto n = static_cast<std::size_t>(arg);
  return shmpool::bench::smoke_mode() && n > 1000 ? 1000 : n;
}

void setup_srb(const benchmark::State& st) {
  const std::size_t n = live_count(st.range(0));
  if (g_live_srb.size() > n) g_live_srb.resize(n);
  g_live_srb.reserve(n);
  while (g_live_srb.size() < n) g_live_srb.emplace_back(16);
  g_srb = stable_reference_buffer(64);
}
void teardown_srb(const benchmark::State&) { g_srb.reset(); }

void setup_sp(const benchmark::State& st) {
  const std::size_t n = live_count(st.range(0));
  if (g_live_sp.size() > n) g_live_sp.resize(n);
  while (g_live_sp.size() < n) g_live_sp.emplace_back(new char[16]());
  g_sp = std::shared_ptr<char[]>(new char[64]());
}
void teardown_sp(const benchmark::State&) { g_sp.reset(); }

void BM_srb_copy_destroy(benchmark::State& st) {
  for (auto _ : st) {
    stable_reference_buffer c(g_srb);
    benchmark::DoNotOptimize(c.get());
  }
  st.SetItemsProcessed(st.iterations());
}

void BM_shared_ptr_copy_destroy(benchmark::State& st) {
  for (auto _ : st) {
    std::shared_ptr<char[]> c(g_sp);
    benchmark::DoNotOptimize(c.get());
  }
  st.SetItemsProcessed(st.iterations());
}

void BM_srb_adopt_destroy(benchmark::State& st) {
  const void* raw = g_srb.get();
  for (auto _ : st) {
    stable_reference_buffer c(raw);
    benchmark::DoNotOptimize(c.get());
  }
  st.SetItemsProcessed(st.iterations());
}

void BM_srb_append_16(benchmark::State& st) {
  const char bytes[16] = "0123456789abcde";
  stable_reference_buffer b;
  for (auto _ : st) {
    b.append(bytes, sizeof bytes);
    if (b.size() >= 64 * 1024) b.reset();
  }
  st.SetItemsProcessed(st.iterations());
}

void BM_srb_delay_scope(benchmark::State& st) {
  for (auto _ : st) {
    stable_reference_buffer::delay_deallocation scope;
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations());
}

void live_args(benchmark::internal::Benchmark* b) {
  for (const std::int64_t n : {1, 1000, 1000000}) b->Arg(n);
  b->ArgName("live");
}

BENCHMARK(BM_srb_copy_destroy)->Apply(live_args)->Setup(setup_srb)->Teardown(teardown_srb)->Threads(1)->Threads(2);
BENCHMARK(BM_shared_ptr_copy_destroy)->Apply(live_args)->Setup(setup_sp)->Teardown(teardown_sp)->Threads(1)->Threads(2);
BENCHMARK(BM_srb_adopt_destroy)->Apply(live_args)->Setup(setup_srb)->Teardown(teardown_srb)->Threads(1)->Threads(2);
BENCHMARK(BM_srb_append_16)->Apply(live_args)->Setup(setup_srb)->Teardown(teardown_srb)->Threads(1)->Threads(2);
BENCHMARK(BM_srb_delay_scope)->Apply(live_args)->Setup(setup_srb)->Teardown(teardown_srb)->Threads(1)->Threads(2);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  g_live_srb.clear();
  g_live_sp.clear();
  benchmark::Shutdown();
  return 0;
}
