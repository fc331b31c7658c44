// Writes the crafted seed corpora of the pool targets:
//   fuzz_make_seeds OUT_DIR      (OUT_DIR/<target>/<name>)
// Deterministic (fixed PRNG seed), so a rerun rewrites the same files.  The
// seeds cover every variant and state, and include one input per seeded
// defect of the mutation checks that a target can see (fuzz/README.md).
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "pool_fuzz_support.hpp"

namespace fs = std::filesystem;
using namespace shmpool_fuzz;

namespace {

using bytes = std::vector<std::uint8_t>;

std::mt19937_64 rng(20261123);

void save(const fs::path& dir, const std::string& name, const bytes& b) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()),
                                                    static_cast<std::streamsize>(b.size()));
}

bytes noise(std::size_t n) {
  bytes b(n);
  for (auto& x : b) x = static_cast<std::uint8_t>(rng());
  return b;
}

// The bytes of a pool of this variant after `held` allocations, with noise
// in the tail (slot data and padding: free-form, and what fuzz_open steers by).
bytes image(pool_variant v, std::uint64_t cap, std::uint64_t size_param, std::uint64_t held) {
  return with_variant(v, [&](auto tag) {
    using Pool = typename decltype(tag)::type;
    auto p = [&] {
      if constexpr (std::is_same_v<Pool, shmpool::pool> || std::is_same_v<Pool, shmpool::str_pool>)
        return Pool::memfd("seed", cap, size_param);
      else
        return Pool::memfd("seed", cap);
    }();
    for (std::uint64_t k = 0; k < held; ++k) (void)p.try_alloc();
    bytes b(p.stats().mmap_size);
    if (::pread(p.memfd(), b.data(), b.size(), 0) != static_cast<ssize_t>(b.size())) fail("pread of a seed pool");
    const auto l = format_says_valid(b.data(), b.size());
    const std::uint64_t data_end = l->data_offset + l->capacity * l->elem_size;
    const bytes tail = noise(b.size() - data_end);
    std::copy(tail.begin(), tail.end(), b.begin() + static_cast<long>(data_end));
    return b;
  });
}

void poke(bytes& b, std::size_t off, std::uint64_t v, bool reseal = true) {
  write_le(b.data() + off, 8, v);
  if (reseal) reseal_checksum(b.data());
}

void open_seeds(const fs::path& dir) {
  const char* names[] = {"raw", "i64", "i32", "f64", "str"};
  for (const pool_variant v : all_variants) {
    const std::string n = names[static_cast<int>(v) - 1];
    save(dir, n + "-empty-10", image(v, 10, 12, 0));
    save(dir, n + "-partial-65", image(v, 65, 20, 30));
    save(dir, n + "-full-64", image(v, 64, 7, 64));
  }
  bytes b = image(pool_variant::i64, 10, 0, 4);
  b[320] = 0x01;  // group 0 marked full over free slots (a stale mark)
  save(dir, "i64-stale-mark", b);
  b = image(pool_variant::i64, 10, 0, 4);
  b[320] = 0xFF, b[321] = 0xFF;  // a malformed group mark
  save(dir, "i64-malformed-mark", b);
  b = image(pool_variant::raw, 5, 16, 3);
  const auto l = format_says_valid(b.data(), b.size());
  poke(b, l->meta_offset, slot_word(releasing, self_identity()), false);
  poke(b, l->meta_offset + 16, slot_word(claiming, dead_identity()), false);
  poke(b, l->meta_offset + 48, 0x1234, false);  // FREE state with an owner: malformed
  save(dir, "raw-corrupt-slot-words", b);
  b = image(pool_variant::str, 8, 30, 8);
  save(dir, "str-truncated", bytes(b.begin(), b.begin() + 2048));
  save(dir, "header-only", bytes(b.begin(), b.begin() + 128));
  poke(b, field::magic, 0x54494E49504D4853ULL, false);
  save(dir, "init-magic", b);
  // One per seeded header defect: FORMAT.md forbids each, with a good checksum.
  b = image(pool_variant::i64, 10, 0, 0), poke(b, field::capacity, 0);
  save(dir, "mutant-HEADER_SKIP_CAPACITY", b);
  b = image(pool_variant::i64, 10, 0, 0), poke(b, field::elem_size, 16);
  save(dir, "mutant-HEADER_SKIP_ELEM_SIZE", b);
  b = image(pool_variant::i64, 10, 0, 0), poke(b, field::data, read_le(b.data() + field::data, 8) + 64);
  save(dir, "mutant-HEADER_SKIP_OFFSET", b);
  save(dir, "mutant-HEADER_SKIP_VARIANT", image(pool_variant::f64, 3, 0, 1));
  save(dir, "mutant-BITMAP_TAIL_OFF_BY_ONE", image(pool_variant::i32, 10, 0, 0));
  save(dir, "noise", noise(4096));
}

// A mutate recipe: variant, state, capacity, size, flags, patches, workout.
bytes recipe(int variant, int state, int cap_sel, int size_sel, bool reseal, const bytes& patches, int n_patches,
             std::size_t workout) {
  bytes b = {static_cast<std::uint8_t>(variant), static_cast<std::uint8_t>(state), static_cast<std::uint8_t>(cap_sel),
             static_cast<std::uint8_t>(size_sel), static_cast<std::uint8_t>(reseal), static_cast<std::uint8_t>(n_patches)};
  b.insert(b.end(), patches.begin(), patches.end());
  const bytes w = noise(workout);
  b.insert(b.end(), w.begin(), w.end());
  return b;
}

bytes patch(int region, bool wide, int source, std::uint16_t off, std::uint64_t value) {
  bytes p = {static_cast<std::uint8_t>(region | (wide ? 8 : 0) | (source << 4)), static_cast<std::uint8_t>(off),
             static_cast<std::uint8_t>(off >> 8)};
  for (int k = 0; k < 8; ++k) p.push_back(static_cast<std::uint8_t>(value >> (8 * k)));
  return p;
}

void mutate_seeds(const fs::path& dir) {
  for (int v = 0; v < 5; ++v)
    for (int s = 0; s < 6; ++s) {
      const int cap = (v * 6 + s) * 37 % 130;
      save(dir, "v" + std::to_string(v) + "-s" + std::to_string(s), recipe(v, s, cap, 11, true, {}, 0, 120));
    }
  bytes ps = patch(3, true, 2, 32, 0);  // slot 2's word: ALLOCATED by a dead owner
  ps.insert(ps.end(), {0x02, 0x00, 0x00, 0xFF, 0, 0, 0, 0, 0, 0, 0});  // group 0 mark byte 0 := 0xFF (malformed)
  save(dir, "patched-slots", recipe(1, 1, 20, 0, true, ps, 2, 150));
  save(dir, "patched-control", recipe(2, 3, 40, 0, false, patch(1, true, 0, 0, 5), 1, 150));
  save(dir, "patched-data", recipe(4, 2, 9, 30, false, patch(4, false, 0, 7, 0xAB), 1, 150));
  save(dir, "patched-header-no-reseal", recipe(0, 0, 9, 30, false, patch(0, true, 0, 16, 11), 1, 60));
  // One per seeded defect this target sees (i64, capacity 10).
  save(dir, "mutant-HEADER_SKIP_CAPACITY", recipe(1, 0, 9, 0, true, patch(0, true, 0, 16, 0), 1, 0));
  save(dir, "mutant-HEADER_SKIP_ELEM_SIZE", recipe(1, 0, 9, 0, true, patch(0, true, 0, 24, 16), 1, 0));
  save(dir, "mutant-HEADER_SKIP_OFFSET", recipe(1, 0, 9, 0, true, patch(0, true, 0, 56, 640), 1, 0));
  save(dir, "mutant-HEADER_SKIP_VARIANT", recipe(3, 1, 4, 0, true, {}, 0, 0));
  save(dir, "mutant-BITMAP_TAIL_OFF_BY_ONE", recipe(1, 0, 9, 0, true, {}, 0, 0));
  save(dir, "mutant-PID_ONLY_LIVENESS", recipe(1, 4, 29, 0, true, {}, 0, 0));
}

// An ops input: variant, capacity, size, then operations.
bytes ops(int variant, int cap_sel, int size_sel, const bytes& program) {
  bytes b = {static_cast<std::uint8_t>(variant), static_cast<std::uint8_t>(cap_sel), static_cast<std::uint8_t>(size_sel)};
  b.insert(b.end(), program.begin(), program.end());
  return b;
}

void ops_seeds(const fs::path& dir) {
  const int caps[] = {0, 9, 62, 63, 64, 128};
  for (int v = 0; v < 5; ++v)
    for (int c = 0; c < 6; ++c)
      if ((v + c) % 2 == 0) save(dir, "v" + std::to_string(v) + "-c" + std::to_string(caps[c]), ops(v, caps[c], 13, noise(600)));
  // Fill a pool of 10, then one more: exactly ten slots, then none.
  save(dir, "mutant-BITMAP_TAIL_OFF_BY_ONE", ops(1, 9, 0, bytes(11, 0)));
  // Attach a second handle as raw (op 11, argument 0): must be refused.
  save(dir, "mutant-HEADER_SKIP_VARIANT", ops(1, 9, 0, {11, 0}));
  // Allocate three, kill the owner of one (op 10), recover (op 8).
  save(dir, "mutant-PID_ONLY_LIVENESS", ops(1, 9, 0, {0, 0, 0, 10, 1, 8}));
}

// fuzz_registry: mode byte, then that mode's bytes (registry_fuzz.cpp).
void registry_seeds(const fs::path& dir) {
  save(dir, "raw-empty", {0});
  save(dir, "raw-noise-48", [] { bytes b = noise(48); b.insert(b.begin(), 0); return b; }());
  save(dir, "raw-noise-47", [] { bytes b = noise(47); b.insert(b.begin(), 0); return b; }());
  bytes magic = {0, 'S', 'H', 'M', 'P', 'A', 'N', 'C', 'H'};
  magic.resize(49, 0);
  save(dir, "raw-magic-only", magic);
  // Forged: for self, registry, nonce a selector (0 real, 1 xor, 2 pages away, 3 literal) and 8 bytes.
  const int forged[][3] = {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 2, 0}, {0, 3, 0}, {0, 0, 1}, {3, 3, 3}};
  for (const auto& f : forged) {
    bytes b = {1};
    for (const int how : f) {
      b.push_back(static_cast<std::uint8_t>(how));
      const bytes v = noise(8);
      b.insert(b.end(), v.begin(), v.end());
    }
    b.push_back(0);  // keep the recomputed checksum
    save(dir, "forged-" + std::to_string(f[0]) + std::to_string(f[1]) + std::to_string(f[2]), b);
  }
  for (int k = 0; k < 6; ++k) {
    bytes b = noise(300);
    b[0] = 2;
    save(dir, "ops-" + std::to_string(k), b);
  }
  // Steps are: op, a, b, then the op's own bytes (registry_fuzz_model.hpp).
  // Two references, one dropped: the other must still count one and read its bytes.
  save(dir, "mutant-REGISTRY_NO_ZERO_CHECK", {2, 0, 0, 0, 8, 1, 0, 1, 3, 1, 0});
  // Two nested scopes; a block released inside; the inner scope ends: still kept.
  save(dir, "mutant-DELAY_FREES_AT_INNER_EXIT", {2, 6, 0, 0, 6, 0, 0, 0, 0, 0, 24, 3, 0, 0, 7, 0, 0, 1, 0, 0});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const fs::path out(argv[1]);
  open_seeds(out / "fuzz_open");
  mutate_seeds(out / "fuzz_mutate_valid");
  ops_seeds(out / "fuzz_ops");
  registry_seeds(out / "fuzz_registry");
  return 0;
}
