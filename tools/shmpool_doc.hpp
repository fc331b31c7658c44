// The `shmpool` tool's documentation, written once: `shmpool --help`,
// `shmpool COMMAND --help` and the man page shmpool(1) are all rendered from
// the tables in shmpool_doc.cpp.  The build writes shmpool.1 by running
// `shmpool --man` (tools/CMakeLists.txt), so the two cannot drift apart.
#pragma once

#include <string>
#include <string_view>

namespace shmpool::tool {

// Exit statuses, one per cause, the same for every subcommand.
inline constexpr int exit_ok = 0;
inline constexpr int exit_inconsistent = 1;    // the pool is damaged or breaks an invariant
inline constexpr int exit_cannot_read = 2;     // FILE (or DIR) cannot be opened or read as a pool
inline constexpr int exit_dead_owners = 3;     // check: slots held by processes certainly dead
inline constexpr int exit_unknown_owners = 4;  // check: slots whose owner's liveness is unknown
inline constexpr int exit_write_failed = 5;    // create/recover could not write
inline constexpr int exit_changed = 6;         // FILE changed (truncated, rewritten) while being read
inline constexpr int exit_usage = 64;          // EX_USAGE: bad command line or parameters

// The help of one subcommand ("usage: ..." first); empty for an unknown name.
std::string command_help(std::string_view name);
// The overview printed by `shmpool --help`.
std::string main_help();
// The man page shmpool(1), troff source (man macros).
std::string man_page(std::string_view version);

}  // namespace shmpool::tool
