// pool_opcount: runs N operations of each kind on a fixed pool, between
// callgrind client requests, so that `valgrind --tool=callgrind` counts the
// instructions of each kind alone (scripts/bench-check).
//
//   pool_opcount [N] [op...]     N defaults to 10000; ops default to all
//
// Under callgrind every op kind is: warm-up (N/10 ops, uncounted), zero the
// counters, N ops, dump with the op's name.  Outside valgrind the client
// requests are no-ops and the binary just runs the ops (a smoke test).
#include <valgrind/callgrind.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "shmpool/pool.hpp"

namespace {

using namespace shmpool;

// Keeps results alive without a fence.
template <class T>
inline void keep(T const& v) {
  asm volatile("" : : "r,m"(v) : "memory");
}

struct op_kind {
  const char* name;
  std::function<void(std::size_t)> run;  // runs n ops
  std::size_t per = 1;                     // n ops run n/per operations of this kind
};

std::vector<op_kind> make_ops(i64_pool& p64, i32_pool& p32, str_pool& ps, pool& raw) {
  static const std::string s48(48, 'x');
  static const std::array<std::byte, 48> b48{};
  const auto i64 = *p64.alloc();
  const auto i32 = *p32.alloc();
  const auto is = *ps.alloc();
  const auto ir = *raw.alloc();
  ps.set(is, s48);
  return {
      {"i64_alloc_free", [&p64](std::size_t n) { for (std::size_t k = 0; k < n; ++k) p64.free(*p64.alloc()); }},
      {"i64_try_alloc_free", [&p64](std::size_t n) { for (std::size_t k = 0; k < n; ++k) p64.free(*p64.try_alloc()); }},
      {"i64_get", [&p64, i64](std::size_t n) { for (std::size_t k = 0; k < n; ++k) keep(p64.get(i64)); }},
      {"i64_set", [&p64, i64](std::size_t n) { for (std::size_t k = 0; k < n; ++k) p64.set(i64, std::int64_t(k)); }},
      {"i64_add", [&p64, i64](std::size_t n) { for (std::size_t k = 0; k < n; ++k) keep(p64.add(i64, 1)); }},
      {"i64_cas", [&p64, i64](std::size_t n) {
         std::int64_t v = p64.get(i64);
         for (std::size_t k = 0; k < n; ++k, ++v) keep(p64.cas(i64, v, v + 1));
       }},
      {"i32_add", [&p32, i32](std::size_t n) { for (std::size_t k = 0; k < n; ++k) keep(p32.add(i32, 1)); }},
      {"i64_alloc_set_free", [&p64](std::size_t n) { for (std::size_t k = 0; k < n; ++k) p64.free(*p64.alloc_set(42)); }},
      {"str_set_48", [&ps, is](std::size_t n) { for (std::size_t k = 0; k < n; ++k) ps.set(is, s48); }},
      {"str_get_48", [&ps, is](std::size_t n) { for (std::size_t k = 0; k < n; ++k) keep(ps.get(is)); }},
      {"raw_set_48", [&raw, ir](std::size_t n) { for (std::size_t k = 0; k < n; ++k) raw.set(ir, b48); }},
      {"raw_get_48", [&raw, ir](std::size_t n) { for (std::size_t k = 0; k < n; ++k) keep(raw.get(ir).data()); }},
      {"alloc_n_free_n_16", [&p64](std::size_t n) {
         for (std::size_t k = 0; k < n / 16; ++k) p64.free_n(*p64.alloc_n(16));
       }, 16},
      {"used_4096", [](std::size_t n) {
         static auto big = i64_pool::anonymous(4096);
         for (std::size_t k = 0; k < n / 16; ++k) keep(big.used());
       }, 16},
  };
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 10000;
  auto p64 = i64_pool::anonymous(1024);
  auto p32 = i32_pool::anonymous(1024);
  auto ps = str_pool::anonymous(1024, 48);
  auto raw = pool::anonymous(1024, 48);
  const auto ops = make_ops(p64, p32, ps, raw);
  for (const auto& op : ops) {
    bool wanted = argc <= 2;
    for (int a = 2; a < argc; ++a) wanted |= std::string_view(argv[a]) == op.name;
    if (!wanted) continue;
    op.run(n / 10 + 16);  // warm-up: caches, lazily computed identity
    CALLGRIND_ZERO_STATS;
    op.run(n);
    CALLGRIND_DUMP_STATS_AT(op.name);
    std::printf("%s %zu\n", op.name, n / op.per);  // operations counted in the dump
  }
  return 0;
}
