#!/usr/bin/env python3
"""An application behind caddyupload, in nothing but Python's standard library.

It learns about uploads two ways and keeps what it learned in a JSON file:

* POST /uploads/confirmed — completions forwarded by the `upload` route
  (`forward /uploads/confirmed { secret ... }`), with the upload's facts in
  X-Upload-* headers signed with HMAC-SHA256;
* POST /webhooks/upload — webhook events from the route's outbox
  (`webhook http://127.0.0.1:PORT/webhooks/upload { secret ... }`), signed
  with X-Upload-Signature: t=<unix>,v1=<hex>.

Both verify the signature before they trust anything, and both are
idempotent: a retried delivery (same upload id, same event id) is recorded
once.

    UPLOAD_SECRET=... python3 app.py --port 3000 --state /tmp/app-state.json

GET /uploads lists what was recorded. POST /control/fail with body "on" or
"off" makes the app answer 500 to deliveries, to see retries happen.
"""

import argparse
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIGNED_HEADERS = ["X-Upload-Id", "X-Upload-Key", "X-Upload-Size", "X-Upload-Type",
                  "X-Upload-Sha256", "X-Upload-Subject", "X-Upload-Filename",
                  "X-Upload-Body-Sha256"]
TOLERANCE = 300  # seconds a signature stays acceptable


def verify_forward(secret, headers, body):
    """Checks the X-Upload-Signature of a forwarded completion, and that
    the body (the record, with its metadata) is the one it covers."""
    ts = headers.get("X-Upload-Timestamp", "")
    if not ts.isdigit() or abs(time.time() - int(ts)) > TOLERANCE:
        return False
    if not hmac.compare_digest(hashlib.sha256(body).hexdigest(), headers.get("X-Upload-Body-Sha256", "")):
        return False
    canonical = "\n".join([ts] + [headers.get(h, "") for h in SIGNED_HEADERS])
    want = "v1=" + hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, headers.get("X-Upload-Signature", ""))


def verify_webhook(secret, header, body):
    """Checks a webhook's X-Upload-Signature: t=<unix>,v1=<hex>."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    ts = parts.get("t", "")
    if not ts.isdigit() or abs(time.time() - int(ts)) > TOLERANCE:
        return False
    want = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts.get("v1", ""))


def decode_filename(value):
    """Decodes an RFC 8187 ext-value (UTF-8''percent-encoded)."""
    if value.lower().startswith("utf-8''"):
        return urllib.parse.unquote(value[7:], encoding="utf-8")
    return value


class State:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.fail = False
        self.data = {"uploads": {}, "events": {}, "deliveries": 0}
        if path and os.path.exists(path):
            with open(path) as f:
                self.data = json.load(f)

    def save(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def make_handler(state, secret):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quiet: tests read the state instead
            pass

        def reply(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def do_GET(self):
            if self.path == "/uploads":
                with state.lock:
                    return self.reply(200, state.data)
            self.reply(404, {"error": "not found"})

        def do_POST(self):
            body = self.body()
            if self.path == "/control/fail":
                with state.lock:
                    state.fail = body.strip() == b"on"
                return self.reply(200, {"fail": state.fail})
            with state.lock:
                state.data["deliveries"] += 1
                if state.fail:
                    return self.reply(500, {"error": "failing on purpose"})
                if self.path == "/uploads/confirmed":
                    if not verify_forward(secret, self.headers, body):
                        return self.reply(401, {"error": "bad signature"})
                    uid = self.headers["X-Upload-Id"]
                    state.data["uploads"][uid] = {
                        "key": self.headers["X-Upload-Key"],
                        "size": int(self.headers["X-Upload-Size"]),
                        "type": self.headers["X-Upload-Type"],
                        "subject": self.headers["X-Upload-Subject"],
                        "filename": decode_filename(self.headers["X-Upload-Filename"]),
                    }
                    state.save()
                    return self.reply(200, {"ok": True, "id": uid, "message": "thanks for the upload"})
                if self.path == "/webhooks/upload":
                    if not verify_webhook(secret, self.headers.get("X-Upload-Signature", ""), body):
                        return self.reply(401, {"error": "bad signature"})
                    event = json.loads(body)
                    seen = state.data["events"].setdefault(event["id"], {"type": event["type"], "count": 0})
                    seen["count"] += 1
                    state.save()
                    return self.reply(200, {"ok": True})
            self.reply(404, {"error": "not found"})

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=3000)
    ap.add_argument("--state", default="")
    args = ap.parse_args()
    secret = os.environ.get("UPLOAD_SECRET", "").encode()
    if len(secret) < 16:
        raise SystemExit("UPLOAD_SECRET (16 bytes or more) is required")
    state = State(args.state)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state, secret))
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
