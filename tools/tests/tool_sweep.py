#!/usr/bin/env python3
"""The `shmpool` tool against a changing file and hostile names (issue 20, item e).

Usage: tool_sweep.py CASE SHMPOOL_CLI HELPER [HOOKED_CLI]

Cases (ctest label "tool"):

  race          Runs every read-only command (info, stats, stats --watch,
                slots, check, list, with and without --json) again and again
                while a thread truncates, extends and rewrites the pool file
                at varied offsets and times.  Every run must end with status
                0 or a documented error status, never a signal; a failing
                run names the file; --json output parses; a run that
                succeeds reports the capacity of a pool the file really was.
  each_read     Deterministic: HOOKED_CLI (the test build's seam,
                pool_inspect.hpp at_read) changes the file just before its
                Nth read, for every N a command has, every read-only command
                and every kind of change.  Each run either fails with a
                documented status naming the file, or prints exactly what
                the tool prints for the file before the change or after it.
                A change that leaves the file shorter than its pool is
                always reported.
  json_names    Property: for file names and process names (comm) of random
                bytes (0x01..0xff, quotes, backslashes, control characters,
                ill-formed UTF-8), every --json output is RFC 8259 JSON in
                strict UTF-8, each name reads back exactly (from the string
                when it is UTF-8, else from its *_hex member), and no two
                different names print alike.

Each case prints its seed and a summary, exits 0 on success, 1 with the first
failed expectation otherwise, 77 when it cannot run here.  Nothing waits
without a timeout.
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

DOCUMENTED = {0, 1, 2, 3, 4, 5, 6, 64}
TIMEOUT = 30  # seconds for one run of the tool


class Failure(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failure(what)


def run(argv, env=None, cwd=None):
    """Runs the tool; returns (status, stdout bytes, stderr bytes).  A signal is status -N."""
    try:
        p = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise Failure("timed out after %d s: %r" % (TIMEOUT, argv))
    return p.returncode, p.stdout, p.stderr


def strict_json(data, what):
    """Parses DATA (bytes) as strict UTF-8 RFC 8259 JSON: no NaN or Infinity."""
    try:
        text = data.decode("utf-8")  # strict: any ill-formed byte fails
    except UnicodeDecodeError as e:
        raise Failure("%s: not UTF-8 (%s): %r" % (what, e, data[:300]))

    def no_constants(name):
        raise ValueError("non-JSON constant " + name)

    try:
        return json.loads(text, parse_constant=no_constants)
    except ValueError as e:
        raise Failure("%s: not JSON (%s): %r" % (what, e, data[:300]))


def json_lines(data, what):
    lines = data.split(b"\n")
    expect(lines and lines[-1] == b"", "%s: output does not end with a newline: %r" % (what, data[:300]))
    return [strict_json(line, what) for line in lines[:-1]]


def read_name(obj, member, what):
    """The raw bytes of OBJ[member]: from MEMBER_hex when present, else from the string."""
    value = obj.get(member)
    hexed = obj.get(member + "_hex")
    if hexed is None:
        expect(isinstance(value, str), "%s: %s is not a string: %r" % (what, member, obj))
        return value.encode("utf-8")
    expect(re.fullmatch(r"(?:[0-9a-f]{2})+", hexed) is not None, "%s: %s_hex is not hex: %r" % (what, member, hexed))
    raw = bytes.fromhex(hexed)
    expect(value == raw.decode("utf-8", "replace"),
           "%s: %s %r is not the lossy form of its bytes %r" % (what, member, value, raw))
    try:
        raw.decode("utf-8")
        raise Failure("%s: %s_hex given for a name that is UTF-8: %r" % (what, member, raw))
    except UnicodeDecodeError:
        pass
    return raw


def named_in(path_bytes, status, out, err):
    """A failing run names the file: on stderr, or (check: status 1) in its report on stdout."""
    name = os.path.basename(path_bytes)
    return name in err or (status in (1, 3, 4) and name in out)


def header_fields(data):
    """capacity, meta_offset, data_offset, total_size of a pool file's header (format.hpp)."""
    field = lambda off: int.from_bytes(data[off:off + 8], "little")
    return {"capacity": field(16), "meta_offset": field(48), "data_offset": field(56), "total_size": field(64)}


def commands(pool, dirname):
    """Every read-only command; SHMPOOL_TOOL_SWEEP_COMMANDS=check,slots,... keeps those named."""
    only = os.environ.get("SHMPOOL_TOOL_SWEEP_COMMANDS")
    return [argv for argv in [
        ["info", pool], ["info", pool, "--json"],
        ["stats", pool], ["stats", pool, "--json"],
        ["stats", pool, "--watch", "0.001", "--count", "3"],
        ["stats", pool, "--json", "--watch", "0.001", "--count", "3"],
        ["slots", pool], ["slots", pool, "--json"],
        ["check", pool], ["check", pool, "--json"], ["check", pool, "--consistency-only"],
        ["list", dirname], ["list", dirname, "--json"],
    ] if not only or argv[0] in only.split(",")]


def make_pools(cli, helper, work, capacity):
    """pools/p.shm (i64, two slots of dead owners) and other.shm (another capacity), outside the listed dir."""
    pools = os.path.join(work, "pools")
    os.mkdir(pools)
    pool = os.path.join(pools, "p.shm")
    other = os.path.join(work, "other.shm")
    for path, cap in ((pool, str(capacity)), (other, "70")):
        st, _, err = run([cli, "create", path, "--variant", "i64", "--capacity", cap])
        expect(st == 0, "create %s failed: %r" % (path, err))
    for _ in range(2):
        st, _, err = run([helper, "die", pool])
        expect(st == 0, "helper die failed: %r" % err)
    return pools, pool, other


def normalise(argv, out):
    """Output with what may differ between two runs on the same bytes removed (stats' time)."""
    return re.sub(rb'"time": "[^"]*"', b'"time": ""', out)


# ---- race ---------------------------------------------------------------------

def case_race(cli, helper, hooked, work, rng):
    # 1.6 MB of slot metadata: a scan takes long enough for the file to change during it.
    pools, pool, other = make_pools(cli, helper, work, 100000)
    pristine = open(pool, "rb").read()
    other_bytes = open(other, "rb").read()
    capacities = {header_fields(pristine)["capacity"], header_fields(other_bytes)["capacity"]}
    total = len(pristine)
    stop = threading.Event()
    mutations = [0]

    def mutate():
        mrng = random.Random(rng.random())
        fd = os.open(pool, os.O_WRONLY)
        try:
            while not stop.is_set():
                kind = mrng.randrange(7)
                if kind == 0:    # truncate at a random offset, page-aligned or not
                    size = mrng.choice([0, 100, 4096, 8192, mrng.randrange(total)])
                    os.ftruncate(fd, size)
                elif kind == 1:  # extend
                    os.ftruncate(fd, total + mrng.choice([1, 4096, total]))
                elif kind == 2:  # rewrite: another pool's bytes
                    os.ftruncate(fd, len(other_bytes))
                    os.pwrite(fd, other_bytes, 0)
                elif kind == 3:  # rewrite: a header byte
                    os.pwrite(fd, bytes([mrng.randrange(256)]), mrng.randrange(128))
                elif kind == 4:  # rewrite: zeros over a random range
                    off = mrng.randrange(total)
                    os.pwrite(fd, bytes(mrng.randrange(1, 9000)), off)
                else:            # back to the pool
                    os.ftruncate(fd, total)
                    os.pwrite(fd, pristine, 0)
                mutations[0] += 1
                time.sleep(mrng.choice([0, 0, 0.0002, 0.001, 0.003]))
        finally:
            os.close(fd)

    thread = threading.Thread(target=mutate, daemon=True)
    thread.start()
    outcomes = {}
    try:
        for rnd in range(40):
            for argv in commands(pool, pools):
                what = "shmpool " + " ".join(argv)
                st, out, err = run([cli] + argv)
                outcomes[st] = outcomes.get(st, 0) + 1
                if argv[0] == "list" and not re.search(rb'^p\.shm .* ok$|"name": "p\.shm", "variant"', out, re.M):
                    outcomes["list without p.shm ok"] = outcomes.get("list without p.shm ok", 0) + 1
                if st < 0:
                    raise Failure("%s died of signal %d (%s); stdout %r stderr %r" %
                                  (what, -st, signal.Signals(-st).name, out[-300:], err[-300:]))
                expect(st in DOCUMENTED - {5, 64}, "%s exited %d, not a documented status: %r" % (what, st, err))
                if argv[0] in ("info", "stats", "slots"):
                    expect(st in (0, 1, 2, 6), "%s exited %d: %r" % (what, st, err))
                if argv[0] == "list":
                    expect(st == 0 and err == b"", "%s exited %d: %r" % (what, st, err))
                if st not in (0, 3, 4):
                    expect(named_in(pool.encode(), st, out, err), "%s exited %d without naming the file: %r %r" %
                           (what, st, out, err))
                if st == 6:
                    expect(b"changed while being read" in err, "%s: exit 6 without saying why: %r" % (what, err))
                if "--json" in argv and (st in (0, 1, 3, 4) or out):
                    for doc in json_lines(out, what):
                        if "capacity" in doc and argv[0] != "list":
                            expect(doc["capacity"] in capacities, "%s: capacity %r of no pool: %r" %
                                   (what, doc["capacity"], doc))
                if argv[0] == "stats" and "--json" not in argv and st == 0 and "--watch" not in argv:
                    cap = int(re.search(rb"^capacity +(\d+)$", out, re.M).group(1))
                    expect(cap in capacities, "%s: capacity %d of no pool: %r" % (what, cap, out))
    finally:
        stop.set()
        thread.join(10)
    print("race: %d runs while the file changed %d times; exit statuses %s" %
          (sum(v for k, v in outcomes.items() if isinstance(k, int)), mutations[0], outcomes))
    expect(any(s != 0 for s in outcomes), "no run saw the file change: the sweep tested nothing")


# ---- each_read ----------------------------------------------------------------

def case_each_read(cli, helper, hooked, work, rng):
    expect(hooked is not None and os.access(hooked, os.X_OK), "needs the test build of the tool (HOOKED_CLI)")
    # Slot metadata over three pages: a change can fall between the pages of one copy.
    pools, pool, other = make_pools(cli, helper, work, 600)
    # A str pool with a string in a dead owner's slot: check reads its length from the data.
    str_pool = os.path.join(work, "s.shm")
    expect(run([cli, "create", str_pool, "--variant", "str", "--capacity", "300", "--max-len", "30"])[0] == 0,
           "create s.shm failed")
    expect(run([helper, "die-str", str_pool])[0] == 0, "helper die-str failed")
    fired = os.path.join(work, "fired")
    totals = {}
    runs = 0
    for target in (pool, str_pool):
        pristine = open(target, "rb").read()
        h = header_fields(pristine)
        total = h["total_size"]
        mutations = [
            ("size:0", True), ("size:100", True), ("size:4096", True), ("size:%d" % (total - 1), True),
            ("size:%d" % (2 * total), False),                    # extend
            ("size:0,size:%d" % total, False),                   # truncate, extend back: zero pages
            ("write:16:0b", False),                              # rewrite the header (capacity)
            ("write:%d:ffffffffffffffff" % h["meta_offset"], False),  # rewrite a slot word
            ("copy:" + other, False),                            # rewrite: another pool
        ]
        if target == str_pool:
            mutations.append(("write:%d:ff" % h["data_offset"], False))  # rewrite slot 0's length
        argvs = commands(target, os.path.dirname(target))
        if target == str_pool:
            argvs = [a for a in argvs if a[0] in ("check", "stats")]
        for argv in argvs:
            what = "shmpool " + " ".join(argv)
            env = dict(os.environ)
            for mutation, always_reported in mutations:
                # What the tool prints for the file before the change and after it.
                with open(target, "wb") as f:
                    f.write(pristine)
                before = run([hooked] + argv, env=env)
                expect(before[0] in (0, 3), "%s on the intact file exited %d: %r" % (what, before[0], before[2]))
                env_m = dict(env, SHMPOOL_TOOL_TEST_MUTATE_AT="1", SHMPOOL_TOOL_TEST_MUTATION=mutation,
                             SHMPOOL_TOOL_TEST_FIRED=fired)
                # The file after the change: the hook at read 1 of a throw-away `info`.
                scratch = os.path.join(work, "scratch")
                shutil.copyfile(target, scratch)
                st, _, err = run([hooked, "info", scratch], env=env_m)
                expect(st != 99, "the test hook failed: %r" % err)
                after_bytes = open(scratch, "rb").read()
                with open(target, "wb") as f:
                    f.write(after_bytes)
                after = run([hooked] + argv, env=env)
                n = 0
                while True:
                    n += 1
                    expect(n < 2000, "%s: more than 2000 reads?" % what)
                    with open(target, "wb") as f:
                        f.write(pristine)
                    if os.path.exists(fired):
                        os.unlink(fired)
                    env_m["SHMPOOL_TOOL_TEST_MUTATE_AT"] = str(n)
                    st, out, err = run([hooked] + argv, env=env_m)
                    runs += 1
                    here = "%s, %s before read %d" % (what, mutation, n)
                    expect(st != 99, "%s: the test hook failed: %r" % (here, err))
                    if not os.path.exists(fired):  # past the last read: the plain run
                        expect((st, normalise(argv, out)) == (before[0], normalise(argv, before[1])),
                               "%s: a run with no change differs from the plain run" % here)
                        break
                    if st < 0:
                        raise Failure("%s: died of signal %d (%s); stdout %r" %
                                      (here, -st, signal.Signals(-st).name, out[-300:]))
                    expect(st in DOCUMENTED - {5, 64}, "%s: exited %d: %r" % (here, st, err))
                    if argv[0] == "list":
                        expect(st == 0 and err == b"", "%s: list exited %d: %r" % (here, st, err))
                    elif st not in (0, 3, 4):
                        expect(named_in(target.encode(), st, out, err),
                               "%s: exited %d without naming the file: %r %r" % (here, st, out, err))
                    if "--json" in argv and out:
                        json_lines(out, here)
                    # The outcome: an error, or exactly the output for the file before or after the change.
                    got = normalise(argv, out)
                    results = {(before[0], normalise(argv, before[1])), (after[0], normalise(argv, after[1]))}
                    if argv[0] == "list":
                        ok = (st, got) in results or re.search(rb"changed while being read", out) is not None
                    elif "--watch" in argv:
                        rows = {r for _, o in results for r in o.split(b"\n")}
                        ok = st in (0, 1, 2, 3, 6) and all(r in rows for r in got.split(b"\n"))
                    else:
                        ok = (st, got) in results or (st in (1, 2, 6) and (st != 1 or argv[0] != "check" or
                                                                         b"inconsistent" in got))
                    expect(ok, "%s: exited %d printing neither the output for the file before (%d) nor after (%d) "
                               "the change:\n%s\n-- before:\n%s\n-- after:\n%s" %
                           (here, st, before[0], after[0], out.decode(errors="replace"),
                            before[1].decode(errors="replace"), after[1].decode(errors="replace")))
                    if always_reported and argv[0] != "list":
                        expect(st != 0 and st != 3, "%s: the file was left shorter than its pool, and the run "
                                                    "succeeded: %r" % (here, out[-300:]))
                    if st in (0, 3) and always_reported and argv[0] == "list":
                        expect(b'"status": "ok"' not in out and not re.search(rb"^p\.shm .* ok$", out, re.M),
                               "%s: list calls a truncated pool ok: %r" % (here, out))
                totals[argv[0]] = max(totals.get(argv[0], 0), n - 1)
    print("each_read: %d runs; reads per command (most): %s" % (runs, totals))


# ---- json_names ----------------------------------------------------------------

def random_name(rng, max_len, forbidden):
    """Random bytes, biased to the hostile ones."""
    pool = [b'"', b"\\", b"\n", b"\t", b"\x01", b"\x1f", b"\x7f", b"\xff", b"\xfe", b"\xc0", b"\xed\xa0\x80",
            b"\xef\xbf\xbd", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xe2\x82\xac", b"\xf0\x9f\x98", b"A", b"z", b"-"]
    out = b""
    while len(out) < rng.randrange(1, max_len + 1):
        part = rng.choice(pool) if rng.random() < 0.6 else bytes([rng.randrange(1, 256)])
        if len(out) + len(part) <= max_len:
            out += part
    out = bytes(b for b in out if b not in forbidden) or b"x"
    return out if out not in (b".", b"..") else out + b"x"


def case_json_names(cli, helper, hooked, work, rng):
    pools = os.path.join(work, "pools").encode()
    os.mkdir(pools)
    names = set()
    while len(names) < 60:
        names.add(random_name(rng, 40, forbidden=b"\x00/"))
    # Names that a lossy conversion alone would merge.
    names |= {b"m-\xff", b"m-\xfe", b"m-\xef\xbf\xbd", b"m-\xff\xfe", b"m-\xc3\xa9", b"m-\xe9"}
    names = sorted(names)
    for name in names:
        st, _, err = run([cli, b"create", os.path.join(pools, name), b"--variant", b"i64", b"--capacity", b"3"])
        expect(st == 0, "create %r failed: %r" % (name, err))
    held = []
    try:
        # Owners with random process names: each holds a slot of its own pool.
        comms = {}
        for k in range(12):
            comm = random_name(rng, 15, forbidden=b"\x00")
            pool = os.path.join(pools, names[k])
            child = subprocess.Popen([helper, b"hold-named", pool, comm.hex().encode()], stdout=subprocess.PIPE)
            held.append(child)
            line = child.stdout.readline()  # "slot pid": the slot is held and the name set
            expect(line, "helper hold-named %r printed nothing" % comm)
            comms[names[k]] = comm
        checked = 0
        # list: every name once, exactly, in order.
        st, out, err = run([cli, b"list", pools, b"--json"])
        expect(st == 0, "list --json exited %d: %r" % (st, err))
        doc = strict_json(out, "list --json")
        got = [read_name(p, "name", "list --json") for p in doc["pools"]]
        expect(got == names, "list --json names differ from the files':\n%r\n%r" % (got, names))
        expect(read_name(doc, "dir", "list --json") == pools, "list --json dir is not %r" % pools)
        printed = [(p["name"], p.get("name_hex")) for p in doc["pools"]]
        expect(len(set(printed)) == len(printed), "two names print alike in list --json: %r" % printed)
        checked += 1
        for name in names:
            path = os.path.join(pools, name)
            for argv in ([b"info", path, b"--json"], [b"stats", path, b"--json"], [b"slots", path, b"--json"],
                         [b"check", path, b"--json"], [b"stats", path, b"--json", b"--watch", b"0.001", b"--count",
                                                       b"2"]):
                what = "%s of %r" % (argv[0].decode(), name)
                st, out, err = run([cli] + argv)
                expect(st in (0, 3), "%s exited %d: %r" % (what, st, err))
                for d in json_lines(out, what):
                    expect(read_name(d, "file", what) == path, "%s: file reads back as another name" % what)
                    if argv[0] == b"slots" and name in comms:
                        rows = [r for r in d["slots"] if r["owner"] == "alive"]
                        expect(len(rows) == 1, "%s: no live owner: %r" % (what, d))
                        expect(read_name(rows[0], "command", what) == comms[name],
                               "%s: command reads back as %r, not %r" %
                               (what, read_name(rows[0], "command", what), comms[name]))
                checked += 1
        print("json_names: %d outputs parsed, %d file names and %d process names of random bytes" %
              (checked, len(names), len(comms)))
    finally:
        for child in held:
            child.kill()
            child.wait(10)


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 64
    case, cli, helper = sys.argv[1:4]
    hooked = sys.argv[4] if len(sys.argv) > 4 else None
    seed = int(os.environ.get("SHMPOOL_TOOL_SWEEP_SEED", "0")) or random.randrange(1, 2 ** 31)
    print("%s: seed %d (SHMPOOL_TOOL_SWEEP_SEED=%d repeats it)" % (case, seed, seed))
    rng = random.Random(seed)
    cases = {"race": case_race, "each_read": case_each_read, "json_names": case_json_names}
    if case not in cases:
        print("unknown case " + case, file=sys.stderr)
        return 64
    work = tempfile.mkdtemp(prefix="shmpool-tool-sweep.")
    try:
        cases[case](cli, helper, hooked, work, rng)
    except Failure as e:
        print("FAIL [%s] (seed %d): %s" % (case, seed, e), file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("PASS [%s]" % case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
