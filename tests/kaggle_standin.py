"""A stand-in for the Kaggle API on loopback port 80, spoken to by the real `kaggle` client.

With KAGGLE_API_ENVIRONMENT=LOCALHOST the client POSTs to
http://localhost/api/v1/competitions.CompetitionApiService/<Method> with JSON bodies:
- DownloadDataFiles {"competitionName"}: as Kaggle does, a 302 to the file, which the client streams;
- StartSubmissionUpload {"competitionName", "fileName", ...}: a token and a URL the client PUTs the file to;
- CreateSubmission {"competitionName", "blobFileTokens", "submissionDescription"}: a message and a ref;
and http://localhost/api/v1/datasets.DatasetApiService/DownloadDataset {"ownerSlug", "datasetSlug"}: a 302.

What `pipeline package --push` calls (the client's conversation as recorded from kaggle 2.2.5):
- datasets.DatasetApiService/GetDatasetStatus {"ownerSlug", "datasetSlug"}: READY, or 404 for a new slug;
- blobs.BlobApiService/StartBlobUpload {"type", "name", "contentLength", ...}: a token and a URL the file is PUT to
  (a PUT with `Content-Range: bytes */N` asks whether that upload is complete: 200 if so, else 404, start over);
- datasets.DatasetApiService/CreateDataset {"ownerSlug", "slug", "title", "licenseName", "isPrivate", "files"} and
  CreateDatasetVersion {"ownerSlug", "datasetSlug", "body": {"versionNotes", "files"}}: ref, url, status or error;
- kernels.KernelsApiService/SaveKernel {"slug", "text", "enableInternet", "datasetDataSources", ...}: ref, url,
  versionNumber or error; GetKernelSessionStatus {"userName", "kernelSlug"}: status (RUNNING, COMPLETE, ERROR)
  and failureMessage; ListKernelSessionOutput: files (url, fileName) and log, each file then a plain GET.
"""
from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = "/api/v1/competitions.CompetitionApiService/"
DOWNLOAD = API + "DownloadDataFiles"
START_UPLOAD = API + "StartSubmissionUpload"
CREATE_SUBMISSION = API + "CreateSubmission"
DATASET_DOWNLOAD = "/api/v1/datasets.DatasetApiService/DownloadDataset"
DATASETS = "/api/v1/datasets.DatasetApiService/"
START_BLOB = "/api/v1/blobs.BlobApiService/StartBlobUpload"
KERNELS = "/api/v1/kernels.KernelsApiService/"
FILES = "/files/"
UPLOADS = "/upload/"
OUTPUT = "/output/"


@dataclass
class StandIn:
    competitions: dict[str, bytes] = field(default_factory=dict)  # name -> zip bytes
    datasets: dict[str, bytes] = field(default_factory=dict)  # "owner/slug" -> zip bytes
    status: int | None = None  # answer every API call with this error status
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Authorization)
    uploads: dict[str, bytes] = field(default_factory=dict)  # token -> uploaded file
    submissions: list[dict] = field(default_factory=list)  # CreateSubmission requests
    cut_downloads: int = 0  # this many file downloads stop halfway, as a dropped connection does
    blobs: dict[str, dict] = field(default_factory=dict)  # token -> {"name", "size", "data"} of dataset files
    owned: dict[str, list[dict]] = field(default_factory=dict)  # "owner/slug" -> versions: {"files", "notes", ...}
    dataset_error: str = ""  # CreateDataset and CreateDatasetVersion answer with this error (a slug taken, ...)
    kernels: dict[str, list[dict]] = field(default_factory=dict)  # "owner/slug" -> SaveKernel requests
    kernel_error: str = ""  # SaveKernel answers with this error (quota, ...)
    kernel_running: int = 0  # status polls that answer RUNNING before the run ends
    kernel_failure: str = ""  # the run ends in ERROR with this message
    kernel_output: dict[str, bytes] = field(default_factory=dict)  # files the run leaves in /kaggle/working
    kernel_log: str = ""

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
            publishing = self.path == START_BLOB or self.path.startswith((DATASETS, KERNELS)) and \
                self.path != DATASET_DOWNLOAD
            if self.path not in (DOWNLOAD, START_UPLOAD, CREATE_SUBMISSION, DATASET_DOWNLOAD) and not publishing:
                return self._json(404, {"code": 404, "message": f"no route {self.path}"})
            if not self.headers.get("Authorization"):
                return self._json(401, {"code": 401, "message": "Unauthenticated"})
            if state.status:
                return self._json(state.status, {"code": state.status, "message": "refused by the stand-in"})
            if publishing:
                return self._publish(self.path.rsplit("/", 1)[1], body)
            if self.path == DATASET_DOWNLOAD:
                ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
                if ref not in state.datasets:
                    return self._json(404, {"code": 404, "message": f"dataset {ref} not found"})
                return self._redirect(f"{FILES}datasets/{ref}.zip")
            name = body.get("competitionName")
            if name not in state.competitions:
                return self._json(404, {"code": 404, "message": f"competition {name} not found"})
            if self.path == START_UPLOAD:
                token = f"token-{len(state.uploads) + 1}"
                state.uploads[token] = b""
                return self._json(200, {"token": token, "createUrl": f"http://localhost{UPLOADS}{token}"})
            if self.path == CREATE_SUBMISSION:
                state.submissions.append(body)
                return self._json(200, {"message": f"Successfully submitted to {name}", "ref": 1000 + len(state.submissions)})
            self._redirect(f"{FILES}{name}.zip")

        def _publish(self, method: str, body: dict) -> None:
            """Datasets created and versioned from uploaded files; notebooks pushed, run and their output listed."""
            owner = body.get("ownerSlug") or body.get("userName")
            ref = f"{owner}/{body.get('datasetSlug') or body.get('slug') or body.get('kernelSlug')}"
            if method == "GetDatasetStatus":
                return self._json(200, {"status": "READY"}) if ref in state.owned else \
                    self._json(404, {"code": 404, "message": f"Dataset {ref} not found"})
            if method == "StartBlobUpload":
                token = uuid.uuid4().hex
                state.blobs[token] = {"name": body["name"], "size": body.get("contentLength", 0), "data": None}
                return self._json(200, {"token": token, "createUrl": f"http://localhost{UPLOADS}{token}"})
            if method in ("CreateDataset", "CreateDatasetVersion"):
                files = (body.get("body") or body).get("files", [])
                if state.dataset_error:
                    return self._json(200, {"error": state.dataset_error})
                if method == "CreateDataset" and ref in state.owned:
                    return self._json(200, {"error": f'The requested slug "{ref}" is already in use'})
                if method == "CreateDatasetVersion" and ref not in state.owned:
                    return self._json(404, {"code": 404, "message": f"Dataset {ref} not found"})
                received = {state.blobs[f["token"]]["name"]: state.blobs[f["token"]]["data"] for f in files}
                state.owned.setdefault(ref, []).append({"files": received, "private": body.get("isPrivate"),
                                                        "notes": (body.get("body") or {}).get("versionNotes")})
                return self._json(200, {"ref": ref, "url": f"http://localhost/datasets/{ref}", "status": "Ok"})
            if method == "SaveKernel":
                if state.kernel_error:
                    return self._json(200, {"error": state.kernel_error})
                state.kernels.setdefault(body["slug"], []).append(body)
                return self._json(200, {"ref": f"/code/{body['slug']}", "url": f"http://localhost/code/{body['slug']}",
                                        "versionNumber": len(state.kernels[body["slug"]])})
            if ref not in state.kernels:
                return self._json(404, {"code": 404, "message": f"Kernel {ref} not found"})
            if method == "GetKernelSessionStatus":
                if state.kernel_running > 0:
                    state.kernel_running -= 1
                    return self._json(200, {"status": "RUNNING"})
                return self._json(200, {"status": "ERROR", "failureMessage": state.kernel_failure}
                                  if state.kernel_failure else {"status": "COMPLETE"})
            if method == "ListKernelSessionOutput":
                return self._json(200, {"files": [{"url": f"http://localhost{OUTPUT}{name}", "fileName": name}
                                                  for name in state.kernel_output], "log": state.kernel_log})
            self._json(404, {"code": 404, "message": f"no route {self.path}"})

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_PUT(self) -> None:
            state.requests.append(("PUT", self.path, self.headers.get("Authorization")))
            token = self.path[len(UPLOADS):]
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.startswith(UPLOADS) and token in state.blobs:
                blob = state.blobs[token]
                if self.headers.get("Content-Range", "").startswith("bytes */"):  # is that upload complete?
                    done = blob["data"] is not None and len(blob["data"]) == blob["size"]
                    return self._json(200, {}) if done else self._json(404, {"code": 404, "message": "start over"})
                blob["data"] = data
                return self._json(200, {})
            if not self.path.startswith(UPLOADS) or token not in state.uploads:
                return self._json(404, {"code": 404, "message": "no such upload"})
            state.uploads[token] = data
            self._json(200, {})

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path, self.headers.get("Authorization")))
            if self.path.startswith(OUTPUT) and self.path[len(OUTPUT):] in state.kernel_output:
                data = state.kernel_output[self.path[len(OUTPUT):]]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                return self.wfile.write(data)
            name = self.path[len(FILES):].removesuffix(".zip") if self.path.startswith(FILES) else ""
            files = state.datasets if name.startswith("datasets/") else state.competitions
            name = name.removeprefix("datasets/")
            if name not in files:
                return self._json(404, {"code": 404, "message": "no such file"})
            data = files[name]
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Last-Modified", formatdate(usegmt=True))
            self.end_headers()
            if state.cut_downloads > 0:
                state.cut_downloads -= 1
                self.wfile.write(data[:len(data) // 2])
                self.close_connection = True
                return
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
    """Serve zips by hand: `python -m tests.kaggle_standin cifar-10=path/to/cifar-10.zip owner/data=data.zip`
    (a name with a slash is a dataset, any other a competition)."""
    import sys
    from pathlib import Path

    served = {name: Path(path).read_bytes() for name, path in (a.split("=", 1) for a in sys.argv[1:])}
    state = StandIn({k: v for k, v in served.items() if "/" not in k}, {k: v for k, v in served.items() if "/" in k})
    server = StandInServer(state)
    print(f"serving {', '.join(served)} on http://localhost:80; Ctrl-C stops", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
