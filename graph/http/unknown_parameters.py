"""Unknown query parameters: named in an answer's ``warnings``, never refused.

Legacy clients add cache-busting parameters, so a parameter no route knows is ignored; but a
typo (``window=6h`` for ``time_window=6h``) must not pass for a deliberate default, so each one
is named, with the closest known parameter. The parameters a route knows are the ones its
OpenAPI operation declares (graph.http.openapi): one list for the document and for this.
"""

from __future__ import annotations

import difflib

from starlette.requests import Request

from graph.http.openapi import openapi_document
from graph.settings import Settings

# By path template: the names of the query parameters its operations declare. The names do not
# depend on the settings (only maxima and defaults do), so they are read once.
_known: dict[str, frozenset[str]] = {}


def known_parameters(path: str, settings: Settings) -> frozenset[str]:
    """The query parameters the OpenAPI document declares for ``path`` (any method)."""
    if not _known:
        for route, operations in openapi_document(settings)["paths"].items():
            _known[route] = frozenset(
                parameter["name"]
                for operation in operations.values()
                for parameter in operation.get("parameters", ())
                if parameter.get("in") == "query"
            )
    return _known.get(path, frozenset())


def unknown_parameter_warnings(request: Request, settings: Settings) -> list[str]:
    """One warning per distinct unknown query parameter, in the order they were sent."""
    if not request.query_params:
        return []
    route = request.scope.get("route")
    known = known_parameters(getattr(route, "path", request.url.path), settings)
    warnings = []
    for name in dict.fromkeys(request.query_params.keys()):
        if name in known:
            continue
        warning = f"unknown parameter {name!r} ignored"
        close = difflib.get_close_matches(name, sorted(known), n=1)
        if close:
            warning += f"; did you mean {close[0]!r}?"
        warnings.append(warning)
    return warnings
