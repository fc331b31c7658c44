// The `shmpool` command-line tool: what is in this pool, is it healthy, and
// who holds its slots.  `shmpool --help` lists the subcommands.
//
// Exit status: 0 success; 1 failure (for `check`: the pool is inconsistent);
// 2 not a pool (bad magic, another format, too small, not a regular file,
// unreadable); 64 usage error.  Errors are one line on stderr.
//
// info, stats, slots and check never write: they open the file O_RDONLY and
// map it PROT_READ (pool_inspect.hpp).  recover and create write.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "pool_inspect.hpp"
#include "shmpool/platform/liveness.hpp"
#include "shmpool/pool.hpp"
#include "shmpool/version.hpp"

namespace {

namespace sp = shmpool;
namespace tool = shmpool::tool;
using shmpool::detail::variant_code;

constexpr int exit_ok = 0, exit_fail = 1, exit_not_a_pool = 2, exit_usage = 64;

struct usage_error {
  std::string message;
};

// ---- arguments -------------------------------------------------------------

struct args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;  // --name value
  std::set<std::string> flags;                 // --name
  bool help = false;
};

// Parses argv after the subcommand.  `valued` options take a value
// (--x V or --x=V); `flagged` ones take none.
args parse(int argc, char** argv, int from, const std::set<std::string>& valued, const std::set<std::string>& flagged) {
  args a;
  for (int i = from; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "-h" || s == "--help") {
      a.help = true;
    } else if (s.rfind("--", 0) == 0 && s.size() > 2) {
      std::string name = s.substr(2), value;
      const auto eq = name.find('=');
      const bool has_eq = eq != std::string::npos;
      if (has_eq) {
        value = name.substr(eq + 1);
        name.resize(eq);
      }
      if (valued.count(name) != 0) {
        if (!has_eq) {
          if (i + 1 >= argc) throw usage_error{"option --" + name + " needs a value"};
          value = argv[++i];
        }
        a.options[name] = value;
      } else if (flagged.count(name) != 0 && !has_eq) {
        a.flags.insert(name);
      } else {
        throw usage_error{"unknown option " + s};
      }
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

std::uint64_t to_u64(const std::string& text, const std::string& what) {
  std::uint64_t v = 0;
  const auto* end = text.data() + text.size();
  const auto r = std::from_chars(text.data(), end, v);
  if (text.empty() || r.ec != std::errc{} || r.ptr != end)
    throw usage_error{what + " must be a non-negative integer, not '" + text + "'"};
  return v;
}

double to_seconds(const std::string& text, const std::string& what) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !(v > 0) || v > 86400)
    throw usage_error{what + " must be a number of seconds in (0, 86400], not '" + text + "'"};
  return v;
}

std::string one_file(const args& a, const char* cmd) {
  if (a.positional.size() != 1)
    throw usage_error{std::string(cmd) + " takes exactly one FILE (see shmpool " + cmd + " --help)"};
  return a.positional[0];
}

// ---- info ------------------------------------------------------------------

const char* info_help =
    "usage: shmpool info FILE\n"
    "Prints the pool's variant, capacity, elem_size, max_len (str pools), format\n"
    "version and mapping size.  Read-only.\n";

int cmd_info(const args& a) {
  const std::string path = one_file(a, "info");
  const auto f = tool::pool_file::open_readonly(path);
  const auto& l = f.layout();
  const std::uint32_t fmt = f.header().format;
  std::printf("file:           %s\n", path.c_str());
  std::printf("variant:        %s\n", sp::detail::variant_name(l.variant));
  std::printf("capacity:       %llu\n", static_cast<unsigned long long>(l.capacity));
  std::printf("elem_size:      %llu\n", static_cast<unsigned long long>(l.elem_size));
  if (l.variant == variant_code::str) std::printf("max_len:        %llu\n", static_cast<unsigned long long>(l.max_len));
  std::printf("format:         version %u (format word 0x%08x)\n", fmt >> 24, fmt);
  std::printf("mapping size:   %llu bytes\n", static_cast<unsigned long long>(l.total_size));
  std::printf("file size:      %llu bytes\n", static_cast<unsigned long long>(f.file_size()));
  return exit_ok;
}

// ---- stats -----------------------------------------------------------------

const char* stats_help =
    "usage: shmpool stats FILE [--json] [--watch SECONDS [--count N]]\n"
    "Prints the pool's counters (approximate while operations are in flight).\n"
    "  --json           one JSON object (with --watch: one per line)\n"
    "  --watch SECONDS  refresh every SECONDS (fractions allowed) until interrupted\n"
    "  --count N        with --watch: stop after N refreshes\n"
    "Read-only.\n";

using stat_field = std::pair<const char*, std::uint64_t sp::pool_stats::*>;
constexpr stat_field stat_fields[] = {
    {"capacity", &sp::pool_stats::capacity}, {"elem_size", &sp::pool_stats::elem_size},
    {"used", &sp::pool_stats::used},         {"available", &sp::pool_stats::available},
    {"waiters", &sp::pool_stats::waiters},   {"mmap_size", &sp::pool_stats::mmap_size},
    {"allocs", &sp::pool_stats::allocs},     {"frees", &sp::pool_stats::frees},
    {"waits", &sp::pool_stats::waits},       {"timeouts", &sp::pool_stats::timeouts},
    {"recoveries", &sp::pool_stats::recoveries},
};

void print_stats(const sp::pool_stats& s, bool json, bool compact_row) {
  if (json) {
    std::string out = "{";
    for (const auto& [name, field] : stat_fields) {
      if (out.size() > 1) out += ", ";
      out += std::string("\"") + name + "\": " + std::to_string(s.*field);
    }
    std::printf("%s}\n", out.c_str());
  } else if (compact_row) {
    for (const auto& [name, field] : stat_fields) std::printf("%*llu", 11, static_cast<unsigned long long>(s.*field));
    std::printf("\n");
  } else {
    for (const auto& [name, field] : stat_fields)
      std::printf("%-11s %llu\n", name, static_cast<unsigned long long>(s.*field));
  }
  std::fflush(stdout);
}

int cmd_stats(const args& a) {
  const std::string path = one_file(a, "stats");
  const bool json = a.flags.count("json") != 0;
  const bool watch = a.options.count("watch") != 0;
  if (!watch && a.options.count("count") != 0) throw usage_error{"--count needs --watch"};
  const double every = watch ? to_seconds(a.options.at("watch"), "--watch") : 0;
  const std::uint64_t count = a.options.count("count") != 0 ? to_u64(a.options.at("count"), "--count") : 0;
  const auto f = tool::pool_file::open_readonly(path);
  if (!watch) {
    print_stats(f.stats(), json, false);
    return exit_ok;
  }
  if (!json) {
    for (const auto& [name, field] : stat_fields) std::printf("%11s", name);
    std::printf("\n");
  }
  for (std::uint64_t n = 0; count == 0 || n < count; ++n) {
    if (n != 0) std::this_thread::sleep_for(std::chrono::duration<double>(every));
    print_stats(f.stats(), json, true);
  }
  return exit_ok;
}

// ---- slots -----------------------------------------------------------------

const char* slots_help =
    "usage: shmpool slots FILE\n"
    "Lists every taken slot: index, state, owner pid, the liveness verdict on the\n"
    "owner (alive; dead: certainly gone, recover frees it; unknown: /proc could not\n"
    "tell, e.g. hidepid or the fd limit, so it counts as alive; other-ns: it ran in\n"
    "another pid namespace), and the owner's command name (/proc/PID/comm).\n"
    "A live owner may hold slots from before an exec (the identity survives exec):\n"
    "shmpool recover FILE --owner PID releases them.  Read-only.\n";

const char* state_name(sp::detail::slot_state s) {
  switch (s) {
    case sp::detail::slot_state::free: return "free";
    case sp::detail::slot_state::claiming: return "claiming";
    case sp::detail::slot_state::allocated: return "allocated";
    case sp::detail::slot_state::releasing: return "releasing";
  }
  return "?";
}

using sp::platform::verdict;

verdict liveness_of(std::uint64_t identity) { return sp::platform::proc_liveness::judge(identity); }

std::string comm_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  if (!in || !std::getline(in, name)) return "-";
  return name;
}

int cmd_slots(const args& a) {
  const std::string path = one_file(a, "slots");
  const auto f = tool::pool_file::open_readonly(path);
  const auto taken = f.taken_slots();
  if (taken.empty()) {
    std::printf("no slots taken (capacity %llu)\n", static_cast<unsigned long long>(f.layout().capacity));
    return exit_ok;
  }
  std::printf("%-10s %-10s %-8s %-8s %s\n", "slot", "state", "pid", "owner", "command");
  std::uint64_t dead = 0;
  for (const auto& s : taken) {
    const verdict l = liveness_of(s.identity);
    dead += l == verdict::dead ? 1 : 0;
    // A dead owner's pid may since name another process: no command then.
    const std::string comm = l == verdict::alive ? comm_of(s.pid) : "-";
    std::printf("%-10llu %-10s %-8d %-8s %s\n", static_cast<unsigned long long>(s.index), state_name(s.state),
                static_cast<int>(s.pid), sp::platform::verdict_name(l), comm.c_str());
  }
  std::printf("%zu slot(s) taken, %llu held by dead processes%s\n", taken.size(), static_cast<unsigned long long>(dead),
              dead != 0 ? " (shmpool recover frees them)" : "");
  return exit_ok;
}

// ---- check -----------------------------------------------------------------

const char* check_help =
    "usage: shmpool check FILE\n"
    "Verifies every invariant the format promises: the header (magic, format,\n"
    "checksum, ranges, offsets, size, reserved bytes), the bitmap against the\n"
    "slot words, per-slot and pool counters.  Never writes.\n"
    "Exit status: 0 healthy; 1 inconsistent (each problem on its own line);\n"
    "2 not a pool (or unreadable).  Exact only while no operation is in flight.\n";

int cmd_check(const args& a) {
  const std::string path = one_file(a, "check");
  try {
    const auto f = tool::pool_file::open_readonly(path);
    std::vector<std::string> notes;
    const auto problems = f.problems(&notes);
    for (const auto& n : notes) std::printf("note: %s\n", n.c_str());
    if (problems.empty()) {
      std::printf("%s: healthy (%s pool, %llu slots, %llu in use)\n", path.c_str(),
                  sp::detail::variant_name(f.layout().variant), static_cast<unsigned long long>(f.layout().capacity),
                  static_cast<unsigned long long>(f.stats().used));
      return exit_ok;
    }
    std::printf("%s: inconsistent, %zu problem(s):\n", path.c_str(), problems.size());
    for (const auto& p : problems) std::printf("  %s\n", p.c_str());
    return exit_fail;
  } catch (const tool::inspect_error& e) {
    // Unreadable counts as "not a pool" for check (exit 2); see check_help.
    if (e.kind == tool::inspect_error::system) throw tool::inspect_error{tool::inspect_error::not_a_pool, e.message};
    if (e.kind != tool::inspect_error::damaged) throw;
    std::printf("%s: inconsistent, 1 problem(s):\n  %s\n", path.c_str(), e.message.c_str());
    return exit_fail;
  }
}

// ---- recover ---------------------------------------------------------------

const char* recover_help =
    "usage: shmpool recover FILE [--owner PID]\n"
    "Runs stale recovery: frees every slot whose owner is certainly dead and\n"
    "repairs bitmap bits set over free slots.  Prints each slot it freed with\n"
    "the dead owner's pid.  Writes to the pool (safe while others use it).\n"
    "  --owner PID   instead, releases every slot held by PID, alive or not: for\n"
    "                slots a process allocated before it called exec (its new image\n"
    "                does not know them).  Your decision: if PID still uses a slot,\n"
    "                another process may be handed it.\n";

// Runs fn on a handle of the right variant attached to fd.
void with_pool(int fd, variant_code v, const std::function<void(sp::detail::pool_base&)>& fn) {
  switch (v) {
    case variant_code::raw: { auto p = sp::pool::from_fd(fd); fn(p); return; }
    case variant_code::i64: { auto p = sp::i64_pool::from_fd(fd); fn(p); return; }
    case variant_code::i32: { auto p = sp::i32_pool::from_fd(fd); fn(p); return; }
    case variant_code::f64: { auto p = sp::f64_pool::from_fd(fd); fn(p); return; }
    case variant_code::str: { auto p = sp::str_pool::from_fd(fd); fn(p); return; }
  }
  throw tool::inspect_error{tool::inspect_error::damaged, "unknown variant"};
}

// recover --owner PID: release_owner, naming each slot released.
int recover_owner(const std::string& path, const std::string& pid_text) {
  const std::uint64_t pid = to_u64(pid_text, "--owner");
  if (pid == 0 || pid >= (std::uint64_t{1} << sp::platform::identity_pid_bits))
    throw usage_error{"--owner must be a pid (1.." + std::to_string((1u << sp::platform::identity_pid_bits) - 1) +
                      "), not '" + pid_text + "'"};
  const auto before = tool::pool_file::open_readonly(path);
  std::map<std::uint64_t, std::pair<sp::detail::slot_state, verdict>> held;
  for (const auto& s : before.taken_slots())
    if (static_cast<std::uint64_t>(s.pid) == pid) held[s.index] = {s.state, liveness_of(s.identity)};
  const int fd = ::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) throw tool::inspect_error{tool::inspect_error::system, path + ": open: " + std::strerror(errno)};
  std::size_t freed = 0;
  try {
    const auto layout = tool::read_layout(fd, path);
    with_pool(fd, layout.variant, [&](sp::detail::pool_base& p) { freed = p.release_owner(static_cast<pid_t>(pid)); });
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  for (const auto& [slot, what] : held)
    std::printf("released slot %llu (%s by pid %llu, %s)\n", static_cast<unsigned long long>(slot),
                state_name(what.first), static_cast<unsigned long long>(pid), sp::platform::verdict_name(what.second));
  std::printf("released %zu slot(s) of pid %llu\n", freed, static_cast<unsigned long long>(pid));
  return exit_ok;
}

int cmd_recover(const args& a) {
  const std::string path = one_file(a, "recover");
  if (a.options.count("owner") != 0) return recover_owner(path, a.options.at("owner"));
  const auto before = tool::pool_file::open_readonly(path);
  std::map<std::uint64_t, std::uint64_t> dead;  // slot -> slot word seen dead
  for (const auto& s : before.taken_slots())
    if (liveness_of(s.identity) == verdict::dead)
      dead[s.index] = sp::detail::make_slot_word(s.state, s.identity);
  const auto orphans = before.orphan_bits();

  const int fd = ::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) throw tool::inspect_error{tool::inspect_error::system, path + ": open: " + std::strerror(errno)};
  std::size_t freed = 0;
  try {
    const auto layout = tool::read_layout(fd, path);
    with_pool(fd, layout.variant, [&](sp::detail::pool_base& p) { freed = p.recover_stale(); });
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);

  // Name what changed: a dead owner's word that is no longer there was freed by us
  // (or by a concurrent recoverer; the count below is ours alone).
  const auto after = tool::pool_file::open_readonly(path);
  std::map<std::uint64_t, std::uint64_t> now;
  for (const auto& s : after.taken_slots()) now[s.index] = sp::detail::make_slot_word(s.state, s.identity);
  for (const auto& [slot, word] : dead) {
    const auto it = now.find(slot);
    if (it != now.end() && it->second == word) continue;
    std::printf("freed slot %llu (%s by pid %d, dead)\n", static_cast<unsigned long long>(slot),
                state_name(sp::detail::state_of(word)),
                static_cast<int>(sp::platform::identity_pid(sp::detail::identity_of(word))));
  }
  const auto still = after.orphan_bits();
  for (const std::uint64_t slot : orphans)
    if (std::find(still.begin(), still.end(), slot) == still.end())
      std::printf("repaired slot %llu (bitmap bit was set over a free slot)\n", static_cast<unsigned long long>(slot));
  std::printf("recovered %zu slot(s)\n", freed);
  return exit_ok;
}

// ---- create ----------------------------------------------------------------

const char* create_help =
    "usage: shmpool create FILE --variant V --capacity N [--elem-size B | --max-len L]\n"
    "Creates a new pool file (fails if FILE exists).\n"
    "  --variant V      raw, i64, i32, f64 or str\n"
    "  --capacity N     number of slots (1 .. 2^32)\n"
    "  --elem-size B    raw pools: bytes per slot (required)\n"
    "  --max-len L      str pools: longest string in bytes (required)\n";

int cmd_create(const args& a) {
  const std::string path = one_file(a, "create");
  const auto opt = [&](const char* name) { return a.options.count(name) != 0; };
  if (!opt("variant")) throw usage_error{"create needs --variant (raw, i64, i32, f64 or str)"};
  if (!opt("capacity")) throw usage_error{"create needs --capacity N"};
  const std::string v = a.options.at("variant");
  const std::uint64_t cap = to_u64(a.options.at("capacity"), "--capacity");
  if (opt("elem-size") && v != "raw") throw usage_error{"--elem-size applies to raw pools only"};
  if (opt("max-len") && v != "str") throw usage_error{"--max-len applies to str pools only"};
  if (v == "raw" && !opt("elem-size")) throw usage_error{"raw pools need --elem-size B"};
  if (v == "str" && !opt("max-len")) throw usage_error{"str pools need --max-len L"};
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) throw std::runtime_error(path + ": already exists");
  if (v == "raw") sp::pool::open(path, cap, to_u64(a.options.at("elem-size"), "--elem-size"));
  else if (v == "i64") sp::i64_pool::open(path, cap);
  else if (v == "i32") sp::i32_pool::open(path, cap);
  else if (v == "f64") sp::f64_pool::open(path, cap);
  else if (v == "str") sp::str_pool::open(path, cap, to_u64(a.options.at("max-len"), "--max-len"));
  else throw usage_error{"unknown variant '" + v + "' (raw, i64, i32, f64 or str)"};
  const auto f = tool::pool_file::open_readonly(path);
  std::printf("created %s: %s pool, capacity %llu, elem_size %llu, %llu bytes\n", path.c_str(),
              sp::detail::variant_name(f.layout().variant), static_cast<unsigned long long>(f.layout().capacity),
              static_cast<unsigned long long>(f.layout().elem_size),
              static_cast<unsigned long long>(f.layout().total_size));
  return exit_ok;
}

// ---- main ------------------------------------------------------------------

const char* main_help =
    "usage: shmpool COMMAND [ARGS]   (shmpool COMMAND --help for each)\n"
    "  info FILE                  variant, capacity, elem_size, format, mapping size\n"
    "  stats FILE [--json] [--watch SECONDS]\n"
    "                             the pool's counters, optionally refreshed\n"
    "  slots FILE                 taken slots: owner pid, alive/dead/unknown, command\n"
    "  check FILE                 verify every invariant (exit 0 healthy, 1 not, 2 not a pool)\n"
    "  recover FILE [--owner PID] free slots of dead processes (or every slot of PID)\n"
    "  create FILE --variant V --capacity N [--elem-size B | --max-len L]\n"
    "  --version                  print the version\n"
    "Exit status: 0 ok, 1 failure or inconsistent pool, 2 not a pool, 64 usage error.\n";

struct command {
  const char* name;
  const char* help;
  int (*run)(const args&);
  std::set<std::string> valued, flagged;
};

// Strips the core's "shmpool: " prefix; the tool adds its own.
std::string plain(const char* what) {
  std::string_view w(what);
  if (w.rfind("shmpool: ", 0) == 0) w.remove_prefix(9);
  return std::string(w);
}

}  // namespace

int main(int argc, char** argv) {
  const command commands[] = {
      {"info", info_help, cmd_info, {}, {}},
      {"stats", stats_help, cmd_stats, {"watch", "count"}, {"json"}},
      {"slots", slots_help, cmd_slots, {}, {}},
      {"check", check_help, cmd_check, {}, {}},
      {"recover", recover_help, cmd_recover, {"owner"}, {}},
      {"create", create_help, cmd_create, {"variant", "capacity", "elem-size", "max-len"}, {}},
  };
  if (argc < 2) {
    std::fputs(main_help, stderr);
    return exit_usage;
  }
  const std::string_view sub = argv[1];
  if (sub == "-h" || sub == "--help" || sub == "help") {
    std::fputs(main_help, stdout);
    return exit_ok;
  }
  if (sub == "--version") {
    std::printf("shmpool %s\n", SHMPOOL_VERSION);
    return exit_ok;
  }
  const command* cmd = nullptr;
  for (const auto& c : commands)
    if (sub == c.name) cmd = &c;
  const std::string prefix = "shmpool " + std::string(sub) + ": ";
  if (cmd == nullptr) {
    std::fprintf(stderr, "shmpool: unknown command '%s' (try shmpool --help)\n", argv[1]);
    return exit_usage;
  }
  try {
    const args a = parse(argc, argv, 2, cmd->valued, cmd->flagged);
    if (a.help) {
      std::fputs(cmd->help, stdout);
      return exit_ok;
    }
    return cmd->run(a);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "%s%s\n", prefix.c_str(), e.message.c_str());
    return exit_usage;
  } catch (const tool::inspect_error& e) {
    std::fprintf(stderr, "%s%s\n", prefix.c_str(), e.message.c_str());
    return e.kind == tool::inspect_error::system ? exit_fail : e.kind == tool::inspect_error::not_a_pool ? exit_not_a_pool : exit_fail;
  } catch (const sp::error& e) {
    std::fprintf(stderr, "%s%s\n", prefix.c_str(), plain(e.what()).c_str());
    const int c = e.code().category() == sp::error_category() ? e.code().value() : 0;
    return c == static_cast<int>(sp::errc::bad_magic) || c == static_cast<int>(sp::errc::unsupported_format)
               ? exit_not_a_pool
               : exit_fail;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s%s\n", prefix.c_str(), plain(e.what()).c_str());
    return exit_fail;
  }
}
