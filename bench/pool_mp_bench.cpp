// pool_mp_bench: multi-process throughput.  Google Benchmark's threads are
// threads, so each benchmark forks its workers itself: they open their own
// handle (from the pool's memfd, as separate processes would), wait at a
// barrier in shared memory, run `ops` operations each, and stamp the clock.
// The benchmark's time is the manual time from the barrier's release to the
// last worker's stamp; the counter `ops_per_s` is the aggregate rate.
//
//   BM_mp/<impl>/<work>/workers:W/cap:C
//   impl  shmpool            workers open their own handle (from_fd)
//         shmpool_inherited  workers use the handle inherited over fork
//         floor              one shared atomic word: fetch_add per op
//         mutex              free list under a robust process-shared mutex
//         loffli             iceoryx LoFFLi in the shared mapping
//         boost              managed_shared_memory allocate/deallocate(8)
//         boost_node         Boost node_allocator<int64_t>
//   work  alloc_free | alloc_set_get_free | add16 | str_alloc_set_get_free
//
// One op of alloc_free is one alloc and one free (the seed's unit).
// Environment: SHMPOOL_BENCH_MP_OPS (default 200000), SHMPOOL_BENCH_SMOKE=1
// (2000 ops; 1 and 2 workers).
#include <benchmark/benchmark.h>
#include <sched.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "peers.hpp"
#include "shmpool/pool.hpp"

namespace {

using namespace shmpool;
using namespace shmpool::bench;

std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

struct barrier {
  alignas(64) std::atomic<int> ready{0};
  alignas(64) std::atomic<int> go{0};
  alignas(64) std::atomic<std::int64_t> last_end{0};
  std::atomic<int> errors{0};
};

// Forks `workers` processes running body(worker_index); returns seconds from
// the barrier's release to the last worker's end.  body returns false on a
// harness error (counted, reported as an error of the benchmark).
using runner = std::function<bool()>;
using setup_fn = std::function<runner(int)>;  // runs in the worker before the barrier

double run_workers(int workers, const setup_fn& setup, int& errors) {
  shared_region r(sizeof(barrier));
  auto* b = new (r.base()) barrier;
  std::vector<pid_t> kids;
  for (int w = 0; w < workers; ++w) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      const runner body = setup(w);  // open the handle, touch the mapping
      b->ready.fetch_add(1);
      while (b->go.load(std::memory_order_acquire) == 0) ::sched_yield();
      const bool ok = body();
      const std::int64_t end = now_ns();
      std::int64_t seen = b->last_end.load();
      while (seen < end && !b->last_end.compare_exchange_weak(seen, end)) {
      }
      if (!ok) b->errors.fetch_add(1);
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  while (b->ready.load() < workers) ::sched_yield();
  const std::int64_t start = now_ns();
  b->go.store(1, std::memory_order_release);
  for (const pid_t k : kids) {
    int status = 0;
    ::waitpid(k, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) b->errors.fetch_add(1);
  }
  errors = b->errors.load();
  return static_cast<double>(b->last_end.load() - start) * 1e-9;
}

struct mp_case {
  std::string impl, work;
  int workers;
  std::uint64_t capacity;
};

std::uint64_t ops_per_worker() {
  if (const char* s = std::getenv("SHMPOOL_BENCH_MP_OPS")) return std::strtoull(s, nullptr, 10);
  return smoke_mode() ? 2000 : 200000;
}

// Sets up the case, returns the worker body and a post-run check.
struct prepared {
  setup_fn body;
  std::function<std::string()> check;  // empty string when the run was consistent
  std::vector<std::shared_ptr<void>> keep;
};

bool str_body(str_pool& mine, std::uint64_t ops) {
  const std::string s(48, 'w');
  std::size_t sum = 0;
  for (std::uint64_t k = 0; k < ops; ++k) {
    const auto i = *mine.alloc();
    mine.set(i, s);
    sum += mine.get(i).size();
    mine.free(i);
  }
  return sum == ops * 48;
}

bool i64_body(i64_pool& mine, std::uint64_t ops, bool with_data, std::int64_t w) {
  bool ok = true;
  for (std::uint64_t k = 0; k < ops; ++k) {
    const auto i = *mine.alloc();
    if (with_data) {
      mine.set(i, w);
      ok &= mine.get(i) == w;
    }
    mine.free(i);
  }
  return ok;
}

template <class Pool>
std::shared_ptr<Pool> open_own(int fd) {
  auto mine = std::make_shared<Pool>(Pool::from_fd(fd));
  (void)mine->stats();  // touch the bitmap and the slot words before the clock starts
  return mine;
}

prepared prepare_shmpool(const mp_case& c, std::uint64_t ops) {
  prepared p;
  if (c.work == "str_alloc_set_get_free") {
    auto pool = std::make_shared<str_pool>(str_pool::memfd("bench", c.capacity, 48));
    const int fd = pool->memfd();
    p.keep.push_back(pool);
    p.body = [fd, ops](int) -> runner {
      auto mine = open_own<str_pool>(fd);
      return [mine, ops] { return str_body(*mine, ops); };
    };
    p.check = [pool] { return pool->used() == 0 ? std::string() : "slots left allocated"; };
    return p;
  }
  auto pool = std::make_shared<i64_pool>(i64_pool::memfd("bench", c.capacity));
  const int fd = pool->memfd();
  p.keep.push_back(pool);
  const std::uint64_t before = pool->stats().allocs;
  if (c.work == "add16") {
    auto slots = std::make_shared<std::vector<slot_index>>(*pool->alloc_n(16));
    for (auto s : *slots) pool->set(s, 0);
    p.body = [fd, ops, slots](int w) -> runner {
      auto mine = open_own<i64_pool>(fd);
      return [mine, ops, slots, w] {
        for (std::uint64_t k = 0; k < ops; ++k) mine->add((*slots)[(k + static_cast<std::uint64_t>(w)) % 16], 1);
        return true;
      };
    };
    p.check = [pool, slots, ops, n = c.workers] {
      std::int64_t sum = 0;
      for (auto s : *slots) sum += pool->get(s);
      return sum == static_cast<std::int64_t>(ops) * n ? std::string() : "add16: lost updates";
    };
    return p;
  }
  const bool with_data = c.work == "alloc_set_get_free";
  const bool inherited = c.impl == "shmpool_inherited";
  p.body = [pool, fd, ops, inherited, with_data](int w) -> runner {
    auto mine = inherited ? pool : open_own<i64_pool>(fd);
    return [mine, ops, with_data, w] { return i64_body(*mine, ops, with_data, w); };
  };
  p.check = [pool, before, ops, n = c.workers] {
    if (pool->used() != 0) return std::string("slots left allocated");
    if (pool->stats().allocs - before != ops * static_cast<std::uint64_t>(n)) return std::string("alloc count");
    return std::string();
  };
  return p;
}

prepared prepare_peer(const mp_case& c, std::uint64_t ops) {
  prepared p;
  const auto cap = static_cast<std::uint32_t>(c.capacity);
  if (c.impl == "floor") {
    auto r = std::make_shared<shared_region>(4096);
    auto* f = new (r->base()) hw_floor;
    p.keep.push_back(r);
    p.body = [f, ops](int) -> runner {
      return [f, ops] {
        for (std::uint64_t k = 0; k < ops; ++k) f->fetch_add();
        return true;
      };
    };
    p.check = [f, ops, n = c.workers] {
      return f->word.load() == ops * static_cast<std::uint64_t>(n) ? std::string() : "floor: lost updates";
    };
  } else if (c.impl == "mutex") {
    auto r = std::make_shared<shared_region>(mutex_freelist::bytes_for(cap));
    auto* f = mutex_freelist::create(r->base(), cap);
    p.keep.push_back(r);
    p.body = [f, ops](int) -> runner {
      return [f, ops] {
        std::uint32_t i = 0;
        for (std::uint64_t k = 0; k < ops; ++k) {
          if (!f->alloc(i)) return false;
          f->free(i);
        }
        return true;
      };
    };
#if defined(SHMPOOL_BENCH_HAVE_ICEORYX)
  } else if (c.impl == "loffli") {
    auto r = std::make_shared<shared_region>(loffli_peer::bytes_for(cap));
    auto* l = loffli_peer::create(r->base(), cap);
    p.keep.push_back(r);
    p.body = [l, ops](int) -> runner {
      return [l, ops] {
        loffli_peer::index_t i = 0;
        for (std::uint64_t k = 0; k < ops; ++k) {
          while (!l->pop(i)) ::sched_yield();
          l->push(i);
        }
        return true;
      };
    };
#endif
#if defined(SHMPOOL_BENCH_HAVE_BOOST)
  } else if (c.impl == "boost" || c.impl == "boost_node") {
    auto s = std::make_shared<boost_segment>(8 << 20);
    p.keep.push_back(s);
    const bool node = c.impl == "boost_node";
    auto* seg = &s->seg();
    auto* na = seg->construct<boost_node_alloc>(boost::interprocess::anonymous_instance)(seg->get_segment_manager());
    p.body = [seg, na, ops, node](int) -> runner {
      return [seg, na, ops, node] {
        for (std::uint64_t k = 0; k < ops; ++k) {
          if (node) {
            auto q = na->allocate(1);
            na->deallocate(q, 1);
          } else {
            void* q = seg->allocate(sizeof(std::int64_t));
            seg->deallocate(q);
          }
        }
        return true;
      };
    };
#endif
  }
  if (!p.check) p.check = [] { return std::string(); };
  return p;
}

void BM_mp(benchmark::State& st, mp_case c) {
  const std::uint64_t ops = ops_per_worker();
  for (auto _ : st) {
    prepared p = c.impl.rfind("shmpool", 0) == 0 ? prepare_shmpool(c, ops) : prepare_peer(c, ops);
    if (!p.body) {
      st.SkipWithError("peer not built");
      return;
    }
    int errors = 0;
    const double secs = run_workers(c.workers, p.body, errors);
    const std::string bad = p.check();
    if (errors != 0 || !bad.empty()) {
      st.SkipWithError(("harness check failed: " + bad + " errors=" + std::to_string(errors)).c_str());
      return;
    }
    st.SetIterationTime(secs);
    st.counters["ops_per_s"] = static_cast<double>(ops) * c.workers / secs;
  }
  st.counters["workers"] = c.workers;
  st.counters["capacity"] = static_cast<double>(c.capacity);
  st.counters["ops_per_worker"] = static_cast<double>(ops);
}

void register_all() {
  const bool smoke = smoke_mode();
  std::vector<std::string> peers = {"floor", "mutex"};
#if defined(SHMPOOL_BENCH_HAVE_ICEORYX)
  peers.push_back("loffli");
#endif
#if defined(SHMPOOL_BENCH_HAVE_BOOST)
  peers.push_back("boost");
  peers.push_back("boost_node");
#endif
  auto add = [](const mp_case& c) {
    const std::string name = "BM_mp/" + c.impl + "/" + c.work + "/workers:" + std::to_string(c.workers) +
                             "/cap:" + std::to_string(c.capacity);
    benchmark::RegisterBenchmark(name.c_str(), BM_mp, c)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  };
  // The seed's table: 8 workers, capacity 64.
  for (const char* w : {"alloc_free", "alloc_set_get_free", "add16", "str_alloc_set_get_free"})
    add({"shmpool", w, smoke ? 2 : 8, 64});
  // The sweep: alloc_free, every implementation.
  const std::vector<int> workers = smoke ? std::vector<int>{1, 2} : std::vector<int>{1, 2, 4, 8, 16};
  for (const std::uint64_t cap : {64u, 4096u})
    for (const int n : workers) {
      add({"shmpool", "alloc_free", n, cap});
      add({"shmpool_inherited", "alloc_free", n, cap});
      for (const auto& peer : peers) add({peer, "alloc_free", n, cap});
    }
}

}  // namespace

int main(int argc, char** argv) {
  print_skipped_peers();
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
