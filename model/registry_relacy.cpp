// Relacy models of the REAL stable_reference_buffer registry
// (core/include/shmpool/detail/registry_protocol.hpp), instantiated as
// srb_registry<relacy_platform, heap_pages, Orders>.  The registry's own
// memory (entry chunks, hash index) comes from libc calloc (heap_pages); the
// counted blocks are `block` records made of rl::var cells, so Relacy's
// race detector sees every use of a block and its "free".
//
// A block is freed by free_block(): it asserts the block was not freed
// before (freed exactly once), sets `freed` and overwrites every cell (what
// an allocator reusing the memory does).  Every use of a block asserts
// `freed == 0` and writes its cell: a use after free is either an assertion
// (the free came first in Relacy's interleaving) or a DATA RACE (the free and
// the use are not ordered by happens-before).
//
// Models and the invariants each asserts:
//   handover  3 threads hold one block (insert + 2 increments in before()).
//             Each checks its holding (use_count >= 1: counts never drop
//             below the references alive, i.e. never "negative"), uses the
//             block, decrements; the one whose decrement was the last
//             retires (erase) and frees.  after(): exactly one free, live 0,
//             use_count 0.  Catches R2 (drop) weakened.
//   adopt     T0 fills a fresh block, inserts it, copies its reference once
//             (increment), uses, decrements both.  T1 meanwhile asks
//             is_known and adopts by address; when adopted it reads what T0
//             wrote before insert (published only by L: R3/R4), uses the
//             block and decrements.  `released`/`unknown` are fine answers.
//             after(): exactly one free, live 0.  Catches R3/R4 weakened.
//   grow      2 holders.  T1 writes its cell and decrements.  T0 writes its
//             cell, then grow_exclusive: when it sees count 1 (R7) regrow
//             reads every cell (T1's write must happen before it) and moves
//             the block to a second record or not (rl::rand); then T0
//             decrements and frees.  after(): every block that was used
//             freed exactly once.  Catches R7 (sole) weakened.
//   delay     2 holders.  T0 enters a delay scope, takes safe_get's pointer
//             (use_count > 1 || delaying()), decrements (maybe the last:
//             the block goes pending), uses the pointer, exits the scope
//             (the block is freed if pending).  T1 decrements, then opens
//             two nested scopes and closes them.  Asserts the pointer
//             safe_get handed out is never used after the free, and the
//             block is freed exactly once, after the outermost exit.
//             after(): one free, live 0, pending 0, depth 0.
//   revive    a scope is open (before()).  T0 drops the block's only
//             reference (it goes pending) and closes the scope.  T1 adopts
//             the block by address: when adopted (re-adoption of a pending
//             block, or before T0's drop) it uses it and drops it; a
//             revived block must not be freed by T0's scope exit.  after():
//             one free, block unknown, live 0, pending 0, depth 0.
//
// Order check: every non-relaxed member of srb_orders (drop, lock_take,
// lock_give, sole) is overridden with mo::relaxed (and drop additionally
// with release-only and acquire-only); the real orders must pass every model
// and each weakening must fail at least one.  Exit status 0 = as expected.
// Under -DSHMPOOL_MUTANT=... (shmpool_apply_mutant) the real-orders row is
// expected to FAIL, so a caught mutant makes the binary fail.
//
// Usage: registry_relacy [iterations-scale]  (SHMPOOL_MODEL_LONG=1: x20;
// SHMPOOL_RELACY_VERBOSE=1 prints Relacy's execution histories)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <streambuf>
#include <string>

#include "shmpool/detail/registry_protocol.hpp"
#include "shmpool/platform/liveness.hpp"  // relacy_platform.hpp needs it, before relacy.hpp
// After the core headers (see relacy_platform.hpp).
#include "relacy_platform.hpp"

namespace {

using shmpool::model::model_passes;

using shmpool::detail::srb_adopt;
using shmpool::detail::srb_grow;
using shmpool::detail::srb_orders;
using shmpool::model::relacy_platform;
using shmpool::model::relacy_world;
using P = relacy_platform;
using mo = shmpool::platform::mo;

struct heap_pages {
  static void* map(std::size_t n) noexcept { return std::calloc(1, n); }
  static void unmap(void* p, std::size_t) noexcept { std::free(p); }
};

template <class O>
using registry = shmpool::detail::srb_registry<P, heap_pages, O>;

constexpr unsigned max_holders = 3;

// A counted heap block: race-checked cells, one per holder, and a freed mark.
struct block {
  rl::var<int> cell[max_holders];
  rl::var<int> freed;

  void init() {
    for (auto& c : cell) c($) = 0;
    freed($) = 0;
  }
  // A holder's use: never after the free (assert or data race).
  void use(unsigned me) {
    RL_ASSERT(freed($) == 0);
    cell[me]($) = static_cast<int>(me) + 1;
  }
};

// Shared by every model: the world, the registry, frees counted.
template <class O>
struct registry_fixture {
  relacy_world world;
  registry<O>* reg = nullptr;
  rl::atomic<int> frees;

  void setup() {
    P::install(world);
    frees.store(0, rl::mo_relaxed, $);
    reg = new registry<O>(1);
  }
  void teardown() {
    delete reg;
    reg = nullptr;
  }
  // A live entry for b with `holders` references.
  typename registry<O>::entry* insert_held(block& b, int holders) {
    b.init();
    auto* e = reg->insert(&b);
    RL_ASSERT(e != nullptr);
    for (int i = 1; i < holders; ++i) registry<O>::add_ref(*e);
    return e;
  }
  // free_block for retire / exit_delay / grow: exactly once per block.
  auto freer() {
    return [this](void* p) {
      auto* b = static_cast<block*>(p);
      RL_ASSERT(b->freed($) == 0);  // freed exactly once
      b->freed($) = 1;
      for (auto& c : b->cell) c($) = -1;  // the allocator reuses the memory
      frees.fetch_add(1, rl::mo_relaxed, $);
    };
  }
  // Decrement; the last holder erases and frees.
  void drop(typename registry<O>::entry& e) {
    RL_ASSERT(registry<O>::use_count(e) >= 1);  // this holder is counted
    if (registry<O>::drop_ref(e)) registry<O>::home_of(e).retire(e, freer());
  }
  void assert_quiescent(int expected_frees) {
    RL_ASSERT(frees.load(rl::mo_relaxed, $) == expected_frees);
    const auto s = reg->stats();
    RL_ASSERT(s.live == 0);
    RL_ASSERT(s.pending == 0);
    RL_ASSERT(s.depth == 0);
    RL_ASSERT(s.frees == static_cast<std::uint64_t>(expected_frees));
  }
};

// ---- handover ----------------------------------------------------------------
template <class O>
struct handover_model : rl::test_suite<handover_model<O>, 3> {
  registry_fixture<O> f;
  block b;
  typename registry<O>::entry* e = nullptr;

  void before() {
    f.setup();
    e = f.insert_held(b, 3);
  }
  void thread(unsigned i) {
    b.use(i);
    f.drop(*e);
  }
  void after() {
    RL_ASSERT(registry<O>::use_count(*e) == 0);
    RL_ASSERT(b.freed($) == 1);
    f.assert_quiescent(1);
    f.teardown();
  }
};

// ---- adopt ---------------------------------------------------------------------
template <class O>
struct adopt_model : rl::test_suite<adopt_model<O>, 2> {
  registry_fixture<O> f;
  block b;

  void before() {
    f.setup();
    b.init();
  }
  void thread(unsigned i) {
    if (i == 0) {
      b.cell[2]($) = 42;  // the creator's contents, published by insert (L)
      auto* e = f.reg->insert(&b);
      RL_ASSERT(e != nullptr);
      registry<O>::add_ref(*e);  // a copy
      b.use(0);
      f.drop(*e);
      f.drop(*e);
    } else {
      (void)f.reg->known(&b);  // any answer; must not disturb anything
      typename registry<O>::entry* e = nullptr;
      const srb_adopt r = f.reg->adopt(&b, e);
      if (r != srb_adopt::adopted) return;  // not inserted yet, or already released
      RL_ASSERT(registry<O>::use_count(*e) >= 1);
      RL_ASSERT(b.cell[2]($) == 42);  // insert's contents happen before the adopter's use
      b.use(1);
      f.drop(*e);
    }
  }
  void after() {
    RL_ASSERT(b.freed($) == 1);
    RL_ASSERT(!f.reg->known(&b));
    f.assert_quiescent(1);
    f.teardown();
  }
};

// ---- grow (exclusive append) ------------------------------------------------------
template <class O>
struct grow_model : rl::test_suite<grow_model<O>, 2> {
  registry_fixture<O> f;
  block b, moved;  // the block and where regrow may move it
  typename registry<O>::entry* e = nullptr;
  rl::var<int> did_move;

  void before() {
    f.setup();
    moved.init();
    did_move($) = 0;
    e = f.insert_held(b, 2);
  }
  void thread(unsigned i) {
    if (i == 1) {
      b.use(1);
      f.drop(*e);
      return;
    }
    b.use(0);
    const srb_grow g = f.reg->grow_exclusive(*e, [&](void* old) -> void* {
      auto* from = static_cast<block*>(old);
      RL_ASSERT(from->freed($) == 0);
      int sum = 0;
      for (auto& c : from->cell) sum += c($);  // realloc reads every byte
      if (rl::rand(2) == 0) {
        from->cell[0]($) = sum;  // grown in place
        return from;
      }
      for (unsigned k = 0; k < max_holders; ++k) moved.cell[k]($) = from->cell[k]($);
      f.freer()(from);  // realloc freed the old block
      did_move($) = 1;
      return &moved;
    });
    RL_ASSERT(g != srb_grow::failed);
    block* now = did_move($) ? &moved : &b;
    now->use(0);
    f.drop(*e);
  }
  void after() {
    RL_ASSERT(b.freed($) == 1);
    RL_ASSERT(moved.freed($) == did_move($));
    const int expected = 1 + did_move($);
    RL_ASSERT(f.frees.load(rl::mo_relaxed, $) == expected);
    const auto s = f.reg->stats();
    RL_ASSERT(s.live == 0 && s.pending == 0 && s.frees == 1);  // registry frees: the final block only
    f.teardown();
  }
};

// ---- delay scopes ------------------------------------------------------------------
template <class O>
struct delay_model : rl::test_suite<delay_model<O>, 2> {
  registry_fixture<O> f;
  block b;
  typename registry<O>::entry* e = nullptr;

  void before() {
    f.setup();
    e = f.insert_held(b, 2);
  }
  void thread(unsigned i) {
    shmpool::detail::srb_scope outer, inner;
    if (i == 0) {
      f.reg->enter_delay(outer, i);
      // safe_get: the pointer stays valid after this instance lets go
      // because the scope is alive (delaying() is at least our own scope).
      const bool safe = registry<O>::use_count(*e) > 1 || f.reg->delaying();
      RL_ASSERT(safe);
      f.drop(*e);  // maybe the last: pending until the outermost exit
      b.use(0);
      f.reg->exit_delay(outer, f.freer());
    } else {
      b.use(1);
      f.drop(*e);
      f.reg->enter_delay(outer, i);
      f.reg->enter_delay(inner, i);
      f.reg->exit_delay(inner, f.freer());  // inner exit: frees nothing
      f.reg->exit_delay(outer, f.freer());
    }
  }
  void after() {
    RL_ASSERT(b.freed($) == 1);
    f.assert_quiescent(1);
    f.teardown();
  }
};

// ---- revive (re-adoption inside a scope) -------------------------------------------------
template <class O>
struct revive_model : rl::test_suite<revive_model<O>, 2> {
  registry_fixture<O> f;
  block b;
  typename registry<O>::entry* e = nullptr;
  shmpool::detail::srb_scope scope;

  void before() {
    f.setup();
    e = f.insert_held(b, 1);
    f.reg->enter_delay(scope, 7);
  }
  void thread(unsigned i) {
    if (i == 0) {
      b.use(0);
      f.drop(*e);  // the last reference, inside the scope: pending
      f.reg->exit_delay(scope, f.freer());  // frees it unless T1 adopted it again
      return;
    }
    typename registry<O>::entry* mine = nullptr;
    const srb_adopt r = f.reg->adopt(&b, mine);
    if (r != srb_adopt::adopted) return;  // freed already, or the drop still on its way to L
    RL_ASSERT(registry<O>::use_count(*mine) >= 1);
    b.use(1);  // a revived block outlives the scope
    f.drop(*mine);
  }
  void after() {
    RL_ASSERT(b.freed($) == 1);
    RL_ASSERT(!f.reg->known(&b));
    f.assert_quiescent(1);
    f.teardown();
  }
};

// ---- driver ----------------------------------------------------------------------------

struct verdict {
  bool ok = true;
  std::string why;
};

template <class O>
bool report_row(const char* name, rl::iteration_t n, bool expect_pass) {
  const auto t0 = std::chrono::steady_clock::now();
  verdict v[5];
  v[0].ok = model_passes<handover_model, O>(n, v[0].why);
  v[1].ok = model_passes<adopt_model, O>(n, v[1].why);
  v[2].ok = model_passes<grow_model, O>(n, v[2].why);
  v[3].ok = model_passes<delay_model, O>(n, v[3].why);
  v[4].ok = model_passes<revive_model, O>(n, v[4].why);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  static const char* const names[5] = {"handover", "adopt", "grow", "delay", "revive"};
  bool all = true;
  std::printf("%-18s", name);
  for (int k = 0; k < 5; ++k) {
    all &= v[k].ok;
    std::printf(" %s=%s%s%s", names[k], v[k].ok ? "pass" : "FAIL", v[k].ok ? "" : ":", v[k].why.c_str());
  }
  std::printf("  (%.1fs)\n", secs);
  const bool as_expected = expect_pass ? all : !all;
  if (!as_expected)
    std::printf("  ^ UNEXPECTED: %s\n", expect_pass ? "the real orders fail a model" : "no model catches this weakening");
  std::fflush(stdout);
  return as_expected;
}

// srb_orders with one member weakened.
#define SHMPOOL_WEAKEN(member, order, tag)                           \
  struct weak_##member##_##tag : srb_orders {                        \
    static constexpr mo member = mo::order;                          \
  };
SHMPOOL_WEAKEN(drop, relaxed, relaxed)
SHMPOOL_WEAKEN(drop, release, release)
SHMPOOL_WEAKEN(drop, acquire, acquire)
SHMPOOL_WEAKEN(lock_take, relaxed, relaxed)
SHMPOOL_WEAKEN(lock_give, relaxed, relaxed)
SHMPOOL_WEAKEN(sole, relaxed, relaxed)
#undef SHMPOOL_WEAKEN

}  // namespace

int main(int argc, char** argv) {
  long scale = 1;
  if (const char* env = std::getenv("SHMPOOL_MODEL_LONG"); env != nullptr && *env != '0') scale = 20;
  if (argc > 1) scale = std::strtol(argv[1], nullptr, 10);
  if (scale < 1) scale = 1;
  const auto n = static_cast<rl::iteration_t>(50000 * scale);
  std::printf("iterations per model: %llu (random scheduler)\n", static_cast<unsigned long long>(n));
  bool ok = report_row<srb_orders>("real orders", n, true);
  ok &= report_row<weak_drop_relaxed>("drop=relaxed", n, false);
  ok &= report_row<weak_drop_release>("drop=release", n, false);
  ok &= report_row<weak_drop_acquire>("drop=acquire", n, false);
  ok &= report_row<weak_lock_take_relaxed>("lock_take=relaxed", n, false);
  ok &= report_row<weak_lock_give_relaxed>("lock_give=relaxed", n, false);
  ok &= report_row<weak_sole_relaxed>("sole=relaxed", n, false);
  std::printf("%s\n", ok ? "OK: the real orders pass; every weakening is caught"
                         : "FAILED: see UNEXPECTED lines above");
  return ok ? 0 : 1;
}
