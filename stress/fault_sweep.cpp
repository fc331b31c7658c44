// fault_sweep: system calls fail, one at a time (SQLite's I/O-error loop).
//
// For each scenario (fault_scenarios.cpp) a child first runs it with the
// fault plan armed but empty, counting the system calls the core makes and
// their kinds.  Then, for every kind K, every N up to the number of K calls
// and every errno that kind of call can really return, a fresh child runs
// the scenario with the Nth call of kind K failing
// (in --mode full also with every call from N on failing).  The healthy
// parent judges each run:
//   - the scenario succeeded, or failed with the documented exception
//     (shmpool::error, registry_error, std::bad_alloc for ENOMEM) whose
//     message names the injected cause; EINTR is retried, never reported;
//   - no crash, no hang (a time limit per run), no wrong result;
//   - the state afterwards is whole (fault_scenarios.cpp, check_state): a
//     live bystander's slots and values untouched, no slot lost after a
//     survivor's recovery, check() clean, no file left behind.
// Every (scenario, call, errno) and its verdict goes to --json; --markdown
// writes the tables.  Built against a copy of the core compiled with
// SHMPOOL_FAULTS.  Replay one run with --replay SCENARIO:CALL:N:ERRNO[:sticky]
// (the Nth call of kind CALL fails, e.g. recover_stale:open:2:EMFILE).
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "fault_scenarios.hpp"
#include "shmpool/error.hpp"
#include "shmpool/platform/sys.hpp"
#include "shmpool/stable_reference_buffer.hpp"
#include "stress_util.hpp"

#if !defined(SHMPOOL_FAULTS)
#error "fault_sweep needs the core built with SHMPOOL_FAULTS"
#endif

namespace stress::faults {
namespace {

namespace sys = shmpool::platform::sys;
using sys::call;

// The errnos each kind of call can really return, most typical first (the
// CI sample injects only the first).  kill(2)'s ESRCH is left out on
// purpose: it is the evidence of death itself, not a failure of the
// environment.  close and munmap are counted, never failed.
const std::vector<int>& errnos_for(call c) {
  static const std::map<call, std::vector<int>> table = {
      {call::open, {EMFILE, ENFILE, EACCES, ENOSPC, EROFS, EPERM, ENOMEM, EINTR}},
      {call::fstat, {ENOMEM, EIO, EOVERFLOW}},
      {call::read, {EINTR, EIO, EAGAIN}},
      {call::pread, {EINTR, EIO}},
      {call::write, {ENOSPC, EINTR, EIO, EAGAIN}},
      {call::pwrite, {ENOSPC, EINTR, EIO}},
      {call::ftruncate, {EFBIG, EIO, EPERM, EROFS, EINTR}},
      {call::fallocate, {ENOSPC, EFBIG, EIO, EOPNOTSUPP, ENOMEM}},
      {call::mmap, {ENOMEM, EAGAIN, EACCES, EPERM, ENFILE}},
      {call::madvise, {EINVAL, ENOMEM, EAGAIN}},
      {call::msync, {EIO, ENOMEM}},
      {call::flock, {EINTR, ENOLCK, EAGAIN}},
      {call::fcntl, {EMFILE, EINVAL, EPERM, EBUSY}},
      {call::memfd_create, {EMFILE, ENFILE, ENOMEM}},
      {call::link, {EEXIST, ENOSPC, EROFS, EPERM, EMLINK, EACCES, EIO}},
      {call::unlink, {EACCES, EPERM, EROFS, EBUSY, EIO}},
      {call::rename, {EACCES, EPERM, EROFS, ENOSPC, EIO}},
      {call::kill, {EPERM}},
      {call::readlink, {EACCES, ENOENT, ENOMEM}},
      {call::opendir, {EMFILE, ENFILE, EACCES, ENOENT}},
      {call::futex_wait, {EINTR, EAGAIN}},
      {call::futex_wake, {EFAULT, EINVAL}},
      {call::eventfd, {EMFILE, ENFILE, ENOMEM}},
      {call::getrandom, {EINTR, EAGAIN, ENOSYS}},
      {call::clock_gettime, {EINVAL, EPERM}},
      {call::pipe, {EMFILE, ENFILE}},
      {call::process_vm_readv, {EPERM, ENOMEM, EFAULT}},
      {call::fstatat, {ENOENT, EACCES, ENOMEM}},
      {call::statvfs, {EIO, ENOSYS, EOVERFLOW}},
      {call::sysinfo, {EFAULT, EINVAL}},
      {call::getrlimit, {EFAULT, EINVAL}},
      {call::fchmod, {EPERM, EROFS, EIO}},
  };
  static const std::vector<int> none;
  const auto it = table.find(c);
  return it == table.end() ? none : it->second;
}

// The Nth call of one kind fails (kinds are counted apart, so the plan
// names the same call in every run even where the order of calls of
// different kinds varies, e.g. with the slots a process happens to take).
struct plan {
  std::uint64_t nth = 0;  // 0: count only
  int kind = 0;           // sys::call value
  int error = 0;
  bool sticky = false;
};

// ---- the child -----------------------------------------------------------------

void write_report(int fd, ending how, const std::string& message) {
  std::ostringstream out;
  foreign_counts c = g_foreign;  // set when the faults fell in a plugin's copy of the core
  if (!c.set) {
    c.calls = sys::calls_counted();
    c.injected = sys::faults_injected() != 0;
    c.injected_kind = sys::first_injected_kind();
    std::vector<call> kinds(sys::call_log_capacity);
    kinds.resize(sys::logged_calls(kinds.data(), kinds.size()));
    for (const call k : kinds) c.kinds.push_back(static_cast<int>(k));
  }
  out << "how " << static_cast<int>(how) << "\npid " << ::getpid() << "\ninjected_kind " << c.injected_kind
      << "\ninjected " << (c.injected ? 1 : 0) << "\ncalls " << c.calls << "\nkinds";
  for (const int k : c.kinds) out << ' ' << k;
  out << "\nmessage " << message << "\n";
  const std::string text = out.str();
  const char* p = text.data();
  std::size_t left = text.size();
  while (left != 0) {
    const ssize_t w = ::write(fd, p, left);
    if (w <= 0) return;
    p += w;
    left -= static_cast<std::size_t>(w);
  }
}

// Runs the scenario in this process with the plan armed at its arm() and
// reports to fd; then exits normally (static destructors run: the
// registry's detach is part of what is tested).
[[noreturn]] void run_and_report(const scenario& s, world& w, const plan& p, int fd) {
  g_exec = {p.nth, p.kind, p.error, p.sticky, fd};
  const auto arm = [&] { sys::arm_fault({p.nth, p.error, p.nth != 0, static_cast<call>(p.kind), p.sticky}); };
  ending how = ending::ok;
  std::string message;
  try {
    s.act(w, arm);
  } catch (const shmpool::registry_error& e) {
    how = ending::registry_error, message = e.what();
  } catch (const shmpool::error& e) {
    how = ending::shmpool_error, message = e.what();
  } catch (const std::bad_alloc& e) {
    how = ending::bad_alloc, message = e.what();
  } catch (const check_failure& f) {
    how = ending::check_failed, message = f.what;
  } catch (const foreign_ending& f) {
    how = f.how, message = f.message;
  } catch (const std::exception& e) {
    how = ending::other_exception, message = std::string(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    how = ending::other_exception, message = "an exception of unknown type";
  }
  write_report(fd, how, message);
  ::close(fd);
  std::exit(0);
}

outcome parse_report(const std::string& text) {
  outcome o;
  std::istringstream in(text);
  std::string key;
  while (in >> key) {
    if (key == "how") {
      int h = 0;
      in >> h;
      o.how = static_cast<ending>(h);
    } else if (key == "injected") {
      int v = 0;
      in >> v;
      o.injected = v != 0;
    } else if (key == "pid") {
      in >> o.reporter;
    } else if (key == "injected_kind") {
      in >> o.injected_kind;
    } else if (key == "calls") {
      in >> o.calls;
    } else if (key == "kinds") {
      std::string line;
      std::getline(in, line);
      std::istringstream ks(line);
      int k;
      while (ks >> k) o.kinds.push_back(k);
    } else if (key == "message") {
      in.get();
      std::getline(in, o.message);
    }
  }
  return o;
}

// ---- the parent ----------------------------------------------------------------

struct run_result {
  std::string scenario;
  plan p;
  outcome o;
  std::string verdict;  // "" = pass
};

outcome run_child(const scenario& s, world& w, const plan& p, int timeout_ms, pid_t& child) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("fault sweep: pipe failed");
  std::fflush(nullptr);  // a child that exit()s must not flush our buffered output again
  child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    run_and_report(s, w, p, fds[1]);
  }
  ::close(fds[1]);
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool hung = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      hung = true;
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (hung) ::kill(child, SIGKILL);
  const int status = reap(child);
  outcome o = parse_report(text);
  if (hung) {
    o.how = ending::hung;
    o.message = "no answer within " + std::to_string(timeout_ms) + " ms";
  } else if (WIFSIGNALED(status)) {
    o.how = ending::crashed;
    o.message = std::string("killed by signal ") + strsignal(WTERMSIG(status)) +
                (text.empty() ? "" : " after reporting: " + o.message);
  } else if (text.empty()) {
    o.how = ending::crashed;
    o.message = "exited with status " + std::to_string(WEXITSTATUS(status)) + " without a report";
  }
  return o;
}

bool names_cause(const std::string& message, int err, ending how, int kind) {
  // std::bad_alloc is the documented answer when memory cannot be had:
  // ENOMEM anywhere, or any failure to map anonymous memory.
  if (how == ending::bad_alloc) return err == ENOMEM || kind == static_cast<int>(call::mmap);
  return message.find(std::strerror(err)) != std::string::npos ||
         message.find(sys::errno_name(err)) != std::string::npos;
}

std::string judge(const plan& p, const outcome& o) {
  switch (o.how) {
    case ending::hung: return "hung: " + o.message;
    case ending::crashed: return "crashed: " + o.message;
    case ending::check_failed: return "wrong result: " + o.message;
    case ending::other_exception: return "undocumented exception: " + o.message;
    case ending::ok: return "";
    default: break;
  }
  if (p.nth == 0) return "fails with no fault injected: " + o.message;
  if (!o.injected) return "failed although the planned fault never happened: " + o.message;
  if (p.error == EINTR) return "EINTR ended the call instead of being retried: " + o.message;
  if (!names_cause(o.message, p.error, o.how, o.injected_kind))
    return std::string("the error does not name the cause (") + std::strerror(p.error) + "): " + o.message;
  return "";
}

run_result run_one(const scenario& s, const plan& p, int timeout_ms) {
  run_result r;
  r.scenario = s.name;
  r.p = p;
  world w = prepare(s);
  pid_t child = -1;
  r.o = run_child(s, w, p, timeout_ms, child);
  r.verdict = judge(p, r.o);
  if (r.o.how != ending::hung && r.o.how != ending::crashed) {
    std::string state = check_state(s, w, r.o, child);
    if (state.empty() && r.o.reporter > 0 && r.o.reporter != child) state = check_state(s, w, r.o, r.o.reporter);
    if (!state.empty()) r.verdict += (r.verdict.empty() ? "" : "; ") + state;
  }
  tear_down(w);
  return r;
}

struct options {
  bool full = false;
  std::string only;
  std::string json, markdown;
  std::string replay;
  int timeout_ms = 10'000;
  bool verbose = false;
};

std::string describe(const run_result& r) {
  if (r.p.nth == 0) return r.scenario + " (counting run, no fault)";
  return r.scenario + " " + sys::call_name(static_cast<call>(r.p.kind)) + " #" + std::to_string(r.p.nth) + " " +
         sys::errno_name(r.p.error) + (r.p.sticky ? " sticky" : "");
}

std::string replay_spec(const run_result& r) {
  if (r.p.nth == 0) return r.scenario;
  return r.scenario + ":" + sys::call_name(static_cast<call>(r.p.kind)) + ":" + std::to_string(r.p.nth) + ":" +
         sys::errno_name(r.p.error) + (r.p.sticky ? ":sticky" : "");
}

struct scenario_figures {
  std::string name, summary;
  std::uint64_t calls = 0, runs = 0, ok = 0, errors = 0, failures = 0;
  double seconds = 0;
};

std::string to_json(const options& opt, const std::vector<scenario_figures>& figs, const std::vector<run_result>& runs) {
  std::string out = "{\"mode\":\"" + std::string(opt.full ? "full" : "ci") + "\",\"scenarios\":[";
  for (std::size_t i = 0; i < figs.size(); ++i) {
    const auto& f = figs[i];
    out += (i ? "," : "") + json_object()
                                .str("name", f.name)
                                .str("summary", f.summary)
                                .num("calls", f.calls)
                                .num("runs", f.runs)
                                .num("ok", f.ok)
                                .num("documented_errors", f.errors)
                                .num("failures", f.failures)
                                .num("seconds", f.seconds)
                                .text();
  }
  out += "],\"runs\":[";
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    out += (i ? "," : "") + json_object()
                                .str("scenario", r.scenario)
                                .num("call_number", r.p.nth)
                                .str("call", r.p.nth ? sys::call_name(static_cast<call>(r.p.kind)) : "")
                                .str("errno", r.p.nth ? sys::errno_name(r.p.error) : "")
                                .num("sticky", std::uint64_t{r.p.sticky})
                                .str("ending", ending_name(r.o.how))
                                .str("message", r.o.message)
                                .str("verdict", r.verdict.empty() ? "pass" : "FAIL: " + r.verdict)
                                .text();
  }
  return out + "]}\n";
}

std::string to_markdown(const options& opt, const std::vector<scenario_figures>& figs,
                        const std::vector<run_result>& runs) {
  std::ostringstream md;
  md << "# Fault sweep (" << (opt.full ? "full product" : "CI sample") << ")\n\n"
     << "Every system call a scenario makes fails in turn with each errno it can return"
     << (opt.full ? ", once and from that call on" : " (CI: the most typical errno, once)") << ".\n\n"
     << "| scenario | what it does | calls | runs | ok | documented errors | failures | seconds |\n"
     << "|---|---|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& f : figs)
    md << "| " << f.name << " | " << f.summary << " | " << f.calls << " | " << f.runs << " | " << f.ok << " | "
       << f.errors << " | " << f.failures << " | " << static_cast<int>(f.seconds + 0.5) << " |\n";
  std::uint64_t failed = 0;
  for (const auto& r : runs) failed += r.verdict.empty() ? 0 : 1;
  md << "\n## Failures (" << failed << ")\n\n";
  if (failed == 0) md << "None.\n";
  else md << "| run | verdict | replay |\n|---|---|---|\n";
  for (const auto& r : runs) {
    if (r.verdict.empty()) continue;
    std::string v = r.verdict;
    for (char& c : v)
      if (c == '|' || c == '\n') c = ' ';
    md << "| " << describe(r) << " | " << v << " | `fault_sweep --replay " << replay_spec(r) << "` |\n";
  }
  return md.str();
}

int replay(const options& opt) {
  std::vector<std::string> parts;
  std::stringstream ss(opt.replay);
  for (std::string part; std::getline(ss, part, ':');) parts.push_back(part);
  const scenario* s = parts.empty() ? nullptr : find_scenario(parts[0]);
  int kind = -1;
  for (int k = 0; parts.size() > 1 && k < static_cast<int>(call::count_); ++k)
    if (parts[1] == sys::call_name(static_cast<call>(k))) kind = k;
  if (s == nullptr || (parts.size() > 1 && kind < 0) || parts.size() == 3) {
    std::fprintf(stderr, "fault_sweep: --replay SCENARIO[:CALL:N[:ERRNO[:sticky]]] with a known scenario and call\n");
    return 64;
  }
  plan p;
  if (parts.size() > 2) {
    p.kind = kind;
    p.nth = std::strtoull(parts[2].c_str(), nullptr, 10);
    p.error = parts.size() > 3 ? sys::errno_from_name(parts[3].c_str()) : EIO;
    p.sticky = parts.size() > 4 && parts[4] == "sticky";
  }
  const run_result r = run_one(*s, p, opt.timeout_ms);
  std::printf("%s: %s (%s: %s)\n", opt.replay.c_str(), r.verdict.empty() ? "pass" : ("FAIL: " + r.verdict).c_str(),
              ending_name(r.o.how), r.o.message.c_str());
  std::printf("calls counted: %llu; fault injected: %s; calls:", static_cast<unsigned long long>(r.o.calls),
              r.o.injected ? "yes" : "no");
  for (std::size_t k = 0; k < r.o.kinds.size(); ++k)
    std::printf(" %zu:%s", k + 1, sys::call_name(static_cast<call>(r.o.kinds[k])));
  std::printf("\n");
  return r.verdict.empty() ? 0 : 1;
}

int sweep(const options& opt) {
  std::vector<scenario_figures> figs;
  std::vector<run_result> runs;
  std::uint64_t failures = 0;
  for (const scenario& s : all_scenarios()) {
    if (!opt.only.empty() && opt.only != s.name) continue;
    const auto start = std::chrono::steady_clock::now();
    scenario_figures f{s.name, s.summary};
    run_result counting = run_one(s, plan{}, opt.timeout_ms);
    f.calls = counting.o.calls;
    std::map<int, std::uint64_t> per_kind;
    for (const int k : counting.o.kinds) ++per_kind[k];
    runs.push_back(counting);
    std::vector<plan> plans;
    for (const auto& [kind, count] : per_kind) {
      const auto& errs = errnos_for(static_cast<call>(kind));
      for (std::uint64_t n = 1; n <= count; ++n)
        for (std::size_t e = 0; e < errs.size() && (opt.full || e == 0); ++e) {
          plans.push_back({n, kind, errs[e], false});
          // Sticky: every later call of the kind fails too.  Not for EINTR:
          // an interruption that never ends is not an environment, and
          // retrying EINTR is what every caller must do.
          if (opt.full && errs[e] != EINTR) plans.push_back({n, kind, errs[e], true});
        }
    }
    for (const plan& p : plans) {
      run_result r = run_one(s, p, opt.timeout_ms);
      if (opt.verbose || !r.verdict.empty())
        std::printf("  %s: %s\n", describe(r).c_str(), r.verdict.empty() ? "pass" : ("FAIL: " + r.verdict).c_str());
      runs.push_back(std::move(r));
    }
    for (std::size_t i = runs.size() - plans.size() - 1; i < runs.size(); ++i) {
      ++f.runs;
      if (!runs[i].verdict.empty()) ++f.failures;
      else if (runs[i].o.how == ending::ok) ++f.ok;
      else ++f.errors;
    }
    f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    failures += f.failures;
    std::printf("fault sweep: %-16s %3llu calls, %4llu runs: %llu ok, %llu documented errors, %llu failures (%.1f s)\n",
                f.name.c_str(), static_cast<unsigned long long>(f.calls), static_cast<unsigned long long>(f.runs),
                static_cast<unsigned long long>(f.ok), static_cast<unsigned long long>(f.errors),
                static_cast<unsigned long long>(f.failures), f.seconds);
    std::fflush(stdout);
    figs.push_back(f);
  }
  if (!opt.json.empty() && !write_text_file(opt.json, to_json(opt, figs, runs)))
    std::fprintf(stderr, "fault_sweep: cannot write %s\n", opt.json.c_str());
  if (!opt.markdown.empty() && !write_text_file(opt.markdown, to_markdown(opt, figs, runs)))
    std::fprintf(stderr, "fault_sweep: cannot write %s\n", opt.markdown.c_str());
  std::printf("fault sweep: %zu runs, %llu failures\n", runs.size(), static_cast<unsigned long long>(failures));
  return failures == 0 ? 0 : 1;
}

// The image a scenario re-executed into: run the named scenario with the
// plan from the command line and report to the inherited fd.
[[noreturn]] void exec_stage(int argc, char** argv) {
  std::string name;
  plan p;
  int fd = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--exec-stage") name = argv[i + 1];
    else if (a == "--nth") p.nth = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--kind") p.kind = std::atoi(argv[i + 1]);
    else if (a == "--errno") p.error = std::atoi(argv[i + 1]);
    else if (a == "--sticky") p.sticky = std::string(argv[i + 1]) == "1";
    else if (a == "--report-fd") fd = std::atoi(argv[i + 1]);
  }
  const scenario* s = find_scenario(name);
  if (s == nullptr || fd < 0) ::_exit(70);
  world w;
  run_and_report(*s, w, p, fd);
}

}  // namespace
}  // namespace stress::faults

int main(int argc, char** argv) {
  using namespace stress::faults;
  if (argc > 1 && std::string(argv[1]) == "--exec-stage") exec_stage(argc, argv);
  options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "fault_sweep: %s needs a value\n", a.c_str());
        std::exit(64);
      }
      return argv[++i];
    };
    if (a == "--mode") opt.full = value() == "full";
    else if (a == "--only") opt.only = value();
    else if (a == "--json") opt.json = value();
    else if (a == "--markdown") opt.markdown = value();
    else if (a == "--replay") opt.replay = value();
    else if (a == "--timeout-ms") opt.timeout_ms = std::atoi(value().c_str());
    else if (a == "--verbose") opt.verbose = true;
    else if (a == "--list") {
      for (const scenario& s : all_scenarios()) std::printf("%-16s %s\n", s.name, s.summary);
      return 0;
    } else {
      std::fprintf(stderr,
                   "usage: fault_sweep [--mode ci|full] [--only SCENARIO] [--json FILE] [--markdown FILE]\n"
                   "                   [--timeout-ms N] [--verbose] [--list] [--replay SCENARIO[:CALL:N:ERRNO[:sticky]]]\n");
      return 64;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  return opt.replay.empty() ? sweep(opt) : replay(opt);
}
