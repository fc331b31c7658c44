// fuzz_open: the input is a whole backing region.  Written to a memfd, it is
// attached with from_fd as every variant; each attach must be refused with
// shmpool::error or accepted, and the verdict must agree with FORMAT.md
// (pool_fuzz_support.hpp).  An accepted pool gets the bounded workout of
// pool_fuzz_exercise.hpp, steered by the last bytes of the region (slot data
// and padding: bytes no validation looks at).
#include <cstddef>
#include <cstdint>

#include "pool_fuzz_exercise.hpp"
#include "pool_fuzz_support.hpp"

namespace {

using namespace shmpool_fuzz;

constexpr std::size_t steer_bytes = 512;

template <class Pool>
void attach_and_exercise(int fd, const std::uint8_t* data, std::size_t size, const std::optional<format_layout>& law,
                         pool_variant v) {
  auto p = attach<Pool>(fd);
  require_attach_agrees(p, law, v);
  if (!p) return;
  const std::size_t tail = size < steer_bytes ? size : steer_bytes;
  byte_reader steer(data + size - tail, tail);
  exercise(*p, steer);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const int fd = region_fd(data, size);
  const auto law = format_says_valid(data, size);
  for (const pool_variant v : all_variants)
    with_variant(v, [&](auto tag) { attach_and_exercise<typename decltype(tag)::type>(fd, data, size, law, v); });
  return 0;
}
