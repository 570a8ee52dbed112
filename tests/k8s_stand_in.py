"""A loopback stand-in for the Kubernetes API that records what is submitted to it.

No API server can run on the development machines (no kube-apiserver, kind or Docker engine), and
ZenML has no dry-run. This HTTP server answers the requests the ``kubernetes`` Python client makes
for namespaced objects (create, read, list with label/field selectors, merge-patch, replace,
delete) from an in-memory store, and keeps every POST/PUT/PATCH body as it was sent, so a test can
validate the objects against the Kubernetes schema.

It stands in for the controllers too, in the smallest way that lets ZenML's orchestrator walk the
DAG: ``run_job_pod`` gives a Job the Pod that the Job controller would create (the test then runs
that pod's command locally), and Jobs that carry ZenML's step annotation are reported
``Complete`` as soon as they are created. No step container ever runs.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

# ZenML marks the Jobs that run one step with this annotation.
from zenml.integrations.kubernetes.constants import STEP_NAME_ANNOTATION_KEY

# plural -> (kind, apiVersion) for everything ZenML's Kubernetes orchestrator touches.
RESOURCES: dict[str, tuple[str, str]] = {
    "namespaces": ("Namespace", "v1"),
    "pods": ("Pod", "v1"),
    "secrets": ("Secret", "v1"),
    "serviceaccounts": ("ServiceAccount", "v1"),
    "configmaps": ("ConfigMap", "v1"),
    "services": ("Service", "v1"),
    "rolebindings": ("RoleBinding", "rbac.authorization.k8s.io/v1"),
    "roles": ("Role", "rbac.authorization.k8s.io/v1"),
    "jobs": ("Job", "batch/v1"),
    "cronjobs": ("CronJob", "batch/v1"),
}

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)
_NAMESPACE_ITEM = re.compile(r"^/api/v1/namespaces/(?P<name>[^/]+)$")


@dataclass
class Submission:
    """One write request as the client sent it."""

    method: str
    path: str
    kind: str
    api_version: str
    namespace: str | None
    body: dict[str, Any]


@dataclass(frozen=True)
class Request:
    """One API request as RBAC sees it: verb, API group, resource (with subresource)."""

    verb: str
    group: str
    resource: str


@dataclass
class _Store:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    submissions: list[Submission] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386), which is what the client's dict bodies mean for our use."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _matches(obj: dict[str, Any], label_selector: str | None, field_selector: str | None) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (label_selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    for term in filter(None, (field_selector or "").split(",")):
        key, _, value = term.partition("=")
        node: Any = obj
        for part in key.strip().split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node != value.strip():
            return False
    return True


def _apply_defaults(kind: str, obj: dict[str, Any]) -> None:
    """The defaults the API server fills in that the client needs to read its answer back.

    ``podFailurePolicy`` patterns on pod conditions may leave out ``status`` (the server defaults
    it to "True"); the Python client (ZenML pins it below 26) rejects a response without it.
    """
    spec = obj.get("spec") or {}
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        for pattern in rule.get("onPodConditions") or []:
            pattern.setdefault("status", "True")


class KubeStandIn:
    """The stand-in server; use as a context manager or call ``start``/``stop``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._store = _Store()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The API server URL (``http://127.0.0.1:PORT``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> KubeStandIn:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, context: str = "hiergan-stand-in") -> Path:
        """A kubeconfig whose ``context`` points at this server (token auth, plain HTTP)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "stand-in"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    @property
    def requests(self) -> list[Request]:
        """Every request received, as (verb, group, resource), in order."""
        with self._store.lock:
            return list(self._store.requests)

    @property
    def submissions(self) -> list[Submission]:
        """Every create/replace/patch body received, in order."""
        with self._store.lock:
            return list(self._store.submissions)

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """The stored objects of one kind (after patches)."""
        with self._store.lock:
            return [copy.deepcopy(o) for k, o in self._store.objects.items() if k[0] == kind]

    def run_job_pod(self, namespace: str, job_name: str, pod_name: str) -> dict[str, Any]:
        """Create the Pod the Job controller would start for ``job_name``, named ``pod_name``.

        Returns:
            The pod's container spec (command, args, env, image) so the caller can run it.
        """
        with self._store.lock:
            job = self._store.objects[("Job", namespace, job_name)]
            template = copy.deepcopy(job["spec"]["template"])
            labels = {**(template["metadata"].get("labels") or {}), "job-name": job_name}
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": namespace,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": _now(),
                    "labels": labels,
                    "annotations": template["metadata"].get("annotations") or {},
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": job_name,
                            "uid": job["metadata"]["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": template["spec"],
                "status": {"phase": "Running"},
            }
            self._store.objects[("Pod", namespace, pod_name)] = pod
            job["status"] = {"active": 1, "startTime": _now()}
            return copy.deepcopy(template["spec"]["containers"][0])

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        store = self._store

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # quiet: the test prints its own summary

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._reply(
                    code,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": message,
                        "reason": reason,
                        "code": code,
                    },
                )

            def _record(self) -> None:
                """The request as RBAC sees it (``get`` an item, ``list`` a collection ...)."""
                url = urlparse(self.path)
                m = _PATH.match(url.path)
                if _NAMESPACE_ITEM.match(url.path):
                    group, resource, name, sub = "", "namespaces", "x", None
                elif m:
                    group, resource = m["group"] or "", m["plural"]
                    name, sub = m["name"], m["sub"]
                else:
                    return
                verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(self.command)
                if self.command == "GET":
                    watch = "watch=true" in url.query.lower()
                    verb = "get" if name else ("watch" if watch else "list")
                elif self.command == "DELETE":
                    verb = "delete" if name else "deletecollection"
                with store.lock:
                    store.requests.append(
                        Request(
                            verb or self.command, group, f"{resource}/{sub}" if sub else resource
                        )
                    )

            def _route(self) -> tuple[str, str, str | None, str | None, str | None] | None:
                self._record()
                path = urlparse(self.path).path
                if m := _NAMESPACE_ITEM.match(path):
                    return "Namespace", "v1", None, m["name"], None
                m = _PATH.match(path)
                if not m or m["plural"] not in RESOURCES:
                    return None
                kind, api_version = RESOURCES[m["plural"]]
                return kind, api_version, m["ns"], m["name"], m["sub"]

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _not_found(self) -> None:
                self._status(404, "NotFound", f"{self.path} not found")

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                route = self._route()
                if route is None:
                    return self._not_found()
                kind, api_version, ns, name, _ = route
                with store.lock:
                    if name is not None:
                        obj = store.objects.get((kind, ns or "", name))
                        return self._reply(200, obj) if obj else self._not_found()
                    query = parse_qs(urlparse(self.path).query)
                    items = [
                        o
                        for (k, n, _), o in store.objects.items()
                        if k == kind
                        and (ns is None or n == ns)
                        and _matches(
                            o,
                            query.get("labelSelector", [None])[0],
                            query.get("fieldSelector", [None])[0],
                        )
                    ]
                    self._reply(
                        200,
                        {
                            "kind": f"{kind}List",
                            "apiVersion": api_version,
                            "metadata": {"resourceVersion": "1"},
                            "items": items,
                        },
                    )

            def do_POST(self) -> None:  # noqa: N802
                route = self._route()
                if route is None:
                    return self._not_found()
                kind, api_version, ns, name, _ = route
                body = self._body()
                with store.lock:
                    store.submissions.append(
                        Submission("POST", self.path, kind, api_version, ns, copy.deepcopy(body))
                    )
                    meta = body.setdefault("metadata", {})
                    if not meta.get("name") and meta.get("generateName"):
                        meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                    key = (kind, ns or "", meta.get("name", ""))
                    if key in store.objects:
                        return self._status(409, "AlreadyExists", f"{kind} {key[2]} exists")
                    body.setdefault("kind", kind)
                    body.setdefault("apiVersion", api_version)
                    meta.update(
                        uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion="1"
                    )
                    if ns:
                        meta["namespace"] = ns
                    _apply_defaults(kind, body)
                    if kind == "Job":
                        # Step Jobs "finish" at once so the orchestrator submits the next ones.
                        if STEP_NAME_ANNOTATION_KEY in (meta.get("annotations") or {}):
                            body["status"] = {
                                "succeeded": 1,
                                "conditions": [
                                    {"type": "Complete", "status": "True", "message": "stand-in"}
                                ],
                            }
                        else:
                            body["status"] = {}
                    store.objects[key] = body
                    self._reply(201, body)

            def _write(self, method: str) -> None:
                route = self._route()
                if route is None:
                    return self._not_found()
                kind, api_version, ns, name, _ = route
                body = self._body()
                with store.lock:
                    store.submissions.append(
                        Submission(method, self.path, kind, api_version, ns, copy.deepcopy(body))
                    )
                    key = (kind, ns or "", name or "")
                    if key not in store.objects:
                        return self._not_found()
                    if method == "PUT":
                        store.objects[key] = body
                    else:
                        _merge(store.objects[key], body)
                    self._reply(200, store.objects[key])

            def do_PATCH(self) -> None:  # noqa: N802
                self._write("PATCH")

            def do_PUT(self) -> None:  # noqa: N802
                self._write("PUT")

            def do_DELETE(self) -> None:  # noqa: N802
                route = self._route()
                if route is None:
                    return self._not_found()
                kind, _, ns, name, _ = route
                with store.lock:
                    if store.objects.pop((kind, ns or "", name or ""), None) is None:
                        return self._not_found()
                self._reply(
                    200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}
                )

        return Handler
