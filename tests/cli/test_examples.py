"""docs/examples/ against the running service: regenerated and compared, so it cannot drift."""

from __future__ import annotations

import difflib
from pathlib import Path

import graphql
import pytest
from starlette.routing import Route

from graph.cli import main as cli
from graph.cli.examples.catalogue import EXAMPLES
from graph.cli.examples.kinds import CLOCK, GraphQL, Rest, Subscription, normalise, pretty
from graph.graphql.schema import make_schema
from graph.http.app import create_app
from tests.support.factories import make_settings

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "examples"
FIX = "Run `trendmap examples` from the repository root and commit docs/examples/."
# Paths with no example, and why: the index points to the OpenAPI document instead of copying
# it; the map page is HTML for browsers; the metrics are counters that change with every
# request.
NO_EXAMPLE = {
    ("GET", "/openapi.json"),
    ("GET", "/"),
    ("GET", "/metrics"),
    ("GET", "/graphql/ide/{digest}/{name}"),  # GraphiQL's files, named by its page
}


def _files(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples written now by the command, over a stale document left from before."""
    output = tmp_path_factory.mktemp("examples")
    (output / "rest").mkdir()
    (output / "rest" / "renamed-long-ago.md").write_text("stale\n")
    assert cli.main(["examples", "--output", str(output)]) == 0
    return output


def test_committed_examples_match_the_service(regenerated: Path) -> None:
    """Fails with a diff, and the command that fixes it, when docs/examples/ is out of date."""
    committed, fresh = _files(COMMITTED), _files(regenerated)
    problems = [f"missing from docs/examples/: {name}" for name in sorted(fresh.keys() - committed)]
    problems += [f"no longer generated: {name}" for name in sorted(committed.keys() - fresh)]
    diff: list[str] = []
    for name in sorted(committed.keys() & fresh.keys()):
        diff += difflib.unified_diff(
            committed[name].splitlines(),
            fresh[name].splitlines(),
            f"docs/examples/{name} (committed)",
            f"docs/examples/{name} (what the service returns now)",
            lineterm="",
        )
    if len(diff) > 200:
        diff = [*diff[:200], f"... and {len(diff) - 200} more diff lines"]
    assert not problems and not diff, "\n".join(
        ["docs/examples/ no longer matches the service.", FIX, *problems, *diff]
    )


def test_the_command_removes_stale_documents_and_writes_the_index(regenerated: Path) -> None:
    assert not (regenerated / "rest" / "renamed-long-ago.md").exists()
    index = (regenerated / "README.md").read_text()
    for example in EXAMPLES:
        assert f"]({example.file})" in index
        assert (regenerated / example.file).read_text().startswith(f"# {example.title}\n")


def test_every_endpoint_has_an_example(tmp_path: Path) -> None:
    """A new route needs an example (an entry in graph.cli.examples.catalogue) or a reason here."""
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'a.db'}"))
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path != "/graphql"
        for method in route.methods or ()
        if method != "HEAD"
    }
    shown = {(e.method, e.path) for e in EXAMPLES if isinstance(e, Rest)}
    assert shown <= served
    assert served - shown - NO_EXAMPLE == set()


def test_every_graphql_operation_has_an_example(tmp_path: Path) -> None:
    schema = graphql.build_schema(make_schema(make_settings("sqlite://")).as_str())
    roots = {"query": schema.query_type, "mutation": schema.mutation_type}
    roots["subscription"] = schema.subscription_type
    served = {(kind, name) for kind, root in roots.items() if root for name in root.fields}
    shown = set()
    for example in EXAMPLES:
        if isinstance(example, GraphQL | Subscription):
            for operation in graphql.parse(example.query).definitions:
                assert isinstance(operation, graphql.OperationDefinitionNode)
                for field in operation.selection_set.selections:
                    assert isinstance(field, graphql.FieldNode)
                    shown.add((operation.operation.value, field.name.value))
    assert shown == served


def test_normalise_hides_only_what_the_clock_sets_at_request_time() -> None:
    answer = {
        "timestamp": "2026-11-20T09:00:00+00:00",  # a record's: data, kept
        "computed_at": "2026-12-01T08:15:42.123456+00:00",  # when the server answered
        "heat": 0.12345678901234567,
        "count": 3,
        "label": "2026-12-01 is not a time",
    }
    assert normalise(answer) == {
        "timestamp": "2026-11-20T09:00:00+00:00",
        "computed_at": CLOCK.isoformat(),
        "heat": 0.123456789,
        "count": 3,
        "label": "2026-12-01 is not a time",
    }


def test_pretty_keeps_short_values_on_one_line() -> None:
    text = pretty({"flows": [{"from_country": "ES", "shared_topics": ["a", "b"]}] * 4})
    assert text.splitlines()[:3] == [
        "{",
        '  "flows": [',
        '    {"from_country": "ES", "shared_topics": ["a", "b"]},',
    ]
