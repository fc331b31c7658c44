// Options, progress and the JSON summary of pool_kill_stress.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "stress_options.hpp"
#include "stress_util.hpp"

#ifndef SHMPOOL_STRESS_REPORT_DIR
#define SHMPOOL_STRESS_REPORT_DIR "reports/stress"
#endif

namespace stress {
namespace {

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "pool_kill_stress: %s\n"
               "usage: pool_kill_stress [--backing file|memfd|anon] [--variant raw|i64|i32|f64|str|all]\n"
               "       [--workers N] [--capacity C] [--kills K | --duration SECONDS[s|m|h]] [--seed S]\n"
               "       [--json PATH] [--quiet]\n",
               why);
  std::exit(2);
}

double parse_duration(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  const std::string unit = end;
  if (unit.empty() || unit == "s") return v;
  if (unit == "m") return v * 60;
  if (unit == "h") return v * 3600;
  usage("bad --duration (want e.g. 90, 90s, 30m, 2h)");
}

bool one_of(const std::string& v, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed)
    if (v == a) return true;
  return false;
}

}  // namespace

void run_totals::add(const run_totals& r) {
  kills += r.kills;
  ops += r.ops;
  checks += r.checks;
  quiescent_checks += r.quiescent_checks;
  waiter_probes += r.waiter_probes;
  pid_reuse_forged += r.pid_reuse_forged;
  recovered += r.recovered;
  violations += r.violations;
  seconds += r.seconds;
  if (first_violation.empty()) first_violation = r.first_violation;
}

options parse_options(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--backing") o.backing = value();
    else if (a == "--variant") o.variant = value();
    else if (a == "--workers") o.workers = static_cast<unsigned>(std::stoul(value()));
    else if (a == "--capacity") o.capacity = std::stoull(value());
    else if (a == "--kills") o.kills = std::stoull(value());
    else if (a == "--duration") o.duration_s = parse_duration(value());
    else if (a == "--seed") o.seed = std::stoull(value());
    else if (a == "--json") o.json = value();
    else if (a == "--quiet") o.quiet = true;
    else usage(("unknown argument " + a).c_str());
  }
  if (!one_of(o.backing, {"file", "memfd", "anon"})) usage("bad --backing");
  if (!one_of(o.variant, {"raw", "i64", "i32", "f64", "str", "all"})) usage("bad --variant");
  if (o.workers < 1 || o.workers > 64) usage("--workers must be 1..64");
  if (o.capacity < 2) usage("--capacity must be at least 2");
  if (o.json.empty()) o.json = std::string(SHMPOOL_STRESS_REPORT_DIR) + "/kill-" + o.backing + "-" + o.variant + ".json";
  return o;
}

std::string replay_command(const options& o) {
  std::string cmd = "pool_kill_stress --backing " + o.backing + " --variant " + o.variant + " --workers " +
                    std::to_string(o.workers) + " --capacity " + std::to_string(o.capacity);
  if (o.duration_s > 0) cmd += " --duration " + std::to_string(static_cast<long long>(o.duration_s)) + "s";
  else cmd += " --kills " + std::to_string(o.kills);
  return cmd + " --seed " + std::to_string(o.seed);
}

progress::progress(const options& o) : live_(!o.quiet && ::isatty(STDERR_FILENO)), quiet_(o.quiet) {}

void progress::update(const run_totals& t, std::uint64_t ops, std::int64_t elapsed_ns) {
  if (!live_) return;
  const std::int64_t now = now_ns();
  if (now - last_ns_ < 250'000'000) return;
  last_ns_ = now;
  const double s = static_cast<double>(elapsed_ns) / 1e9;
  std::fprintf(stderr, "\r[stress] kills %llu  ops/s %.0f  checks passed %llu  recovered %llu   ",
               static_cast<unsigned long long>(t.kills), s > 0 ? static_cast<double>(ops) / s : 0.0,
               static_cast<unsigned long long>(t.checks), static_cast<unsigned long long>(t.recovered));
}

void progress::variant_done(const std::string& variant, const run_totals& t) {
  if (live_) std::fprintf(stderr, "\r%*s\r", 90, "");
  if (quiet_) return;
  std::fprintf(stderr, "[stress] %-4s %llu kills, %llu checks (%llu quiescent), %.0f ops/s, %llu recovered, %s\n",
               variant.c_str(), static_cast<unsigned long long>(t.kills), static_cast<unsigned long long>(t.checks),
               static_cast<unsigned long long>(t.quiescent_checks), t.seconds > 0 ? static_cast<double>(t.ops) / t.seconds : 0.0,
               static_cast<unsigned long long>(t.recovered), t.violations == 0 ? "ok" : "FAILED");
}

int finish_run(const options& o, const run_totals& t, int, char**) {
  const bool ok = t.violations == 0;
  const double kps = t.seconds > 0 ? static_cast<double>(t.kills) / t.seconds : 0;
  json_object j;
  j.str("runner", "pool_kill_stress").str("backing", o.backing).str("variant", o.variant)
      .num("workers", std::uint64_t{o.workers}).num("capacity", o.capacity).num("seed", o.seed)
      .num("kills", t.kills).num("seconds", t.seconds).num("kills_per_s", kps).num("ops", t.ops)
      .num("ops_per_s", t.seconds > 0 ? static_cast<double>(t.ops) / t.seconds : 0.0)
      .num("checks_passed", ok ? t.checks : 0).num("quiescent_checks", t.quiescent_checks)
      .num("waiter_probes", t.waiter_probes).num("pid_reuse_forged", t.pid_reuse_forged)
      .num("slots_recovered", t.recovered).num("lost_slots", ok ? std::uint64_t{0} : t.violations)
      .num("violations", t.violations).str("result", ok ? "pass" : "fail")
      .str("first_violation", t.first_violation).str("replay", replay_command(o));
  if (!write_text_file(o.json, j.text())) std::fprintf(stderr, "[stress] could not write %s\n", o.json.c_str());
  std::printf("[stress] %s: %s %s, %llu kills in %.1f s (%.1f kills/s), %llu ops, %llu checks, %llu pid-reuse owners "
              "recovered, %llu slots recovered, %llu violations\n",
              ok ? "PASS" : "FAIL", o.backing.c_str(), o.variant.c_str(), static_cast<unsigned long long>(t.kills),
              t.seconds, kps, static_cast<unsigned long long>(t.ops), static_cast<unsigned long long>(t.checks),
              static_cast<unsigned long long>(t.pid_reuse_forged), static_cast<unsigned long long>(t.recovered),
              static_cast<unsigned long long>(t.violations));
  if (!ok) {
    std::printf("[stress] first violation: %s\n", t.first_violation.c_str());
    std::printf("[stress] seed %llu; replay: %s\n", static_cast<unsigned long long>(o.seed), replay_command(o).c_str());
  }
  return ok ? 0 : 1;
}

}  // namespace stress
