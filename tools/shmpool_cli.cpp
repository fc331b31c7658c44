// The `shmpool` command-line tool: what is in this pool, is it healthy, and
// who holds its slots.  `shmpool --help` lists the subcommands; the text of
// every help and of the man page lives in shmpool_doc.cpp, and so do the
// exit statuses (one per cause, the same for every subcommand).
//
// info, stats, slots, check and list never write: they open the file
// O_RDONLY|O_NONBLOCK, map it PROT_READ and answer from a validated private
// copy of it, so a file changed under them is an error (exit 6), never a
// signal (pool_inspect.hpp).  recover and create write.
//
// Names the tool did not choose (file and directory names, process names)
// may hold any bytes.  --json writes them as valid UTF-8 (json_string) and,
// when that loses bytes, adds their bytes in hex (json_object::name).
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <functional>
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
#include "shmpool_doc.hpp"

namespace {

namespace sp = shmpool;
namespace tool = shmpool::tool;
using shmpool::detail::variant_code;
using sp::platform::verdict;
using namespace shmpool::tool;  // exit_* statuses

struct usage_error {
  std::string message;
};
struct write_error {  // create/recover could not write: exit_write_failed
  std::string message;
};

// ---- arguments (getopt_long) -----------------------------------------------

struct option_spec {
  const char* name;
  bool valued;  // takes a value (--x V or --x=V)
};

struct args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;  // --name value
  std::set<std::string> flags;                 // --name
  bool help = false;

  bool has(const char* name) const { return options.count(name) != 0 || flags.count(name) != 0; }
};

// Parses the arguments after the subcommand with getopt_long: options may
// come before or after the operands (GNU permutation), `--` ends them,
// unambiguous prefixes of long names are accepted.  Throws usage_error.
args parse(int argc, char** argv, const std::vector<option_spec>& specs) {
  constexpr int first_id = 256;  // long-only options get ids above any char
  std::vector<option> longopts;
  for (std::size_t i = 0; i < specs.size(); ++i)
    longopts.push_back({specs[i].name, specs[i].valued ? required_argument : no_argument, nullptr,
                        first_id + static_cast<int>(i)});
  longopts.push_back({"help", no_argument, nullptr, 'h'});
  longopts.push_back({nullptr, 0, nullptr, 0});
  const auto name_of = [&](int id) { return std::string("--") + (id == 'h' ? "help" : specs[id - first_id].name); };

  args a;
  opterr = 0;  // our own one-line messages
  optind = 0;  // glibc: reinitialise
  for (;;) {
    const int c = ::getopt_long(argc, argv, ":h", longopts.data(), nullptr);
    if (c == -1) break;
    if (c == 'h') {
      a.help = true;
    } else if (c == ':') {
      throw usage_error{"option " + (optopt >= first_id ? name_of(optopt) : "-" + std::string(1, char(optopt))) +
                        " needs a value"};
    } else if (c == '?') {
      if (optopt >= first_id || optopt == 'h') throw usage_error{"option " + name_of(optopt) + " takes no value"};
      if (optopt != 0) throw usage_error{"unknown option -" + std::string(1, static_cast<char>(optopt))};
      std::string bad = argv[optind - 1];
      bad.resize(std::min(bad.size(), bad.find('=')));
      throw usage_error{"unknown option " + bad};
    } else {
      const option_spec& s = specs[c - first_id];
      if (s.valued) a.options[s.name] = optarg;
      else a.flags.insert(s.name);
    }
  }
  for (int i = optind; i < argc; ++i) a.positional.emplace_back(argv[i]);
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

// ---- JSON ------------------------------------------------------------------

// The length of the well-formed UTF-8 sequence (RFC 3629) at s[i], or 0 if
// none starts there.  *subpart: the bytes of the longest prefix of one
// (Unicode's "maximal subpart"; 1 for a byte that starts none).
std::size_t utf8_sequence(std::string_view s, std::size_t i, std::size_t* subpart) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  *subpart = 1;
  if (c < 0x80) return 1;
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c == 0xE0) len = 3, lo = 0xA0;        // no overlong forms
  else if (c == 0xED) len = 3, hi = 0x9F;        // no surrogates
  else if (c >= 0xE1 && c <= 0xEF) len = 3;
  else if (c == 0xF0) len = 4, lo = 0x90;        // no overlong forms
  else if (c == 0xF4) len = 4, hi = 0x8F;        // nothing above U+10FFFF
  else if (c >= 0xF1 && c <= 0xF3) len = 4;
  else return 0;                                 // 80..C1, F5..FF never start one
  std::size_t k = 1;
  if (i + k < s.size() && b(i + k) >= lo && b(i + k) <= hi) ++k;
  while (k > 1 && k < len && i + k < s.size() && b(i + k) >= 0x80 && b(i + k) <= 0xBF) ++k;
  *subpart = k;
  return k == len ? len : 0;
}

bool is_utf8(std::string_view s) {
  std::size_t skip = 0;
  for (std::size_t i = 0; i < s.size(); i += skip)
    if (utf8_sequence(s, i, &skip) == 0) return false;
  return true;
}

// S as a JSON string (RFC 8259), whatever its bytes: quotes, backslashes and
// control characters escaped, and each maximal subpart of an ill-formed
// UTF-8 sequence replaced by U+FFFD, as Unicode recommends (and as
// Python's bytes.decode('utf-8', 'replace') does).  Lossless for UTF-8.
std::string json_string(std::string_view s) {
  std::string out = "\"";
  std::size_t skip = 0;
  for (std::size_t i = 0; i < s.size(); i += skip) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = utf8_sequence(s, i, &skip);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += s[i];
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out.append(s, i, n);
    }
  }
  return out + "\"";
}

std::string hex_of(std::string_view s) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// Members are added in order; values are raw JSON text.
struct json_object {
  std::string text = "{";
  json_object& raw(std::string_view name, const std::string& value) {
    if (text.size() > 1) text += ", ";
    text += json_string(name) + ": " + value;
    return *this;
  }
  json_object& str(std::string_view name, std::string_view v) { return raw(name, json_string(v)); }
  json_object& num(std::string_view name, std::uint64_t v) { return raw(name, std::to_string(v)); }
  // A name the tool did not choose: member NAME as a string and, when its
  // bytes are not UTF-8 (so the string replaced some), member NAME_hex with
  // every byte in lower-case hex.  Two different names never print alike.
  json_object& name(std::string_view member, std::string_view v) {
    str(member, v);
    if (!is_utf8(v)) str(std::string(member) + "_hex", hex_of(v));
    return *this;
  }
  std::string done() const { return text + "}"; }
};

std::string json_array(const std::vector<std::string>& raw_items) {
  std::string out = "[";
  for (const auto& i : raw_items) out += (out.size() > 1 ? ", " : "") + i;
  return out + "]";
}

std::string json_strings(const std::vector<std::string>& items) {
  std::vector<std::string> raw;
  for (const auto& i : items) raw.push_back(json_string(i));
  return json_array(raw);
}

// Now as RFC 3339 in UTC with milliseconds, e.g. 2026-12-02T00:20:11.123Z.
std::string utc_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  std::tm tm{};
  ::gmtime_r(&ts.tv_sec, &tm);
  char date[32], out[48];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(out, sizeof out, "%s.%03ldZ", date, ts.tv_nsec / 1000000);
  return out;
}

// ---- owners ----------------------------------------------------------------

const char* state_name(sp::detail::slot_state s) {
  switch (s) {
    case sp::detail::slot_state::free: return "free";
    case sp::detail::slot_state::claiming: return "claiming";
    case sp::detail::slot_state::allocated: return "allocated";
    case sp::detail::slot_state::releasing: return "releasing";
  }
  return "?";
}

verdict liveness_of(std::uint64_t identity) { return sp::platform::proc_liveness::judge(identity); }

// Unknown and other-namespace owners are "maybe alive": never freed, never vouched for.
bool is_unknown(verdict v) { return v == verdict::unknown || v == verdict::other_namespace; }

// The process's name, every byte of it (it may hold any byte but NUL, a
// newline included); the kernel ends the file with one newline.
std::string comm_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm", std::ios::binary);
  if (!in) return "";
  std::string name((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (name.empty() || name.back() != '\n') return "";
  name.pop_back();
  return name;
}

// A name for a text table: control characters become '?', as ls and ps
// print them, so that a name cannot break a row or drive the terminal.
std::string printable(std::string name) {
  for (char& c : name)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return name;
}

struct judged_slot {
  tool::slot_entry slot;
  verdict owner;
};

std::vector<judged_slot> judge_owners(const tool::pool_file& f) {
  std::vector<judged_slot> out;
  for (const auto& s : f.taken_slots()) out.push_back({s, liveness_of(s.identity)});
  return out;
}

std::uint64_t count_owners(const std::vector<judged_slot>& slots, bool (*pred)(verdict)) {
  return static_cast<std::uint64_t>(
      std::count_if(slots.begin(), slots.end(), [&](const judged_slot& j) { return pred(j.owner); }));
}
bool is_dead(verdict v) { return v == verdict::dead; }

// ---- info ------------------------------------------------------------------

int cmd_info(const args& a) {
  const std::string path = one_file(a, "info");
  const auto f = tool::pool_file::open_readonly(path);
  const auto& l = f.layout();
  const std::uint32_t fmt = f.header().format;
  if (a.has("json")) {
    json_object o;
    o.str("schema", "shmpool-info/1").name("file", path).str("variant", sp::detail::variant_name(l.variant));
    o.num("capacity", l.capacity).num("elem_size", l.elem_size);
    o.raw("max_len", l.variant == variant_code::str ? std::to_string(l.max_len) : "null");
    o.num("format_version", fmt >> 24).num("format_word", fmt).num("mapping_size", l.total_size);
    o.num("file_size", f.file_size());
    std::printf("%s\n", o.done().c_str());
    return exit_ok;
  }
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

using stat_field = std::pair<const char*, std::uint64_t sp::pool_stats::*>;
constexpr stat_field stat_fields[] = {
    {"capacity", &sp::pool_stats::capacity}, {"elem_size", &sp::pool_stats::elem_size},
    {"used", &sp::pool_stats::used},         {"available", &sp::pool_stats::available},
    {"waiters", &sp::pool_stats::waiters},   {"mmap_size", &sp::pool_stats::mmap_size},
    {"allocs", &sp::pool_stats::allocs},     {"frees", &sp::pool_stats::frees},
    {"waits", &sp::pool_stats::waits},       {"timeouts", &sp::pool_stats::timeouts},
    {"recoveries", &sp::pool_stats::recoveries},
};

void print_stats(const std::string& path, const sp::pool_stats& s, bool json, bool compact_row) {
  if (json) {
    json_object o;
    o.str("schema", "shmpool-stats/1").name("file", path).str("time", utc_now());
    for (const auto& [name, field] : stat_fields) o.num(name, s.*field);
    std::printf("%s\n", o.done().c_str());
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
  const bool json = a.has("json");
  const bool watch = a.has("watch");
  if (!watch && a.has("count")) throw usage_error{"--count needs --watch"};
  const double every = watch ? to_seconds(a.options.at("watch"), "--watch") : 0;
  const std::uint64_t count = a.has("count") ? to_u64(a.options.at("count"), "--count") : 0;
  if (a.has("count") && count == 0)
    throw usage_error{"--count must be at least 1 (leave it out to watch until interrupted)"};
  auto f = tool::pool_file::open_readonly(path);
  if (!watch) {
    print_stats(path, f.stats(), json, false);
    return exit_ok;
  }
  if (!json) {
    for (const auto& [name, field] : stat_fields) std::printf("%11s", name);
    std::printf("\n");
  }
  for (std::uint64_t n = 0; count == 0 || n < count; ++n) {
    if (n != 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(every));
      f.refresh();  // the file may have changed since: exit_changed, the rows so far printed
    }
    print_stats(path, f.stats(), json, true);
  }
  return exit_ok;
}

// ---- slots -----------------------------------------------------------------

int cmd_slots(const args& a) {
  const std::string path = one_file(a, "slots");
  const auto f = tool::pool_file::open_readonly(path);
  const auto taken = judge_owners(f);
  const std::uint64_t dead = count_owners(taken, is_dead), unknown = count_owners(taken, is_unknown);
  if (a.has("json")) {
    std::vector<std::string> rows;
    for (const auto& [s, owner] : taken) {
      // A dead owner's pid may since name another process: no command then.
      const std::string comm = owner == verdict::alive ? comm_of(s.pid) : "";
      json_object r;
      r.num("slot", s.index).str("state", state_name(s.state)).num("pid", static_cast<std::uint64_t>(s.pid));
      r.num("identity", s.identity).str("owner", sp::platform::verdict_name(owner));
      if (comm.empty()) r.raw("command", "null");
      else r.name("command", comm);
      r.num("allocs", s.allocs);
      rows.push_back(r.done());
    }
    json_object o;
    o.str("schema", "shmpool-slots/1").name("file", path).num("capacity", f.layout().capacity);
    o.num("taken", taken.size()).num("dead", dead).num("unknown", unknown).raw("slots", json_array(rows));
    std::printf("%s\n", o.done().c_str());
    return exit_ok;
  }
  if (taken.empty()) {
    std::printf("no slots taken (capacity %llu)\n", static_cast<unsigned long long>(f.layout().capacity));
    return exit_ok;
  }
  std::printf("%-10s %-10s %-8s %-8s %s\n", "slot", "state", "pid", "owner", "command");
  for (const auto& [s, owner] : taken) {
    const std::string comm = owner == verdict::alive ? printable(comm_of(s.pid)) : "";
    std::printf("%-10llu %-10s %-8d %-8s %s\n", static_cast<unsigned long long>(s.index), state_name(s.state),
                static_cast<int>(s.pid), sp::platform::verdict_name(owner), comm.empty() ? "-" : comm.c_str());
  }
  std::printf("%zu slot(s) taken, %llu held by dead processes%s\n", taken.size(), static_cast<unsigned long long>(dead),
              dead != 0 ? " (shmpool recover frees them)" : "");
  return exit_ok;
}

// ---- check -----------------------------------------------------------------

struct check_report {
  std::vector<std::string> problems, notes;
  std::vector<judged_slot> dead, unknown;
  bool header_valid = false;
  const char* variant = "";
  std::uint64_t capacity = 0, used = 0;

  // The worst finding decides the status (shmpool_doc.cpp, "check").
  int status() const {
    if (!problems.empty()) return exit_inconsistent;
    if (!dead.empty()) return exit_dead_owners;
    if (!unknown.empty()) return exit_unknown_owners;
    return exit_ok;
  }
  const char* verdict_word() const {
    switch (status()) {
      case exit_inconsistent: return "inconsistent";
      case exit_dead_owners: return "dead-owners";
      case exit_unknown_owners: return "unknown-owners";
    }
    return "healthy";
  }
};

check_report run_check(const std::string& path, bool judge) {
  check_report r;
  try {
    const auto f = tool::pool_file::open_readonly(path);
    r.header_valid = true;
    r.variant = sp::detail::variant_name(f.layout().variant);
    r.capacity = f.layout().capacity;
    r.used = f.stats().used;
    r.problems = f.problems(&r.notes);
    if (judge)
      for (const auto& j : judge_owners(f)) {
        if (is_dead(j.owner)) r.dead.push_back(j);
        else if (is_unknown(j.owner)) r.unknown.push_back(j);
      }
  } catch (const tool::inspect_error& e) {
    if (e.kind != tool::inspect_error::damaged) throw;  // cannot read: exit_cannot_read
    r.problems.push_back(e.message);
  }
  return r;
}

std::string owner_line(const judged_slot& j) {
  return "slot " + std::to_string(j.slot.index) + ": " + state_name(j.slot.state) + " by pid " +
         std::to_string(j.slot.pid) + ", " + sp::platform::verdict_name(j.owner);
}

void print_check_json(const std::string& path, const check_report& r) {
  const auto owners = [](const std::vector<judged_slot>& v) {
    std::vector<std::string> rows;
    for (const auto& j : v) {
      json_object o;
      o.num("slot", j.slot.index).str("state", state_name(j.slot.state));
      o.num("pid", static_cast<std::uint64_t>(j.slot.pid)).str("owner", sp::platform::verdict_name(j.owner));
      rows.push_back(o.done());
    }
    return json_array(rows);
  };
  json_object o;
  o.str("schema", "shmpool-check/1").name("file", path).str("verdict", r.verdict_word());
  o.num("exit", static_cast<std::uint64_t>(r.status()));
  o.raw("problems", json_strings(r.problems)).raw("notes", json_strings(r.notes));
  o.raw("dead_owner_slots", owners(r.dead)).raw("unknown_owner_slots", owners(r.unknown));
  if (r.header_valid) o.str("variant", r.variant).num("capacity", r.capacity).num("used", r.used);
  std::printf("%s\n", o.done().c_str());
}

int cmd_check(const args& a) {
  const std::string path = one_file(a, "check");
  const check_report r = run_check(path, !a.has("consistency-only"));
  if (a.has("json")) {
    print_check_json(path, r);
    return r.status();
  }
  for (const auto& n : r.notes) std::printf("note: %s\n", n.c_str());
  if (!r.problems.empty()) {
    std::printf("%s: inconsistent, %zu problem(s):\n", path.c_str(), r.problems.size());
    for (const auto& p : r.problems) std::printf("  %s\n", p.c_str());
  }
  if (!r.dead.empty()) {
    std::printf("%s: %zu slot(s) held by dead processes (shmpool recover frees them):\n", path.c_str(), r.dead.size());
    for (const auto& j : r.dead) std::printf("  %s\n", owner_line(j).c_str());
  }
  if (!r.unknown.empty()) {
    std::printf("%s: %zu slot(s) held by owners whose liveness is unknown:\n", path.c_str(), r.unknown.size());
    for (const auto& j : r.unknown) std::printf("  %s\n", owner_line(j).c_str());
  }
  if (r.status() == exit_ok)
    std::printf("%s: healthy (%s pool, %llu slots, %llu in use%s)\n", path.c_str(), r.variant,
                static_cast<unsigned long long>(r.capacity), static_cast<unsigned long long>(r.used),
                a.has("consistency-only") ? ", owners not judged" : "");
  return r.status();
}

// ---- list ------------------------------------------------------------------

struct listed_pool {
  std::string name, variant, error;  // error: set for a damaged pool
  std::uint64_t capacity = 0, used = 0, dead = 0, unknown = 0;
};

struct listing {
  std::vector<listed_pool> pools;
  std::vector<std::pair<std::string, std::string>> unreadable;  // name, why
  std::uint64_t skipped = 0;
};

listing scan(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) throw tool::inspect_error{tool::inspect_error::system, dir + ": " + std::strerror(errno)};
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  listing out;
  for (const auto& name : names) {
    const std::string path = dir + "/" + name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      if (errno != ENOENT) out.unreadable.emplace_back(name, std::strerror(errno));
      continue;  // ENOENT: removed since readdir
    }
    if (!S_ISREG(st.st_mode)) {  // directories, links, FIFOs, devices, sockets
      ++out.skipped;
      continue;
    }
    try {
      const auto f = tool::pool_file::open_readonly(path);
      const auto owners = judge_owners(f);
      out.pools.push_back({name, sp::detail::variant_name(f.layout().variant), "", f.layout().capacity,
                           f.stats().used, count_owners(owners, is_dead), count_owners(owners, is_unknown)});
    } catch (const tool::inspect_error& e) {
      const std::string why = e.message.substr(std::min(e.message.size(), path.size() + 2));
      if (e.kind == tool::inspect_error::not_a_pool) ++out.skipped;
      else if (e.kind == tool::inspect_error::damaged) out.pools.push_back({name, "?", why});
      else out.unreadable.emplace_back(name, why);
    }
  }
  return out;
}

int cmd_list(const args& a) {
  if (a.positional.size() > 1) throw usage_error{"list takes at most one DIR (see shmpool list --help)"};
  const std::string dir = a.positional.empty() ? "/dev/shm" : a.positional[0];
  const listing l = scan(dir);
  if (a.has("json")) {
    std::vector<std::string> pools, unreadable;
    for (const auto& p : l.pools) {
      json_object o;
      o.name("name", p.name);
      if (p.error.empty()) {
        o.str("variant", p.variant).num("capacity", p.capacity).num("used", p.used);
        o.num("dead_owner_slots", p.dead).num("unknown_owner_slots", p.unknown).str("status", "ok");
      } else {
        o.str("status", "damaged").str("error", p.error);
      }
      pools.push_back(o.done());
    }
    for (const auto& [name, why] : l.unreadable)
      unreadable.push_back(json_object().name("name", name).str("error", why).done());
    json_object o;
    o.str("schema", "shmpool-list/1").name("dir", dir).raw("pools", json_array(pools)).num("skipped", l.skipped);
    o.raw("unreadable", json_array(unreadable));
    std::printf("%s\n", o.done().c_str());
    return exit_ok;
  }
  if (!l.pools.empty()) {
    std::printf("%-24s %-7s %10s %10s %6s %8s  %s\n", "NAME", "VARIANT", "CAPACITY", "USED", "DEAD", "UNKNOWN",
                "STATUS");
    for (const auto& p : l.pools) {
      if (!p.error.empty()) {
        std::printf("%-24s %-7s %10s %10s %6s %8s  damaged: %s\n", printable(p.name).c_str(), "?", "-", "-", "-", "-",
                    p.error.c_str());
        continue;
      }
      std::printf("%-24s %-7s %10llu %10llu %6llu %8llu  ok\n", printable(p.name).c_str(), p.variant.c_str(),
                  static_cast<unsigned long long>(p.capacity), static_cast<unsigned long long>(p.used),
                  static_cast<unsigned long long>(p.dead), static_cast<unsigned long long>(p.unknown));
    }
  }
  for (const auto& [name, why] : l.unreadable)
    std::printf("unreadable: %s: %s\n", printable(name).c_str(), why.c_str());
  std::printf("%zu pool(s) in %s, %llu other file(s) skipped, %zu unreadable\n", l.pools.size(), dir.c_str(),
              static_cast<unsigned long long>(l.skipped), l.unreadable.size());
  return exit_ok;
}

// ---- recover ---------------------------------------------------------------

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

// Opens PATH for writing (never blocking, regular files only) and runs fn
// on a handle attached to it.
void with_writable_pool(const std::string& path, const std::function<void(sp::detail::pool_base&)>& fn) {
  int fd = -1;
  try {
    fd = tool::open_nonblocking(path, O_RDWR | O_NOFOLLOW);
  } catch (const tool::inspect_error& e) {
    if (e.kind == tool::inspect_error::system) throw write_error{e.message};
    throw;
  }
  try {
    const auto layout = tool::read_layout(fd, path);
    with_pool(fd, layout.variant, fn);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
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
  std::size_t freed = 0;
  with_writable_pool(path, [&](sp::detail::pool_base& p) { freed = p.release_owner(static_cast<pid_t>(pid)); });
  for (const auto& [slot, what] : held)
    std::printf("released slot %llu (%s by pid %llu, %s)\n", static_cast<unsigned long long>(slot),
                state_name(what.first), static_cast<unsigned long long>(pid), sp::platform::verdict_name(what.second));
  std::printf("released %zu slot(s) of pid %llu\n", freed, static_cast<unsigned long long>(pid));
  return exit_ok;
}

int cmd_recover(const args& a) {
  const std::string path = one_file(a, "recover");
  if (a.has("owner")) return recover_owner(path, a.options.at("owner"));
  const auto before = tool::pool_file::open_readonly(path);
  std::map<std::uint64_t, std::uint64_t> dead;  // slot -> slot word seen dead
  for (const auto& s : before.taken_slots())
    if (liveness_of(s.identity) == verdict::dead)
      dead[s.index] = sp::detail::make_slot_word(s.state, s.identity);
  const auto stale = before.stale_marks();

  std::size_t freed = 0;
  with_writable_pool(path, [&](sp::detail::pool_base& p) { freed = p.recover_stale(); });

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
  const auto still = after.stale_marks();
  for (const std::uint64_t group : stale)
    if (std::find(still.begin(), still.end(), group) == still.end())
      std::printf("cleared the mark of group %llu (marked full over a free slot, or malformed)\n",
                  static_cast<unsigned long long>(group));
  std::printf("recovered %zu slot(s)\n", freed);
  return exit_ok;
}

// ---- create ----------------------------------------------------------------

// Creates the pool; the core's range checks (errc::bad_argument) are usage errors.
void create_pool(const std::string& path, const std::string& v, std::uint64_t cap, const args& a) {
  try {
    if (v == "raw") sp::pool::open(path, cap, to_u64(a.options.at("elem-size"), "--elem-size"));
    else if (v == "i64") sp::i64_pool::open(path, cap);
    else if (v == "i32") sp::i32_pool::open(path, cap);
    else if (v == "f64") sp::f64_pool::open(path, cap);
    else if (v == "str") sp::str_pool::open(path, cap, to_u64(a.options.at("max-len"), "--max-len"));
    else throw usage_error{"unknown variant '" + v + "' (raw, i64, i32, f64 or str)"};
  } catch (const sp::error& e) {
    std::string what = e.what();
    if (what.rfind("shmpool: ", 0) == 0) what.erase(0, 9);
    if (e.code() == sp::make_error_code(sp::errc::bad_argument)) throw usage_error{what};
    throw write_error{what};
  }
}

int cmd_create(const args& a) {
  const std::string path = one_file(a, "create");
  if (!a.has("variant")) throw usage_error{"create needs --variant (raw, i64, i32, f64 or str)"};
  if (!a.has("capacity")) throw usage_error{"create needs --capacity N"};
  const std::string v = a.options.at("variant");
  const std::uint64_t cap = to_u64(a.options.at("capacity"), "--capacity");
  if (a.has("elem-size") && v != "raw") throw usage_error{"--elem-size applies to raw pools only"};
  if (a.has("max-len") && v != "str") throw usage_error{"--max-len applies to str pools only"};
  if (v == "raw" && !a.has("elem-size")) throw usage_error{"raw pools need --elem-size B"};
  if (v == "str" && !a.has("max-len")) throw usage_error{"str pools need --max-len L"};
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) throw write_error{path + ": already exists"};
  create_pool(path, v, cap, a);
  const auto f = tool::pool_file::open_readonly(path);
  std::printf("created %s: %s pool, capacity %llu, elem_size %llu, %llu bytes\n", path.c_str(),
              sp::detail::variant_name(f.layout().variant), static_cast<unsigned long long>(f.layout().capacity),
              static_cast<unsigned long long>(f.layout().elem_size),
              static_cast<unsigned long long>(f.layout().total_size));
  return exit_ok;
}

// ---- main ------------------------------------------------------------------

struct command {
  const char* name;
  int (*run)(const args&);
  std::vector<option_spec> options;
};

const command commands[] = {
    {"info", cmd_info, {{"json", false}}},
    {"stats", cmd_stats, {{"json", false}, {"watch", true}, {"count", true}}},
    {"slots", cmd_slots, {{"json", false}}},
    {"check", cmd_check, {{"json", false}, {"consistency-only", false}}},
    {"list", cmd_list, {{"json", false}}},
    {"recover", cmd_recover, {{"owner", true}}},
    {"create", cmd_create, {{"variant", true}, {"capacity", true}, {"elem-size", true}, {"max-len", true}}},
};

// Strips the core's "shmpool: " prefix; the tool adds its own.
std::string plain(const char* what) {
  std::string_view w(what);
  if (w.rfind("shmpool: ", 0) == 0) w.remove_prefix(9);
  return std::string(w);
}

int run_command(const command& cmd, int argc, char** argv) {
  const std::string prefix = std::string("shmpool ") + cmd.name + ": ";
  const auto say = [&](const std::string& m) { std::fprintf(stderr, "%s%s\n", prefix.c_str(), m.c_str()); };
  try {
    const args a = parse(argc, argv, cmd.options);
    if (a.help) {
      std::fputs(tool::command_help(cmd.name).c_str(), stdout);
      return exit_ok;
    }
    return cmd.run(a);
  } catch (const usage_error& e) {
    say(e.message);
    return exit_usage;
  } catch (const write_error& e) {
    say(e.message);
    return exit_write_failed;
  } catch (const tool::inspect_error& e) {
    say(e.message);
    if (e.kind == tool::inspect_error::changed) return exit_changed;
    return e.kind == tool::inspect_error::damaged ? exit_inconsistent : exit_cannot_read;
  } catch (const sp::error& e) {
    say(plain(e.what()));
    const int c = e.code().category() == sp::error_category() ? e.code().value() : 0;
    const bool foreign = c == static_cast<int>(sp::errc::bad_magic) || c == static_cast<int>(sp::errc::unsupported_format);
    return foreign ? exit_cannot_read : exit_write_failed;
  } catch (const std::exception& e) {
    say(plain(e.what()));
    return exit_write_failed;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs("shmpool: no command given (shmpool --help lists them)\n", stderr);
    return exit_usage;
  }
  const std::string_view sub = argv[1];
  if (sub == "-h" || sub == "--help" || sub == "help") {
    std::fputs(tool::main_help().c_str(), stdout);
    return exit_ok;
  }
  if (sub == "--version") {
    std::printf("shmpool %s\n", SHMPOOL_VERSION);
    return exit_ok;
  }
  if (sub == "--man") {
    std::fputs(tool::man_page(SHMPOOL_VERSION).c_str(), stdout);
    return exit_ok;
  }
  for (const auto& c : commands)
    if (sub == c.name) return run_command(c, argc - 1, argv + 1);
  std::fprintf(stderr, "shmpool: unknown command '%s' (try shmpool --help)\n", argv[1]);
  return exit_usage;
}
