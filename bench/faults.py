"""Faults during a burst of posts: a gunicorn worker SIGKILLed; PostgreSQL restarted.

    .venv/bin/python bench/faults.py [--database postgres|sqlite] [--posters 8] [--readers 2]
                                     [--kills 2] [--no-pre-ping]

Same database, seed, server and clients as load_mixed.py (a private PostgreSQL cluster
started for the run, or SQLite in a temporary folder). Posters post comments with the
form's idempotency key and send the same key again after a connection error or a 5xx,
as a browser's "send again" would.

(a) worker kill: during the burst, SIGKILL the gunicorn worker that holds the most client
    connections (`--kills` times, `--gap` seconds apart); the arbiter starts a new one.
(b) database restart (PostgreSQL only): `pg_ctl restart -m fast` during the burst, which
    drops every connection of the pool; the app must serve again by itself.

After each scenario the database is checked: every acknowledged post exactly once, no
post twice ("lost: N, doubled: N"), and the failed answers are placed in time against the
fault (how many, for how long, and whether any came after the fault was over). Bounded in
time; everything started here is stopped in finally blocks. JSON in bench/out/.
"""

import argparse
import json
import os
import re
import secrets
import signal
import sys
import time
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench.load_mixed import (  # noqa: E402
    EXPECTED,
    OUT_DIR,
    Client,
    Environment,
    Traffic,
    TransportError,
    check_posts,
    interruptible,
    loadavg,
    print_kinds,
    summarise,
)

RESPAWN_WAIT_S = 30.0
NO_PRE_PING = '{"hide_parameters": true}'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--posters", type=int, default=8, help="posters (8)")
    parser.add_argument("--readers", type=int, default=2, help="anonymous readers (2)")
    parser.add_argument("--kills", type=int, default=2, help="workers to SIGKILL in (a) (2)")
    parser.add_argument("--before", type=float, default=5, help="seconds before a fault (5)")
    parser.add_argument(
        "--gap", type=float, default=10, help="seconds between two worker kills (10)"
    )
    parser.add_argument("--after", type=float, default=8, help="seconds after a fault (8)")
    parser.add_argument("--keep", action="store_true", help="keep the folder with the server log")
    parser.add_argument(
        "--no-pre-ping",
        action="store_true",
        help=f"serve with APORTA_SQLALCHEMY_ENGINE_OPTIONS='{NO_PRE_PING}' (pool_pre_ping off)",
    )
    return parser.parse_args()


def failed(entry) -> bool:
    """A timeline entry that is a 5xx or a transport error."""
    outcome = entry[3]
    return isinstance(outcome, str) or outcome >= 500


def longest_gap(timeline: list) -> float:
    """The longest time between two successful answers (any kind): the service gap."""
    ends = sorted(e[1] for e in timeline if not failed(e))
    return max((b - a for a, b in zip(ends, ends[1:], strict=False)), default=0.0)


def failures_around(timeline: list, fault_start: float, fault_end: float) -> dict:
    """The failed requests, placed in time against a fault [start, end] (seconds)."""
    bad = [e for e in timeline if failed(e)]
    after = [e for e in bad if e[0] > fault_end]
    good_after = [e for e in timeline if not failed(e) and e[0] >= fault_end]
    return {
        "fault_s": [round(fault_start, 3), round(fault_end, 3)],
        "failed": len(bad),
        "failed_by_outcome": dict(Counter(str(e[3]) for e in bad)),
        "longest_without_success_s": round(longest_gap(timeline), 3),
        "first_failure_s": round(min(e[0] for e in bad), 3) if bad else None,
        "last_failure_end_s": round(max(e[1] for e in bad), 3) if bad else None,
        "failure_window_s": round(max(e[1] for e in bad) - min(e[0] for e in bad), 3)
        if bad
        else 0.0,
        "failed_before_fault": sum(1 for e in bad if e[1] < fault_start),
        "failed_started_after_fault_over": len(after),
        "first_success_after_fault_s": round(min(e[1] for e in good_after) - fault_end, 3)
        if good_after
        else None,
    }


def client_connections(pid: int, port: int) -> int:
    """Established TCP connections to `port` that the process holds (from /proc)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return 0
    count = 0
    with open("/proc/net/tcp") as handle:
        for line in handle.readlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def wait_for_posts(traffic: Traffic, posters: int, limit: float = 60.0) -> None:
    """Until every poster has logged in and posted once (logins are slow on a busy machine)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with traffic.stats.lock:
            if len(traffic.stats.posts) >= posters:
                return
        time.sleep(0.1)


def kill_workers(environment: Environment, traffic: Traffic, kills: int, args) -> list[dict]:
    """SIGKILL the busiest worker `kills` times; wait for the arbiter to replace each."""
    server = environment.server
    events = []
    wait_for_posts(traffic, args.posters)
    time.sleep(args.before)
    for _ in range(kills):
        before = server.worker_pids()
        connections = {pid: client_connections(pid, server.port) for pid in before}
        victim = max(before, key=lambda pid: connections[pid])
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        respawned = None
        while time.monotonic() - killed_at < RESPAWN_WAIT_S:
            now = server.worker_pids()
            if victim not in now and len(now) >= len(before):
                respawned = time.monotonic() - killed_at
                break
            time.sleep(0.05)
        events.append(
            {
                "pid": victim,
                "connections": connections,
                "at_s": round(killed_at - traffic.stats.began, 3),
                "forked_after_s": round(respawned, 3) if respawned is not None else None,
            }
        )
        if len(events) < kills:
            time.sleep(args.gap)  # the new worker must load the app before the next kill
    return events


def scenario(name: str, environment: Environment, args, fault) -> dict:
    """A burst of posts (and a few readers) with `fault(traffic)` in the middle; then checks."""
    run_id = secrets.token_hex(3)
    budget = args.before + args.gap * args.kills + args.after + 60
    traffic = Traffic(environment.server.port, environment.info, run_id, budget)
    load = loadavg()
    traffic.start(args.readers, args.posters, moderator=False)
    try:
        fault_start = time.monotonic() - traffic.stats.began
        details = fault(traffic)
        fault_end = time.monotonic() - traffic.stats.began
        time.sleep(args.after)
    except KeyboardInterrupt:
        traffic.abort()
        raise
    finally:
        traffic.stop()
    elapsed = time.monotonic() - traffic.stats.began
    summary = summarise(traffic.stats, elapsed, EXPECTED)
    if name.startswith("worker"):  # the faults are the kills themselves
        starts = [e["at_s"] for e in details] + [float("inf")]
        for event, following in zip(details, starts[1:], strict=False):
            bad = [t for t in traffic.stats.timeline if failed(t) and event["at_s"] <= t[1]]
            bad = [t for t in bad if t[1] < following]
            event["failed"] = len(bad)
            last = max((t[1] for t in bad), default=event["at_s"])
            event["failed_within_s"] = round(last - event["at_s"], 3)
        fault_start = min(e["at_s"] for e in details)
        fault_end = max(e["at_s"] + (e["forked_after_s"] or RESPAWN_WAIT_S) for e in details)
    elif "restart_s" in details:
        fault_start, fault_end = details["began_s"], details["began_s"] + details["restart_s"]
    around = failures_around(traffic.stats.timeline, fault_start, fault_end)
    check = check_posts(environment.url, run_id, traffic.stats.posts)
    seconds = Counter()  # per second of the run: successes and failures
    for entry in traffic.stats.timeline:
        seconds[(int(entry[1]), "failed" if failed(entry) else "ok")] += 1
    per_second = [
        [second, seconds[(second, "ok")], seconds[(second, "failed")]]
        for second in range(int(elapsed) + 1)
    ]
    return {
        "scenario": name,
        "loadavg": load,
        "per_second_ok_failed": per_second,
        "fault": details,
        "summary": summary,
        "failures": around,
        "posts": check,
        "client_failures": traffic.failures,
    }


def restart_database(environment: Environment, args):
    def fault(traffic: Traffic) -> dict:
        wait_for_posts(traffic, args.posters)
        time.sleep(args.before)
        began = time.monotonic() - traffic.stats.began
        took = environment.cluster.restart()
        return {"began_s": round(began, 3), "restart_s": round(took, 3)}

    return fault


def idle_restart(environment: Environment, requests: int = 20) -> dict:
    """Restart PostgreSQL while no request runs, then read pages: the pool's old
    connections are all dead, and only a check before use (pool_pre_ping) hides it."""
    client = Client(environment.server.port)
    paths = [path for _, path in environment.info["read_paths"]]
    try:
        warm = Counter()
        for n in range(requests):
            client.close()
            warm[client.request("GET", paths[n % len(paths)]).status] += 1
        took = environment.cluster.restart()
        after = Counter()
        for n in range(requests):  # a new connection each time, to reach every worker
            client.close()
            try:
                after[client.request("GET", paths[n % len(paths)]).status] += 1
            except TransportError as error:
                after[str(error)] += 1
    finally:
        client.close()
    return {
        "restart_s": round(took, 3),
        "before": dict(warm),
        "after": {str(k): v for k, v in after.items()},
        "failed_after": sum(v for k, v in after.items() if not (isinstance(k, int) and k < 500)),
    }


def report(result: dict) -> None:
    print()
    print(f"== {result['scenario']} (load average {result['loadavg']})")
    print(f"fault     {result['fault']}")
    print_kinds(result["summary"])
    f, p = result["failures"], result["posts"]
    print(
        f"failures  {f['failed']} failed answers {f['failed_by_outcome']} over "
        f"{f['failure_window_s']} s (fault from {f['fault_s'][0]} s to {f['fault_s'][1]} s of "
        f"the run); started after the fault was over: {f['failed_started_after_fault_over']}; "
        f"first success {f['first_success_after_fault_s']} s after it; longest time without "
        f"a successful answer: {f['longest_without_success_s']} s"
    )
    print(
        f"posts     {p['attempted']} sent, {p['acknowledged']} acknowledged, "
        f"{p['unacknowledged']} not ({p['unacknowledged_stored']} of them stored), "
        f"{p['resent']} resent with the same key"
    )
    for failure in result["client_failures"]:
        print(f"client failure: {failure}")
    print(f"lost: {p['lost']}, doubled: {p['doubled']}")


def main() -> int:
    args = parse_args()
    interruptible()
    extra = {"APORTA_SQLALCHEMY_ENGINE_OPTIONS": NO_PRE_PING} if args.no_pre_ping else {}
    environment = Environment(args.database, args.posters, 2, 4, extra)
    environment.keep = args.keep
    results = []
    idle = None
    try:
        load_before = loadavg()
        environment.open()
        print("Aporta: faults during a burst of posts")
        print(f"machine   nproc={os.cpu_count()}, load average before: {load_before}")
        for line in environment.describe():
            print(line)
        print(
            f"clients   {args.posters} posters and {args.readers} readers, one keep-alive "
            "connection each; posts resent with the same key after a connection error or a 5xx",
            flush=True,
        )
        results.append(
            scenario(
                "worker SIGKILL",
                environment,
                args,
                lambda traffic: kill_workers(environment, traffic, args.kills, args),
            )
        )
        report(results[-1])
        if args.database == "postgres":
            restart = restart_database(environment, args)
            results.append(scenario("PostgreSQL restart", environment, args, restart))
            report(results[-1])
            idle = idle_restart(environment)
            print()
            print(
                f"== PostgreSQL restart while idle: {idle['restart_s']} s; then "
                f"{sum(idle['after'].values())} page reads one after the other: {idle['after']} "
                f"(failed: {idle['failed_after']})"
            )
        log = os.path.join(environment.workdir, "gunicorn.log")
        environment.server.stop()
        environment.server = None
        with open(log, encoding="utf-8", errors="replace") as handle:
            server_log = handle.read()
        tracebacks = server_log.count("Traceback")
        exception = re.compile(r"\b(?:sqlalchemy\.exc|psycopg\.errors|sqlite3)\.\w+")
        exceptions = Counter(exception.findall(server_log))
        print()
        print(
            f"server log: {tracebacks} tracebacks, "
            f"{server_log.count('WORKER TIMEOUT')} worker timeouts, "
            f"{server_log.count('was sent SIGKILL') + server_log.count('Worker (pid:')} "
            "worker deaths noted by the arbiter"
        )
        for line, count in exceptions.most_common(6):
            print(f"  {count:5d} x {line} (mentions)")
        lost = sum(r["posts"]["lost"] for r in results)
        doubled = sum(r["posts"]["doubled"] for r in results)
        late = sum(r["failures"]["failed_started_after_fault_over"] for r in results)
        late += idle["failed_after"] if idle else 0
        print(f"all scenarios: lost: {lost}, doubled: {doubled}; failures after recovery: {late}")
        os.makedirs(OUT_DIR, exist_ok=True)
        suffix = "-no-pre-ping" if args.no_pre_ping else ""
        out = os.path.join(OUT_DIR, f"faults-{args.database}{suffix}.json")
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "benchmark": "faults",
                    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "database": args.database,
                    "pool_pre_ping": not args.no_pre_ping,
                    "nproc": os.cpu_count(),
                    "loadavg_before": load_before,
                    "idle_restart": idle,
                    "scenarios": [
                        {k: v for k, v in r.items() if k != "summary"}
                        | {"summary": {k: v for k, v in r["summary"].items() if k != "kinds"}}
                        for r in results
                    ],
                },
                handle,
                indent=2,
                ensure_ascii=False,
            )
        print(f"results   {os.path.relpath(out, REPO)}")
        return 0 if not (lost or doubled or late) else 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        environment.close()


if __name__ == "__main__":
    sys.exit(main())
