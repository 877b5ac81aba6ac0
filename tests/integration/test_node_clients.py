"""Real GraphQL clients, in node, against a real `trendmap serve` process on loopback.

- graphql-http's server audit (GraphQL over HTTP): no MUST and no SHOULD failure;
- graphql-ws (graphql-transport-ws) and subscriptions-transport-ws (the legacy graphql-ws):
  a query, the ingestTrends mutation firing a hotFlows subscription, an error's message and a
  close code, over each;
- Apollo Client: its normalised cache (one object per id, windows and instants apart) and a
  subscription through GraphQLWsLink.

The scripts are tests/node/*.mjs; each prints its checks as JSON and exits non-zero when one
fails. Their packages are pinned by tests/node/package-lock.json: `.ci/run` installs them with
`npm ci`, and so does this module when node_modules is missing or older than the lock. Without
node or npm the tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from tests.support.factories import WRITE_KEY, spread, write_headers
from tests.support.servers import running_server

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
LOCK = NODE_DIR / "package-lock.json"
# npm writes it on every install (`npm ci` included): when the tree was last installed.
INSTALLED = NODE_DIR / "node_modules" / ".package-lock.json"


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _stale() -> bool:
    if not INSTALLED.exists():
        return True
    installed = INSTALLED.stat().st_mtime
    return any(installed < path.stat().st_mtime for path in (LOCK, NODE_DIR / "package.json"))


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with tests/node's packages installed as the lock pins them."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable(
            "node and npm are needed for the GraphQL client tests: apt-get install nodejs npm"
        )
    # One installer at a time (xdist workers share the checkout); the lock itself is the lock:
    # `npm ci` reads it and never writes it.
    with LOCK.open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _stale():
                done = subprocess.run(
                    [npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--quiet"],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                if done.returncode != 0:
                    _unavailable(f"npm ci --prefix tests/node failed:\n{done.stdout}{done.stderr}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return node


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the module, on SQLite and the in-process store, with a hot flow FR → BE
    in the last 24 hours (what the scripts' queries read)."""
    directory = tmp_path_factory.mktemp("node-clients")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{directory / 'trendmap.db'}",
        "API_KEYS": WRITE_KEY,
        "LOG_LEVEL": "WARNING",
    }
    for name in ("READ_API_KEYS", "REDIS_URL", "JWT_SECRET", "JWT_PUBLIC_KEY"):
        env.pop(name, None)
    with running_server(directory, env) as served:
        response = httpx.post(
            f"{served.base}/v1/trends",
            json=spread("FR", "BE", ["Alpha", "Beta", "Gamma"]),
            headers=write_headers(),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        yield served.base
    # Whatever the clients sent, the server answered it: no stack trace in its output.
    assert "Traceback" not in served.output, served.output


def run_script(node: str, script: str, base: str) -> dict[str, Any]:
    """Run tests/node/<script> against ``base``; its JSON, printed (pytest shows it on failure
    and with -s), after checking that it exited 0."""
    # The scripts wait for the server to hold one subscription more than when they started: a
    # previous script's, still closing, must not be counted.
    deadline = time.monotonic() + 10
    while httpx.get(f"{base}/health/ready", timeout=5).json()["checks"]["subscriptions"]["active"]:
        assert time.monotonic() < deadline, "the previous script's subscriptions never closed"
        time.sleep(0.02)
    done = subprocess.run(
        [node, script, base, WRITE_KEY],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        results: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"{script} printed no JSON (exit {done.returncode}):\n{done.stdout}{done.stderr}"
        )
    print(json.dumps(results, indent=2))
    failed = [check for check in results["checks"] if not check["ok"]]
    assert done.returncode == 0 and not failed, json.dumps(failed, indent=2) + done.stderr
    return results


def passed(results: dict[str, Any]) -> set[str]:
    return {check["name"] for check in results["checks"] if check["ok"]}


def test_the_graphql_http_audit_finds_no_must_or_should_failure(node: str, server: str) -> None:
    results = run_script(node, "audit.mjs", server)
    # Warnings (SHOULD) count as failures; MAY notices are listed, and allowed.
    assert (results["errors"], results["warnings"]) == (0, 0), results["checks"]
    assert results["audits"] >= 60  # the whole audit ran
    assert results["ok"] + results["notices"] == results["audits"]


def test_graphql_ws_and_subscriptions_transport_ws(node: str, server: str) -> None:
    results = run_script(node, "ws_clients.mjs", server)
    expected = {"no known subprotocol closes with 4406"} | {
        f"{protocol}: {check}"
        for protocol in ("graphql-transport-ws", "graphql-ws (legacy)")
        for check in (
            "query",
            "mutation fires hotFlows",
            "a validation error keeps its message",
            "a bad credential closes with 4403",
        )
    }
    assert passed(results) == expected
    events = {
        check["name"]: check["detail"]["event"]
        for check in results["checks"]
        if check["name"].endswith("mutation fires hotFlows")
    }
    assert [(e["fromCountry"], e["toCountry"]) for e in events.values()] == [
        ("PT", "ES"),
        ("SE", "NO"),
    ]


def test_apollo_client_normalises_by_id_and_subscribes_through_graphql_ws_link(
    node: str, server: str
) -> None:
    results = run_script(node, "apollo.mjs", server)
    assert passed(results) == {
        "cache-first: A, B, A, B, A make 2 requests",
        "one object per id: two queries of one flow fill one cache entry",
        "two windows and two instants never merge",
        "a validation error keeps its message",
        "a subscription through GraphQLWsLink, fired by a mutation",
    }
    by_name = {check["name"]: check for check in results["checks"]}
    assert by_name["cache-first: A, B, A, B, A make 2 requests"]["detail"] == {"requests": 2}
