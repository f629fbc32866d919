"""Drive a running secret-sidecar with the unmodified OpenHands SDK clients.

    python scripts/sdk_compat.py URL API_KEY [SETTINGS_PORT]

Registers secrets the way RemoteConversation.update_secrets does, then runs commands with
RemoteWorkspace.execute_command (the bash routes) and checks exit codes, output and masking.
With SETTINGS_PORT it also plays the Cloud settings API on that port (the sidecar must run
with --settings-url http://127.0.0.1:SETTINGS_PORT and the same session key), fetches
LookupSecrets with OpenHandsCloudWorkspace.get_secrets() in local agent-server mode, hands
them over, and runs a command that needs one.
"""
import sys

import httpx
from openhands.sdk.secret import LookupSecret, StaticSecret
from openhands.sdk.workspace.remote.base import RemoteWorkspace

url, key = sys.argv[1], sys.argv[2]
headers = {"X-Session-API-Key": key}

# The exact wire form RemoteConversation.update_secrets sends.
secrets = {
    "PLAIN": "plain-value-0001",
    "STATIC": StaticSecret(value="static-value-0002", description="d").model_dump(mode="json", context={"expose_secrets": True}),
}
r = httpx.post(f"{url}/api/secrets", json={"secrets": secrets}, headers=headers)
assert r.status_code == 200 and r.json() == {"success": True}, r.text

ws = RemoteWorkspace(host=url, api_key=key, working_dir="/tmp")
res = ws.execute_command("echo hello; echo $PLAIN; echo static=$STATIC >&2; exit 3", timeout=30)
print("exit", res.exit_code, "stdout", repr(res.stdout), "stderr", repr(res.stderr))
assert res.exit_code == 3, res
assert "hello" in res.stdout and "<secret-hidden>" in res.stdout and "plain-value-0001" not in res.stdout, res
assert "static=<secret-hidden>" in res.stderr and "static-value-0002" not in res.stderr, res

# Under the default --max-output-bytes (1 MiB per stream) everything arrives; past it the
# middle is dropped, as for /commands.
big = ws.execute_command("head -c 900000 /dev/zero | tr '\\0' a; echo", timeout=60)
assert big.exit_code == 0 and len(big.stdout.strip()) == 900000, (big.exit_code, len(big.stdout))
huge = ws.execute_command("head -c 5000000 /dev/zero | tr '\\0' a; echo", timeout=60)
assert huge.exit_code == 0 and "bytes of output dropped" in huge.stdout, (huge.exit_code, len(huge.stdout))

slow = ws.execute_command("sleep 1; echo done", timeout=30)
assert slow.exit_code == 0 and slow.stdout.strip() == "done", slow

timed = ws.execute_command("sleep 30", timeout=2)
print("timeout exit", timed.exit_code)
assert timed.exit_code == -1, timed
if len(sys.argv) > 3:
    import json
    import os
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from openhands.workspace import OpenHandsCloudWorkspace

    settings_port = int(sys.argv[3])

    class Settings(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.headers.get("X-Session-API-Key") != key:
                self.send_response(401); self.end_headers(); return
            if self.path.endswith("/settings/secrets"):
                body = json.dumps({"secrets": [{"name": "GITHUB_TOKEN", "description": "GitHub token"}]}).encode()
                ctype = "application/json"
            elif self.path.endswith("/settings/secrets/GITHUB_TOKEN"):
                body, ctype = b"ghp_cloudvalue0123456789\n", "text/plain"
            else:
                self.send_response(404); self.end_headers(); return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", settings_port), Settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["AGENT_SERVER_PORT"] = url.rsplit(":", 1)[1]
    os.environ["SESSION_API_KEY"] = key
    os.environ["SANDBOX_ID"] = "sb-compat"
    cloud = OpenHandsCloudWorkspace(local_agent_server_mode=True, cloud_api_url=f"http://127.0.0.1:{settings_port}", cloud_api_key="unused")
    looked_up = cloud.get_secrets()
    assert set(looked_up) == {"GITHUB_TOKEN"}, looked_up
    wire = {n: s.model_dump(mode="json", context={"expose_secrets": True}) for n, s in looked_up.items()}
    r = httpx.post(f"{url}/api/secrets", json={"secrets": wire}, headers=headers)
    assert r.status_code == 200, r.text
    res = cloud.execute_command("printf '%s' \"$GITHUB_TOKEN\" | wc -c; echo $GITHUB_TOKEN", timeout=30)
    print("cloud exit", res.exit_code, "stdout", repr(res.stdout))
    assert res.exit_code == 0 and res.stdout.split()[0] == "25" and "<secret-hidden>" in res.stdout, res
    assert "ghp_cloudvalue" not in res.stdout, res
    server.shutdown()

print("SDK compatibility: all checks passed")
