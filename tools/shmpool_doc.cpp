// The text of `shmpool --help` and of shmpool(1) (shmpool_doc.hpp).  Each
// paragraph is written once below; the renderers only lay it out.
#include "shmpool_doc.hpp"

#include <string>
#include <vector>

namespace shmpool::tool {
namespace {

struct item {  // an option, or an exit status
  const char* term;
  const char* text;
};

struct command_doc {
  const char* name;
  const char* synopsis;  // after "shmpool "
  const char* summary;   // one line, for the overview
  const char* text;      // paragraphs separated by "\n\n"
  std::vector<item> options;
};

const item json_option{"--json", "print one JSON object instead of text (see JSON OUTPUT)"};

const std::vector<command_doc>& commands() {
  static const std::vector<command_doc> docs = {
      {"info", "info FILE [--json]", "variant, capacity, elem_size, format, mapping size",
       "Prints the pool's variant, capacity, elem_size, max_len (str pools), format version and mapping size.  "
       "Read-only.",
       {json_option}},
      {"stats", "stats FILE [--json] [--watch SECONDS [--count N]]", "the pool's counters, optionally refreshed",
       "Prints the pool's counters (approximate while operations are in flight).  Read-only.",
       {json_option,
        {"--watch SECONDS", "refresh every SECONDS (fractions allowed) until interrupted; with --json, one JSON "
                            "object per line (JSON Lines), each with its time.  If FILE changes under it (truncated, "
                            "or its header rewritten), it stops with exit status 6; the rows before stand"},
        {"--count N", "with --watch: stop after N refreshes (N >= 1)"}}},
      {"slots", "slots FILE [--json]", "taken slots: owner pid, alive/dead/unknown, command",
       "Lists every taken slot: index, state, owner pid, the liveness verdict on the owner and the owner's command "
       "name (/proc/PID/comm).  The verdict is alive; dead (certainly gone: recover frees the slot); unknown (/proc "
       "could not tell, e.g. hidepid or the fd limit: counted as alive); or other-ns (the owner ran in another pid "
       "namespace: counted as alive).\n\n"
       "A live owner may hold slots from before an exec (the identity survives exec): shmpool recover FILE --owner "
       "PID releases them.  Read-only.",
       {json_option}},
      {"check", "check FILE [--json] [--consistency-only]", "verify every invariant and every owner",
       "Verifies every invariant the format promises: the header (magic, format, checksum, ranges, offsets, size, "
       "reserved bytes), the group marks against the slot words, per-slot and pool counters.  Then judges the owner of "
       "every taken slot: a slot held by a dead process is a leak until recover frees it, and a slot whose owner "
       "cannot be judged (hidepid, another pid namespace) cannot be vouched for.  Each is reported, and the exit "
       "status says the worst finding: 1 inconsistent, else 3 dead owners, else 4 unknown owners, else 0.\n\n"
       "Owners are judged by default because a check that passes while every slot has leaked is the failure "
       "operators run it to catch.  Never writes.  Exact only while no operation is in flight.",
       {json_option,
        {"--consistency-only", "verify the invariants alone; leave owners unjudged (exit 0, 1 or 2)"}}},
      {"list", "list [DIR] [--json]", "every pool file in DIR (default /dev/shm)",
       "Lists every shmpool pool file in DIR (default /dev/shm): variant, capacity, slots used, and slots held by "
       "dead owners and by owners of unknown liveness, as ipcs and lsipc do for System V IPC.  Files that are not "
       "pools (other magic, too small, not regular files, symbolic links) are skipped and counted; files that "
       "cannot be read, or that change while being read, are named with the reason; a pool whose header is damaged "
       "is listed as damaged.  The exit "
       "status is 0 whenever DIR could be read (use check for a verdict on a pool).  Read-only.",
       {json_option}},
      {"recover", "recover FILE [--owner PID]", "free slots of dead processes (or every slot of PID)",
       "Runs stale recovery: frees every slot whose owner is certainly dead and clears group marks set over free "
       "slots.  Prints each slot it freed with the dead owner's pid.  Writes to the pool (safe while others use "
       "it).",
       {{"--owner PID", "instead, release every slot held by PID, alive or not: for slots a process allocated "
                        "before it called exec (its new image does not know them).  Your decision: if PID still "
                        "uses a slot, another process may be handed it."}}},
      {"create", "create FILE --variant V --capacity N [--elem-size B | --max-len L]", "create a new pool file",
       "Creates a new pool file (fails if FILE exists).  Parameters out of range are usage errors (exit 64).",
       {{"--variant V", "raw, i64, i32, f64 or str"},
        {"--capacity N", "number of slots (1 .. 2^32)"},
        {"--elem-size B", "raw pools: bytes per slot (required)"},
        {"--max-len L", "str pools: longest string in bytes (required)"}}},
  };
  return docs;
}

const char* const overview =
    "Inspects, checks and repairs shmpool pool files (shared-memory object pools).  info, stats, slots, check and "
    "list open pools read-only (O_RDONLY, O_NONBLOCK: a FIFO or device never blocks them) and never write; "
    "recover and create write.  Errors are one line on stderr.  Options may follow or precede FILE; -- ends "
    "the options.\n\n"
    "Any user who may write a pool file may truncate, extend or rewrite it while the tool reads it.  So the "
    "tool never answers from the shared mapping.  It copies the pool's metadata (about 17 bytes per slot) "
    "into private memory, catching the fault that a page cut off by truncation raises, and uses the copy "
    "only if the file is still whole after it: at least the pool's size, its header unchanged since it was "
    "validated, and its change time unmoved during the copy (else it copies again, three times at most).  "
    "A file that changed under the tool ends the command with exit status 6 and a message naming the file, "
    "never with a signal or with numbers read from a truncated file.  (A rewrite of slot words that the "
    "change time misses, being as coarse as the kernel's clock tick, reads like the writes of the pool's "
    "own users: what the copy shows, the file held.)\n\n"
    "Names from outside the tool (file names in list, process names in slots) print control characters "
    "as '?' in text output; --json prints every name exactly (see JSON OUTPUT).";

const std::vector<item> exit_statuses = {
    {"0", "success (check: consistent, every owner alive)"},
    {"1", "the pool is inconsistent: a damaged header or a broken invariant (each problem is printed)"},
    {"2", "FILE or DIR cannot be opened or read as a pool: missing, no permission, not a regular file, not a "
          "shmpool pool"},
    {"3", "check: slots are held by processes that are certainly dead (shmpool recover frees them)"},
    {"4", "check: slots are held by owners whose liveness is unknown (hidepid, another pid namespace)"},
    {"5", "create or recover could not write (FILE exists, no space, read-only file system, ...)"},
    {"6", "FILE changed while it was being read: truncated, or rewritten in place, under the tool (the message "
          "names the file and the change); nothing is concluded from it.  Running again reads the file as it "
          "is then.  stats --watch stops with it; the rows it printed before stand"},
    {"64", "usage error: unknown command or option, missing or invalid argument or parameter (EX_USAGE)"},
};

const char* const json_text =
    "Every --json object has a member \"schema\" naming its shape and version: \"shmpool-info/1\", "
    "\"shmpool-stats/1\", \"shmpool-slots/1\", \"shmpool-check/1\" or \"shmpool-list/1\".  A version only "
    "grows members; a change that removes or redefines one bumps it.  All carry \"file\" (list: \"dir\").  "
    "info: variant, capacity, elem_size, max_len (null but for str pools), format_version, format_word, "
    "mapping_size, file_size.  stats: time (RFC 3339, UTC) and the counters capacity, elem_size, used, "
    "available, waiters, mmap_size, allocs, frees, waits, timeouts, recoveries; with --watch, one object per "
    "line (JSON Lines).  slots: capacity, taken, dead, unknown, and slots, an array of {slot, state, pid, "
    "identity, owner, command, allocs} (owner: alive, dead, unknown or other-ns; command: null unless alive).  "
    "check: verdict (healthy, inconsistent, dead-owners or unknown-owners), exit, problems and notes (arrays "
    "of strings), dead_owner_slots and unknown_owner_slots (arrays of {slot, state, pid, owner}), and when the "
    "header is valid variant, capacity, used.  list: pools, an array of {name, variant, capacity, used, "
    "dead_owner_slots, unknown_owner_slots, status} (status ok or damaged; a damaged pool has error instead of "
    "the numbers), skipped (a count) and unreadable, an array of {name, error}.  On exit status 2, 6 or 64 "
    "nothing is printed on stdout (but the rows of stats --watch before the change).\n\n"
    "Names: file, dir, list's name and slots' command come from outside the tool and may hold any bytes "
    "(a process may rename itself; any user may name a file in /dev/shm).  The output is RFC 8259 JSON in "
    "UTF-8 whatever they hold: control characters are escaped, and each ill-formed part of a name that is "
    "not UTF-8 is replaced by U+FFFD (as Python's bytes.decode('utf-8', 'replace') does).  Such a name "
    "also gets a member of the same name with the suffix _hex (file_hex, dir_hex, name_hex, command_hex) "
    "holding every byte of it in lower-case hex, so that two different names never print alike; the member "
    "is absent when the name is UTF-8 (then the string is exact).";

// ---- plain text ------------------------------------------------------------

// Wraps TEXT at WIDTH columns, each line prefixed with INDENT.
std::string wrap(std::string_view text, std::size_t indent, std::size_t width = 79) {
  std::string out, line;
  const std::string pad(indent, ' ');
  auto flush = [&] {
    out += pad + line + "\n";
    line.clear();
  };
  std::size_t i = 0;
  while (i < text.size()) {
    if (text.compare(i, 2, "\n\n") == 0) {
      if (!line.empty()) flush();
      out += "\n";
      i += 2;
      continue;
    }
    while (i < text.size() && text[i] == ' ') ++i;
    const std::size_t end = text.find_first_of(" \n", i);
    const std::string_view word = text.substr(i, end == std::string_view::npos ? text.npos : end - i);
    if (word.empty()) break;
    if (!line.empty() && pad.size() + line.size() + 1 + word.size() > width) flush();
    if (!line.empty()) line += ' ';
    line += word;
    i += word.size();
  }
  if (!line.empty()) flush();
  return out;
}

std::string items_text(const std::vector<item>& items, std::size_t column) {
  std::string out;
  for (const auto& it : items) {
    std::string head = "  " + std::string(it.term);
    std::string body = wrap(it.text, column);
    if (head.size() + 2 <= column) {
      body.replace(0, head.size(), head);
    } else {
      body = head + "\n" + body;
    }
    out += body;
  }
  return out;
}

const command_doc* find(std::string_view name) {
  for (const auto& c : commands())
    if (name == c.name) return &c;
  return nullptr;
}

// ---- troff -----------------------------------------------------------------

// Escapes text for the man macros: backslashes, hyphens of options, and a
// leading dot or quote that would read as a request.
std::string roff(std::string_view text) {
  std::string out;
  bool line_start = true;
  for (const char c : text) {
    if (line_start && (c == '.' || c == '\'')) out += "\\&";
    if (c == '\\') out += "\\e";
    else if (c == '-') out += "\\-";
    else out += c;
    line_start = c == '\n';
  }
  return out;
}

// Paragraphs separated by "\n\n" become .PP paragraphs.
std::string roff_paragraphs(std::string_view text) {
  std::string out;
  std::size_t i = 0;
  while (true) {
    const std::size_t end = text.find("\n\n", i);
    out += ".PP\n" + roff(text.substr(i, end == text.npos ? text.npos : end - i)) + "\n";
    if (end == text.npos) break;
    i = end + 2;
  }
  return out;
}

std::string roff_items(const std::vector<item>& items) {
  std::string out;
  for (const auto& it : items) out += ".TP\n.B " + roff(it.term) + "\n" + roff(it.text) + "\n";
  return out;
}

}  // namespace

std::string command_help(std::string_view name) {
  const command_doc* c = find(name);
  if (c == nullptr) return {};
  std::string out = "usage: shmpool " + std::string(c->synopsis) + "\n" + wrap(c->text, 0);
  if (!c->options.empty()) out += "\nOptions:\n" + items_text(c->options, 22);
  out += "Exit status: see shmpool --help.\n";
  return out;
}

std::string main_help() {
  std::string out = "usage: shmpool COMMAND [ARGS]   (shmpool COMMAND --help for each)\n" + wrap(overview, 0) +
                    "\nCommands:\n";
  for (const auto& c : commands()) {
    out += "  shmpool " + std::string(c.synopsis) + "\n";
    out += wrap(c.summary, 6);
  }
  out += "  shmpool --version | --help | --man\n" + wrap("print the version, this help, or the man page (troff)", 6);
  out += "\nExit status (every command):\n" + items_text(exit_statuses, 6);
  out += "\nJSON output:\n" + wrap(json_text, 2);
  return out;
}

std::string man_page(std::string_view version) {
  std::string out;
  out += ".\\\" Generated by `shmpool --man` from tools/shmpool_doc.cpp; edit that file.\n";
  out += ".TH SHMPOOL 1 \"\" \"shmpool " + roff(version) + "\" \"User Commands\"\n";
  out += ".SH NAME\nshmpool \\- inspect, check and repair shmpool shared\\-memory pools\n";
  out += ".SH SYNOPSIS\n";
  for (const auto& c : commands()) out += ".B shmpool\n" + roff(c.synopsis) + "\n.br\n";
  out += ".B shmpool\n\\-\\-version | \\-\\-help | \\-\\-man\n";
  out += ".SH DESCRIPTION\n" + roff_paragraphs(overview);
  out += ".SH COMMANDS\n";
  for (const auto& c : commands()) {
    out += ".SS \"" + roff(c.synopsis) + "\"\n" + roff_paragraphs(c.text);
    if (!c.options.empty()) out += roff_items(c.options);
  }
  out += ".SH EXIT STATUS\n" + roff_items(exit_statuses);
  out += ".SH JSON OUTPUT\n" + roff_paragraphs(json_text);
  out += ".SH FILES\n.TP\n.B /dev/shm\nwhere list looks by default (POSIX shared memory)\n";
  out += ".SH SEE ALSO\n.BR ipcs (1),\n.BR lsipc (1),\n.BR shm_overview (7)\n";
  return out;
}

}  // namespace shmpool::tool
