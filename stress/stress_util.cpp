// Helpers of stress_util.hpp.
#include "stress_util.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace stress {

char process_state(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[512];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* close_paren = std::strrchr(buf, ')');
  return (close_paren != nullptr && close_paren[1] == ' ') ? close_paren[2] : 0;
}

void wait_until_zombie(pid_t pid) {
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
  }
}

bool died_at_crash_point(pid_t pid, int& exit_code) {
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) != 0) {
  }
  exit_code = info.si_code == CLD_EXITED ? info.si_status : -1;
  return info.si_code == CLD_KILLED && info.si_status == SIGKILL;
}

int reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

raw_pool_view::raw_pool_view(const shmpool::detail::pool_base& p, std::uint64_t max_len) {
  using namespace shmpool::detail;
  const auto v = static_cast<variant_code>(p.variant());
  const auto layout = compute_layout(v, p.capacity(), p.elem_size(), v == variant_code::str ? max_len : 0);
  if (!layout) throw std::runtime_error("stress: cannot compute the layout of the pool under test");
  auto* base = static_cast<std::byte*>(p.data_ptr()) - layout->data_offset;
  meta_ = reinterpret_cast<std::atomic<std::uint64_t>*>(base + layout->meta_offset);
  groups_ = reinterpret_cast<std::atomic<std::uint64_t>*>(base + layout->groups_offset);
  control_waiters_ = reinterpret_cast<const std::atomic<std::uint64_t>*>(base + control_offset);
  capacity_ = layout->capacity;
}

const char* state_name(shmpool::detail::slot_state s) {
  using shmpool::detail::slot_state;
  switch (s) {
    case slot_state::free: return "FREE";
    case slot_state::claiming: return "CLAIMING";
    case slot_state::allocated: return "ALLOCATED";
    case slot_state::releasing: return "RELEASING";
  }
  return "?";
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", c);
      out += esc;
    } else {
      out += c;
    }
  }
  return out;
}

void json_object::key(const std::string& k) {
  if (!body_.empty()) body_ += ", ";
  body_ += "\"" + json_escape(k) + "\": ";
}
json_object& json_object::num(const std::string& k, double v) {
  key(k);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  body_ += buf;
  return *this;
}
json_object& json_object::num(const std::string& k, std::uint64_t v) {
  key(k);
  body_ += std::to_string(v);
  return *this;
}
json_object& json_object::str(const std::string& k, const std::string& v) {
  key(k);
  body_ += "\"" + json_escape(v) + "\"";
  return *this;
}
json_object& json_object::raw(const std::string& k, const std::string& json) {
  key(k);
  body_ += json;
  return *this;
}

bool write_text_file(const std::string& path, const std::string& text) {
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  std::ofstream out(path, std::ios::trunc);
  out << text << "\n";
  return static_cast<bool>(out);
}

std::string read_until_eof(int fd, int seconds) {
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  char buf[1024];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got <= 0) break;
    text.append(buf, static_cast<std::size_t>(got));
  }
  return text;
}

}  // namespace stress
