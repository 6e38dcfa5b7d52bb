"""A stand-in for the Kaggle API on loopback port 80, spoken to by the real `kaggle` client.

With KAGGLE_API_ENVIRONMENT=LOCALHOST the client POSTs to
http://localhost/api/v1/competitions.CompetitionApiService/DownloadDataFiles with JSON
{"competitionName": ...}; as Kaggle does, the answer is a 302 to the file, which the client
follows and streams.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DOWNLOAD = "/api/v1/competitions.CompetitionApiService/DownloadDataFiles"
FILES = "/files/"


@dataclass
class StandIn:
    competitions: dict[str, bytes] = field(default_factory=dict)  # name -> zip bytes
    status: int | None = None  # answer every API call with this error status
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Authorization)

    def reset(self) -> None:
        self.competitions.clear()
        self.status = None
        self.requests.clear()

    def downloads(self) -> int:
        return sum(1 for method, path, _ in self.requests if method == "GET" and path.startswith(FILES))


def _handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            state.requests.append(("POST", self.path, self.headers.get("Authorization")))
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path != DOWNLOAD:
                return self._json(404, {"code": 404, "message": f"no route {self.path}"})
            if not self.headers.get("Authorization"):
                return self._json(401, {"code": 401, "message": "Unauthenticated"})
            if state.status:
                return self._json(state.status, {"code": state.status, "message": "refused by the stand-in"})
            name = body.get("competitionName")
            if name not in state.competitions:
                return self._json(404, {"code": 404, "message": f"competition {name} not found"})
            self.send_response(302)
            self.send_header("Location", f"{FILES}{name}.zip")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path, self.headers.get("Authorization")))
            name = self.path[len(FILES):].removesuffix(".zip") if self.path.startswith(FILES) else None
            if name not in state.competitions:
                return self._json(404, {"code": 404, "message": "no such file"})
            data = state.competitions[name]
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Last-Modified", formatdate(usegmt=True))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class StandInServer:
    """Serves a StandIn on 127.0.0.1:80 in a background thread until `stop()`."""

    def __init__(self, state: StandIn, port: int = 80):
        self.state = state
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(state))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def main() -> None:
    """Serve competition zips by hand: `python -m tests.kaggle_standin cifar-10=path/to/cifar-10.zip`."""
    import sys
    from pathlib import Path

    state = StandIn({name: Path(path).read_bytes() for name, path in (a.split("=", 1) for a in sys.argv[1:])})
    server = StandInServer(state)
    print(f"serving {', '.join(state.competitions)} on http://localhost:80; Ctrl-C stops", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
