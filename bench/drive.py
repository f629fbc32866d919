#!/usr/bin/env python3
"""Load and timing driver for the bench scripts (standard library only).

    drive.py startup BIN N                  start-to-ready (polled here) and idle RSS, N runs
    drive.py burst URL KEY N PATH [BODY]    N concurrent POSTs released at once
    drive.py sequential URL KEY N PATH BODY N POSTs one after another
    drive.py soak URL KEY RATE SECONDS PATH BODY PID   fixed-rate POSTs, RSS of PID at start/end
    drive.py fleet KEY SECONDS BODY URL...  one POST /api/commands per second to each URL
    drive.py rss PID                        VmRSS and VmHWM of PID in KiB
    drive.py series T0 N S                  summarises fake_settings.py's /__stats (stdin) for N sidecars
    drive.py listed KEY COUNT URL...        waits (60 s at most) until every URL lists COUNT secrets
    drive.py rss-sum PID...                 VmRSS of all PIDs together, in KiB
    drive.py ports N                        N free loopback ports, one a line
    drive.py tree-rss PID                   VmRSS of PID and all its descendants, in KiB

Every result is one JSON object on stdout. Requests carry X-Session-API-Key: KEY.
"""

import http.client
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse


def conn_for(url, timeout=120):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)


def request(conn, method, path, key=None, body=None):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["X-Session-API-Key"] = key
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def rss(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def tree_rss(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, todo, seen = 0, [pid], []
    while todo:
        p = todo.pop()
        try:
            total += rss(p).get("VmRSS", 0)
        except OSError:
            continue
        seen.append(p)
        todo.extend(children.get(p, []))
    return {"VmRSS": total, "processes": len(seen)}


def startup(binary, n):
    ready_ms, idle = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        env = dict(os.environ, SESSION_API_KEY="bench-key")
        start = time.perf_counter()
        p = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{port}", "--log", "warn"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        deadline = start + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                status, _ = request(c, "GET", "/ready")
                c.close()
                if status == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() > deadline:
                p.kill()
                sys.exit("the sidecar did not become ready in 30 s")
        ready_ms.append((time.perf_counter() - start) * 1000)
        time.sleep(0.2)
        idle.append(rss(p.pid)["VmRSS"])
        p.terminate()
        p.wait()
    return {
        "ready_ms_median": round(statistics.median(ready_ms), 2),
        "ready_ms": [round(x, 2) for x in ready_ms],
        "idle_rss_kib_median": statistics.median(idle),
        "idle_rss_kib": idle,
    }


def burst(url, key, n, path, body):
    barrier = threading.Barrier(n)
    statuses = [None] * n
    conns = [conn_for(url) for _ in range(n)]
    for c in conns:
        c.connect()

    def one(i):
        barrier.wait()
        try:
            statuses[i], _ = request(conns[i], "POST", path, key, body)
        except OSError as e:
            statuses[i] = type(e).__name__

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = {}
    for s in statuses:
        counts[str(s)] = counts.get(str(s), 0) + 1
    return {"requests": n, "statuses": counts, "seconds": round(time.perf_counter() - start, 3)}


def sequential(url, key, n, path, body):
    c = conn_for(url)
    counts, times, start = {}, [], time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        status, _ = request(c, "POST", path, key, body)
        times.append((time.perf_counter() - t) * 1e6)
        counts[str(status)] = counts.get(str(status), 0) + 1
    times.sort()
    return {
        "requests": n,
        "statuses": counts,
        "seconds": round(time.perf_counter() - start, 3),
        "p50_us": round(times[len(times) // 2]),
        "p99_us": round(times[min(len(times) - 1, round((len(times) - 1) * 0.99))]),
    }


def soak(url, key, rate, seconds, path, body, pid):
    start_rss = rss(pid)
    errors, done, lock = [0], [0], threading.Lock()
    kinds = {}  # status code or exception name -> count, to tell a 5xx from a dropped socket
    local = threading.local()
    start = time.perf_counter()
    total = int(rate * seconds)

    def one():
        try:
            if not hasattr(local, "c"):
                local.c = conn_for(url)
            status, _ = request(local.c, "POST", path, key, body)
            kind = None if status == 200 else str(status)
        except OSError as e:
            local.__dict__.pop("c", None)
            kind = type(e).__name__
        with lock:
            done[0] += 1
            if kind is not None:
                errors[0] += 1
                kinds[kind] = kinds.get(kind, 0) + 1

    # A small pool of workers takes ticks at a fixed rate, so a slow answer does not slow
    # the arrivals (up to the pool's size).
    ticks = queue.Queue()

    def worker():
        while ticks.get() is not None:
            one()

    workers = [threading.Thread(target=worker) for _ in range(32)]
    for w in workers:
        w.start()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        ticks.put(1)
    for _ in workers:
        ticks.put(None)
    for w in workers:
        w.join()
    end_rss = rss(pid)
    growth = (end_rss["VmRSS"] - start_rss["VmRSS"]) / start_rss["VmRSS"] * 100
    return {
        "requests": done[0],
        "errors": errors[0],
        "error_kinds": kinds,
        "seconds": round(time.perf_counter() - start, 1),
        "rss_start_kib": start_rss["VmRSS"],
        "rss_end_kib": end_rss["VmRSS"],
        "rss_growth_pct": round(growth, 1),
    }


def fleet(key, seconds, body, urls):
    errors, lock = [0], threading.Lock()
    start = time.time() + 0.5

    def one(url):
        c = conn_for(url)
        for k in range(seconds):
            delay = start + k - time.time()
            if delay > 0:
                time.sleep(delay)
            try:
                status, _ = request(c, "POST", "/api/commands", key, body)
                ok = status == 200
            except OSError:
                c = conn_for(url)
                ok = False
            if not ok:
                with lock:
                    errors[0] += 1

    threads = [threading.Thread(target=one, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"sidecars": len(urls), "commands": len(urls) * seconds, "errors": errors[0]}


def series(t0, n, steady_from):
    d = json.load(sys.stdin)
    per = {s - t0: c for s, c in d["per_second"]}
    last = max(per) if per else 0
    burst = sum(c for t, c in per.items() if t < steady_from)
    steady = [per.get(t, 0) for t in range(steady_from, last + 1)]
    return {
        "per_second": " ".join(f"{t}:{per.get(t, 0)}" for t in range(0, last + 1)),
        "total": d["total"],
        f"startup_burst_before_second_{steady_from}": burst,
        f"steady_mean_per_s_from_second_{steady_from}": round(sum(steady) / len(steady), 2) if steady else 0,
        "steady_max_per_s": max(steady, default=0),
        "peak_per_s": max(per.values(), default=0),
        "per_sidecar": round(d["total"] / n, 2),
    }


def listed(key, count, urls):
    deadline = time.time() + 60
    for url in urls:
        c = conn_for(url)
        while True:
            status, data = request(c, "GET", "/api/secrets", key)
            if status == 200 and len(json.loads(data)["secrets"]) >= count:
                break
            if time.time() > deadline:
                sys.exit(f"{url} does not list {count} secrets after 60 s")
            time.sleep(0.05)
    return {"listed": len(urls)}


def ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    out = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return out


def main():
    verb, args = sys.argv[1], sys.argv[2:]
    if verb == "startup":
        out = startup(args[0], int(args[1]))
    elif verb == "burst":
        out = burst(args[0], args[1], int(args[2]), args[3], args[4] if len(args) > 4 else "{}")
    elif verb == "sequential":
        out = sequential(args[0], args[1], int(args[2]), args[3], args[4])
    elif verb == "soak":
        out = soak(args[0], args[1], float(args[2]), float(args[3]), args[4], args[5], int(args[6]))
    elif verb == "fleet":
        out = fleet(args[0], int(args[1]), args[2], args[3:])
    elif verb == "series":
        for k, v in series(int(args[0]), int(args[1]), int(args[2])).items():
            print(f"{k}: {v}")
        return
    elif verb == "ports":
        print("\n".join(map(str, ports(int(args[0])))))
        return
    elif verb == "listed":
        out = listed(args[0], int(args[1]), args[2:])
    elif verb == "rss-sum":
        out = {"VmRSS": sum(rss(int(p))["VmRSS"] for p in args)}
    elif verb == "tree-rss":
        out = tree_rss(int(args[0]))
    elif verb == "rss":
        out = rss(int(args[0]))
    else:
        sys.exit(__doc__)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
