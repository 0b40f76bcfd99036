"""HTTP front of the emulator: auth, throttling, faults, and the three
URL spaces -- ``/3.0`` (Mailchimp), ``/_emulator`` (control) and
``/_batch-results`` (the S3-like archive download, no auth).
"""

import base64
import hashlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from . import admin
from .api import Api
from .batches import BatchRunner
from .faults import Faults
from .settings import make_settings, update_settings
from .state import Store
from .util import ApiError
from .webhooks import Dispatcher

DEFAULT_API_KEY = hashlib.md5(b"mailchimp_sync emulator").hexdigest() + "-us1"
PROBLEM_CT = "application/problem+json; charset=utf-8"
JSON_CT = "application/json; charset=utf-8"
LINK = '<https://us1.api.mailchimp.com/schema/3.0/Definitions/ProblemDetailDocument.json>; rel="describedBy"'


class Emulator:
    """Everything but the socket: state, router, batches, webhooks, faults, keys."""

    def __init__(self, settings=None, api_key=None):
        self.store = Store(settings)
        self.dispatcher = Dispatcher(self.store)
        self.api = Api(self.store, self.dispatcher)
        self.batches = BatchRunner(self.api)
        self.api.batches = self.batches
        self.faults = Faults()
        self.default_key = api_key or DEFAULT_API_KEY
        self.keys = {self.default_key}
        self.inflight = {}
        self.max_inflight = 0
        self.counter_lock = threading.Lock()
        self.stats = {"requests": 0, "throttled": 0}

    def reset(self, settings=None):
        """Forget all data, settings, faults, deliveries and extra keys."""
        with self.store.lock:
            for b in self.store.batches.values():
                b["_cancelled"] = True
            self.store.settings = make_settings(settings)
            self.store.reset_data()
            self.store.clock.set(real=True)
            self.batches.clear()
        self.dispatcher.clear()
        self.faults.configure()
        self.keys = {self.default_key}
        with self.counter_lock:
            self.max_inflight = 0
            self.stats = {"requests": 0, "throttled": 0}

    def stop(self):
        self.dispatcher.stop()
        self.batches.stop()


def _problem(status, title, detail, typed=True):
    rid = str(uuid.uuid4())
    body = {"type": "https://mailchimp.com/developer/marketing/docs/errors/"} if typed else {}
    body.update(title=title, status=status, detail=detail, instance=rid)
    return status, body, {"X-Request-Id": rid}


class Handler(BaseHTTPRequestHandler):
    def version_string(self):
        return "nginx"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")

    # -- plumbing --
    def _send(self, status, body=None, headers=None, content_type=None, raw=None):
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        try:
            self.send_response(status)
            if data or content_type:
                self.send_header("Content-Type", content_type or
                                 (PROBLEM_CT if status >= 400 else JSON_CT))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if status >= 400 and raw is None and body is not None:
                self.send_header("Link", LINK)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _handle(self, method):
        emu = self.server.emulator
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = url.path
        if path == "/3.0" or path.startswith("/3.0/"):
            return self._api(emu, method, path[4:] or "/", query, raw)
        if path.startswith("/_emulator"):
            return self._control(emu, method, path[len("/_emulator"):].strip("/"), query, raw)
        if path.startswith("/_batch-results/") and method == "GET":
            fault = emu.faults.pick(method, path, rules_only=True)
            if fault and fault[0] == "timeout":
                time.sleep(fault[1])
            elif fault and fault[0] != "truncated":
                return self._send(*_problem(int(fault[0][:3]), "Error", "The results are not available."))
            status, ct, data = emu.batches.serve(path, query, self.headers)
            if fault and fault[0] == "truncated" and status == 200:
                data = data[: len(data) // 2]
            return self._send(status, content_type=ct, raw=data)
        return self._send(*_problem(404, "Resource Not Found", "The requested resource could not be found."))

    def _key(self, emu):
        auth = self.headers.get("Authorization") or ""
        scheme, _, cred = auth.partition(" ")
        if not cred:
            return None, _problem(401, "API Key Missing", "Your request did not include an API key.")
        key = None
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(cred.strip()).decode("utf-8", "replace").partition(":")[2]
            except ValueError:
                key = None
        elif scheme.lower() in ("bearer", "apikey"):
            key = cred.strip()
        if not key or key not in emu.keys:
            return None, _problem(401, "API Key Invalid", "Your API key may be invalid, or you've attempted "
                                  "to access the wrong datacenter.")
        dc = emu.store.settings["datacenter"]
        if dc and not key.endswith("-" + dc):
            return None, _problem(403, "Wrong Datacenter",
                                  "The API key provided is linked to a different datacenter")
        return key, None

    def _api(self, emu, method, path, query, raw):
        key, err = self._key(emu)
        if err:
            return self._send(*err)
        s = emu.store.settings
        with emu.counter_lock:
            emu.stats["requests"] += 1
            n = emu.inflight[key] = emu.inflight.get(key, 0) + 1
            emu.max_inflight = max(emu.max_inflight, n)
        try:
            if n > int(s["max_connections"]):
                with emu.counter_lock:
                    emu.stats["throttled"] += 1
                return self._send(*_problem(429, "Too Many Requests", "You have exceeded the limit of "
                                            f"{s['max_connections']} simultaneous connections."))
            fault = emu.faults.pick(method, path)
            if fault:
                kind, delay = fault
                if kind == "timeout":
                    time.sleep(delay)
                elif kind in ("429_empty", "403_empty"):
                    return self._send(int(kind[:3]), content_type="text/html", raw=b"")
                elif kind == "429_json":
                    return self._send(*_problem(429, "Too Many Requests", "You have exceeded the limit of "
                                                "10 simultaneous connections."))
                elif kind == "500":
                    return self._send(*_problem(500, "Internal Server Error", "An unexpected internal "
                                                "error has occurred. Please contact Support for more "
                                                "information."))
                elif kind == "503":
                    return self._send(*_problem(503, "Service Unavailable", "This service is temporarily "
                                                "unavailable. Please try again later."))
            resp = emu.api.dispatch(method, path, query, raw, ip=self.client_address[0])
            headers = dict(resp.headers)
            headers.setdefault("X-Request-Id", str(uuid.uuid4()))
            if resp.status == 204:
                return self._send(204, headers=headers)
            return self._send(resp.status, resp.body, headers)
        finally:
            with emu.counter_lock:
                emu.inflight[key] -= 1

    def _control(self, emu, method, name, query, raw):
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return self._send(400, {"error": "body is not JSON"}, content_type=JSON_CT)
        body = body or {}
        try:
            out = control_call(emu, method, name, query, body)
        except ApiError as e:
            return self._send(e.status, e.body(emu.store.settings), content_type=JSON_CT)
        except (KeyError, ValueError, TypeError) as e:
            return self._send(400, {"error": f"{type(e).__name__}: {e}"}, content_type=JSON_CT)
        if out is None:
            return self._send(404, {"error": f"no control endpoint {method} /_emulator/{name}"},
                              content_type=JSON_CT)
        return self._send(200, out, content_type=JSON_CT)


CONTROL_ENDPOINTS = [
    "GET  /_emulator/                      this list",
    "POST /_emulator/reset                 {settings?}",
    "GET|POST /_emulator/settings          {name: value, ...}",
    "POST /_emulator/api-keys              {key}",
    "POST /_emulator/seed                  {lists: [...]}",
    "GET  /_emulator/state                 ?list_id=&limit=",
    "GET  /_emulator/member                ?list_id=&email=",
    ("POST /_emulator/events/<name>         user-unsubscribe|bounce|confirm-pending|user-signup|"
    "admin-update|admin-archive|campaign"),
    "POST /_emulator/run-batches",
    "POST /_emulator/flush-webhooks        {timeout?}",
    "GET  /_emulator/deliveries            ?clear=true",
    "POST /_emulator/clock                 {now?, advance?, real?}",
    "GET|POST /_emulator/faults            {rules?, rate?, kinds?, seed?, delay?, append?}",
    "GET  /_emulator/stats",
]


def control_call(emu, method, name, query, body):
    """Run one control endpoint; returns the JSON answer or None if unknown."""
    store = emu.store
    if name == "" and method == "GET":
        return {"endpoints": CONTROL_ENDPOINTS, "api_key": emu.default_key}
    if name == "reset" and method == "POST":
        emu.reset(body.get("settings"))
        return {"ok": True, "api_key": emu.default_key}
    if name == "settings":
        if method == "POST":
            with store.lock:
                update_settings(store.settings, body)
                store.listing_cache.clear()
        return dict(store.settings)
    if name == "api-keys" and method == "POST":
        key = body.get("key", "")
        if not admin.KEY_RE.match(key):
            raise ValueError("an API key looks like <32 hex>-us<N>")
        emu.keys.add(key)
        return {"api_keys": sorted(emu.keys)}
    if name == "seed" and method == "POST":
        return admin.seed(emu, body)
    if name == "state" and method == "GET":
        return admin.state(emu, query)
    if name == "member" and method == "GET":
        return admin.member(emu, query)
    if name.startswith("events/") and method == "POST":
        return admin.event(emu, name[len("events/"):], body)
    if name == "run-batches" and method == "POST":
        return {"finished": emu.batches.run_all()}
    if name == "flush-webhooks" and method == "POST":
        ok = emu.dispatcher.flush(float(body.get("timeout", 60)))
        return {"flushed": ok}
    if name == "deliveries":
        clear = str(query.get("clear", [body.get("clear", False)])[0]).lower() in ("1", "true")
        return {"deliveries": emu.dispatcher.dump(clear)}
    if name == "clock":
        if method == "POST":
            store.clock.set(body.get("now"), body.get("advance"), bool(body.get("real")))
        from .util import iso
        return {"now": iso(store.clock.now()), "frozen": store.clock.frozen is not None}
    if name == "faults":
        if method == "POST":
            emu.faults.configure(body.get("rules"), body.get("rate", 0.0), body.get("kinds"),
                                 body.get("seed"), body.get("delay", 5.0), bool(body.get("append")))
        return emu.faults.dump()
    if name == "stats" and method == "GET":
        with emu.counter_lock:
            return {"inflight": {k[-8:]: v for k, v in emu.inflight.items()},
                    "inflight_total": sum(emu.inflight.values()),
                    "max_inflight": emu.max_inflight, **emu.stats}
    return None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        import sys
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class EmulatorServer:
    """A running emulator on a TCP port, served from a background thread.

    ``EmulatorServer(port=0).start()`` picks a free port; ``url``,
    ``api_base``, ``api_key`` and ``control`` tell a client how to reach it.
    Usable as a context manager.
    """

    def __init__(self, host="127.0.0.1", port=0, seed_members=0, settings=None, api_key=None):
        self.host = host
        self.port = port
        self.seed_members = seed_members
        self.emulator = Emulator(settings, api_key)
        self.httpd = None
        self.thread = None
        self.seeded_list_id = None

    def start(self):
        """Bind, seed if asked, and serve in a daemon thread; returns self."""
        self.httpd = _HTTPServer((self.host, self.port), Handler)
        self.httpd.emulator = self.emulator
        self.port = self.httpd.server_address[1]
        self.emulator.store.base_url = self.url
        if self.seed_members:
            out = admin.seed(self.emulator, {"lists": [{"name": "Newsletter",
                                                        "generate_members": self.seed_members}]})
            self.seeded_list_id = out["list_ids"][0]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="emulator-http", daemon=True)
        self.thread.start()
        return self

    @property
    def url(self):
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_base(self):
        return self.url + "/3.0"

    @property
    def api_key(self):
        return self.emulator.default_key

    @property
    def control(self):
        from .control import EmulatorControl
        return EmulatorControl(self.url)

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        self.emulator.stop()

    def __enter__(self):
        if self.httpd is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
