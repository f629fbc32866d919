#!/usr/bin/env python3
"""A fake settings server for the bench scripts: answers like the app server's sandbox
settings API and counts every request, per second.

    bench/fake_settings.py [--port 0] [--delay-ms 0] [--secrets N] [--port-file FILE]

Routes (any sandbox id, the session key is not checked):
  GET /api/v1/sandboxes/{sid}/settings/secrets          -> {"secrets": [{"name": "S0000"}, ...]}
  GET /api/v1/sandboxes/{sid}/settings/secrets/{name}   -> text value, unique per (sid, name)
  GET /__stats   -> {"total": n, "per_second": [[unix_second, count], ...]} (not counted)
  POST /__reset  -> zeroes the counters (not counted)

--delay-ms holds every counted answer that long, so concurrent cold misses overlap.
The port it listens on is printed on stdout (and written to --port-file) once it accepts.
"""

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/api/v1/sandboxes/"

class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.total = 0
        self.per_second = {}

    def hit(self):
        now = int(time.time())
        with self.lock:
            self.total += 1
            self.per_second[now] = self.per_second.get(now, 0) + 1

    def snapshot(self):
        with self.lock:
            return {"total": self.total, "per_second": sorted(self.per_second.items())}

    def reset(self):
        with self.lock:
            self.total = 0
            self.per_second = {}

def handler(counter, delay, secrets):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):
            pass

        def send(self, status, body, ctype):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            if self.path == "/__reset":
                counter.reset()
                self.send(200, b"{}", "application/json")
            else:
                self.send(404, b'{"detail":"Not Found"}', "application/json")

        def do_GET(self):
            if self.path == "/__stats":
                self.send(200, json.dumps(counter.snapshot()).encode(), "application/json")
                return
            counter.hit()
            if delay:
                time.sleep(delay)
            path = self.path.split("?", 1)[0]
            parts = path[len(PREFIX):].split("/") if path.startswith(PREFIX) else []
            if len(parts) == 3 and parts[1:] == ["settings", "secrets"]:
                names = [{"name": f"S{i:04d}", "description": "bench"} for i in range(secrets)]
                self.send(200, json.dumps({"secrets": names}).encode(), "application/json")
            elif len(parts) == 4 and parts[1:3] == ["settings", "secrets"] and parts[3]:
                value = f"value-{parts[0]}-{parts[3]}-0123456789abcdef".encode()
                self.send(200, value, "text/plain")
            else:
                self.send(404, b'{"detail":"Not Found"}', "application/json")

    return Handler

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--secrets", type=int, default=2)
    ap.add_argument("--port-file")
    args = ap.parse_args()
    counter = Counter()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), handler(counter, args.delay_ms / 1000, args.secrets)
    )
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))

        os.replace(args.port_file + ".tmp", args.port_file)
    print(port, flush=True)
    server.serve_forever()

if __name__ == "__main__":
    main()
