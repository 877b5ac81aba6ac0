"""Credentials: API keys and JWTs (HS256, RS256), over REST, GraphQL and WebSockets.

Tokens are real: made with PyJWT (or by hand, for what PyJWT refuses to make) and an RSA key
pair generated with ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from graph.auth import (
    Credentials,
    connection_authorization,
    credentials_for,
    require_connection,
    require_read,
    require_write,
)
from graph.core.errors import Forbidden, TrendmapError, Unauthenticated
from graph.http.app import create_app
from tests.support.factories import (
    READ_KEY,
    WRITE_KEY,
    as_input,
    make_settings,
    record,
    write_headers,
)

SECRET = "hs256-test-secret-0123456789abcdef-0123456789"
OTHER_SECRET = "another-secret-of-enough-length-0123456789abcdef"
ISSUER = "https://issuer.test/"
AUDIENCE = "trendmap"

INGEST = """mutation($trends: [TrendInput!]!) { ingestTrends(trends: $trends) { received } }"""
HOT_FLOWS = """subscription { hotFlows(timeWindow: "24h", threshold: 0.5, includeCurrent: true)
  { fromCountry toCountry } }"""


@dataclass(frozen=True)
class KeyPair:
    private: rsa.RSAPrivateKey
    public_pem: str


def _key_pair(bits: int = 2048) -> KeyPair:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private, pem.decode())


@pytest.fixture(scope="module")
def rsa_keys() -> KeyPair:
    return _key_pair()


@pytest.fixture(scope="module")
def other_rsa_keys() -> KeyPair:
    return _key_pair()


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for a writer; an override of None drops the claim."""
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "ingest-bot",
        "iat": now,
        "exp": now + 300,
        "scope": "trends:write",
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def hs256(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm="HS256")


def rs256(keys: KeyPair, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), keys.private, algorithm="RS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(alg: str, payload: dict[str, Any], hmac_key: bytes | None = None) -> str:
    """A token PyJWT would refuse to make: ``alg: none``, or HMAC with a PEM as the secret."""
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(payload).encode())}"
    signature = b""
    if hmac_key is not None:
        signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def bearer(token: str) -> str:
    return f"Bearer {token}"


def jwt_settings(rsa_keys: KeyPair | None = None, **overrides: Any) -> dict[str, Any]:
    """Settings overrides for a server taking JWTs (HS256 always, RS256 with a key pair)."""
    values: dict[str, Any] = {
        "jwt_secret": SECRET,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
    }
    if rsa_keys is not None:
        values["jwt_public_key"] = rsa_keys.public_pem
    values.update(overrides)
    return values


def creds(**overrides: Any) -> Credentials:
    return credentials_for(make_settings("sqlite://", **overrides))


def refusal(call: Any, *args: Any) -> TrendmapError:
    with pytest.raises(TrendmapError) as caught:
        call(*args)
    return caught.value


# -- API keys: the behaviour before JWTs, unchanged ------------------------------------------


def test_api_keys_write_and_read_as_before() -> None:
    keys = creds(read_api_keys=(READ_KEY,))
    require_write(bearer(WRITE_KEY), keys)
    require_read(bearer(WRITE_KEY), keys)
    require_read(bearer(READ_KEY), keys)
    missing = refusal(require_write, None, keys)
    assert isinstance(missing, Unauthenticated)
    assert missing.detail == "writes need a credential: 'Authorization: Bearer <key>'"
    unknown = refusal(require_write, bearer("nope"), keys)
    assert isinstance(unknown, Unauthenticated)
    assert unknown.detail == "the credential is not valid"
    read_key = refusal(require_write, bearer(READ_KEY), keys)
    assert isinstance(read_key, Forbidden)
    assert read_key.detail == "this credential may read but not write"
    assert isinstance(refusal(require_write, f"Basic {WRITE_KEY}", keys), Unauthenticated)
    assert isinstance(refusal(require_read, None, keys), Unauthenticated)
    assert isinstance(refusal(require_read, bearer("nope"), keys), Unauthenticated)


def test_writes_are_disabled_without_api_keys_or_jwt_settings() -> None:
    error = refusal(require_write, bearer(WRITE_KEY), creds(api_keys=()))
    assert isinstance(error, Forbidden)
    assert "API_KEYS" in error.detail


def test_reads_are_public_without_read_keys() -> None:
    require_read(None, creds())
    require_read(None, creds(**jwt_settings()))


def test_a_jwt_shaped_token_is_just_unknown_without_jwt_settings() -> None:
    error = refusal(require_write, bearer(hs256()), creds())
    assert isinstance(error, Unauthenticated)
    assert error.detail == "the credential is not valid"


# -- JWTs ------------------------------------------------------------------------------------


def test_jwt_settings_enable_writes_without_api_keys(rsa_keys: KeyPair) -> None:
    keys = creds(api_keys=(), **jwt_settings(rsa_keys))
    require_write(bearer(hs256()), keys)
    require_write(bearer(rs256(rsa_keys)), keys)
    # Enabled, so a missing credential is a 401, not "writes are disabled".
    assert isinstance(refusal(require_write, None, keys), Unauthenticated)


def test_rs256_alone(rsa_keys: KeyPair) -> None:
    keys = creds(**jwt_settings(rsa_keys, jwt_secret=None))
    require_write(bearer(rs256(rsa_keys)), keys)
    assert refusal(require_write, bearer(hs256()), keys).detail == (
        "token algorithm is not accepted"
    )


def test_hs256_alone_refuses_rs256(rsa_keys: KeyPair) -> None:
    error = refusal(require_write, bearer(rs256(rsa_keys)), creds(**jwt_settings()))
    assert error.detail == "token algorithm is not accepted"


# Times are seconds from when the test runs, not from when it was collected: a long suite runs
# some tests minutes after collection, when a "future" time from then is already past.
_RELATIVE_CLAIMS = ("exp", "nbf", "iat")


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"exp": -120}, "token expired"),
        ({"nbf": 120}, "token not yet valid"),
        ({"iat": 120}, "token not yet valid"),
        ({"iss": "https://elsewhere.test/"}, "token issuer is not accepted"),
        ({"aud": "another-service"}, "token audience is not accepted"),
        ({"exp": None}, "token lacks the 'exp' claim"),
        ({"iss": None}, "token lacks the 'iss' claim"),
        ({"aud": None}, "token lacks the 'aud' claim"),
    ],
)
def test_claims_that_make_a_token_invalid(
    rsa_keys: KeyPair, overrides: dict[str, Any], detail: str
) -> None:
    keys = creds(**jwt_settings(rsa_keys))
    now = int(time.time())
    overrides = {
        name: now + value if name in _RELATIVE_CLAIMS and value is not None else value
        for name, value in overrides.items()
    }
    for token in (hs256(**overrides), rs256(rsa_keys, **overrides)):
        error = refusal(require_write, bearer(token), keys)
        assert isinstance(error, Unauthenticated)
        assert error.detail == detail


def test_leeway_forgives_small_clock_skew_only() -> None:
    just_expired = bearer(hs256(exp=int(time.time()) - 10))
    require_write(just_expired, creds(**jwt_settings()))  # default leeway: 30 s
    error = refusal(require_write, just_expired, creds(**jwt_settings(jwt_leeway_seconds=0)))
    assert error.detail == "token expired"


def test_audience_may_be_one_of_a_list() -> None:
    require_write(bearer(hs256(aud=["other", AUDIENCE])), creds(**jwt_settings()))


def test_bad_signatures(rsa_keys: KeyPair, other_rsa_keys: KeyPair) -> None:
    keys = creds(**jwt_settings(rsa_keys))
    for token in (hs256(OTHER_SECRET), rs256(other_rsa_keys)):
        error = refusal(require_write, bearer(token), keys)
        assert isinstance(error, Unauthenticated)
        assert error.detail == "token signature is invalid"
    tampered = hs256().rsplit(".", 1)[0] + "." + _b64(b"x" * 32)
    assert refusal(require_write, bearer(tampered), keys).detail == "token signature is invalid"


def test_alg_none_is_refused(rsa_keys: KeyPair) -> None:
    keys = creds(**jwt_settings(rsa_keys))
    for alg in ("none", "None", "NONE"):
        error = refusal(require_write, bearer(handmade(alg, claims())), keys)
        assert isinstance(error, Unauthenticated)
        assert error.detail == "token algorithm is not accepted"


def test_algorithm_confusion_is_refused(rsa_keys: KeyPair) -> None:
    """An HS256 token whose HMAC secret is the (public) RSA key never verifies."""
    forged = bearer(handmade("HS256", claims(), hmac_key=rsa_keys.public_pem.encode()))
    rs256_only = creds(**jwt_settings(rsa_keys, jwt_secret=None))
    assert refusal(require_write, forged, rs256_only).detail == "token algorithm is not accepted"
    # With both keys, HS256 is checked against JWT_SECRET and nothing else.
    both = creds(**jwt_settings(rsa_keys))
    assert refusal(require_write, forged, both).detail == "token signature is invalid"


def test_garbage_that_looks_like_a_jwt(rsa_keys: KeyPair) -> None:
    keys = creds(**jwt_settings(rsa_keys))
    for token in ("a.b.c", "eyJhbGciOiJIUzI1NiJ9.!!!.x", "..", "x.y"):
        error = refusal(require_write, bearer(token), keys)
        assert isinstance(error, Unauthenticated)
        assert error.detail in {"token is malformed", "the credential is not valid"}


def test_scopes(rsa_keys: KeyPair) -> None:
    keys = creds(**jwt_settings(rsa_keys, read_api_keys=(READ_KEY,)))
    require_write(bearer(hs256(scope="openid trends:write profile")), keys)
    require_write(bearer(rs256(rsa_keys, scope=None, scp=["trends:write"])), keys)
    require_write(bearer(hs256(scope=None, scp="trends:read trends:write")), keys)
    for writer in (hs256(), hs256(scope="trends:read")):
        require_read(bearer(writer), keys)
    # A list in `scope` is taken like one in `scp`: lenient in form, exact in names.
    require_write(bearer(hs256(scope=["trends:write"])), keys)
    without = [
        hs256(scope=None),
        hs256(scope="openid profile"),
        hs256(scope="trends:writer trends"),
        hs256(scope=None, scp=[1, {"x": "trends:write"}]),
    ]
    for token in without:
        error = refusal(require_write, bearer(token), keys)
        assert isinstance(error, Forbidden), token
        assert error.detail == "the token does not grant the 'trends:write' scope"
        assert isinstance(refusal(require_read, bearer(token), keys), Forbidden)


def test_read_scope_reads_but_cannot_write() -> None:
    keys = creds(**jwt_settings(read_api_keys=(READ_KEY,)))
    reader = bearer(hs256(scope="trends:read"))
    require_read(reader, keys)
    error = refusal(require_write, reader, keys)
    assert isinstance(error, Forbidden)
    assert error.detail == "this credential may read but not write"


# -- configuration ---------------------------------------------------------------------------


def test_public_key_from_a_file_or_one_line(tmp_path: Path, rsa_keys: KeyPair) -> None:
    pem_file = tmp_path / "jwt.pem"
    pem_file.write_text(rsa_keys.public_pem)
    one_line = rsa_keys.public_pem.strip().replace("\n", "\\n")
    for value in (str(pem_file), one_line):
        keys = creds(**jwt_settings(jwt_secret=None, jwt_public_key=value))
        require_write(bearer(rs256(rsa_keys)), keys)


def _pem(key: Any) -> str:
    return key.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def test_unusable_jwt_settings_fail_at_startup(tmp_path: Path, rsa_keys: KeyPair) -> None:
    private_pem = rsa_keys.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    bad: list[tuple[dict[str, Any], str]] = [
        ({"jwt_secret": "short"}, "JWT_SECRET must be at least 32 bytes"),
        ({"jwt_secret": rsa_keys.public_pem}, "JWT_SECRET looks like a public key"),
        ({"jwt_issuer": None}, "JWT_ISSUER and JWT_AUDIENCE must be set"),
        ({"jwt_audience": ""}, "JWT_ISSUER and JWT_AUDIENCE must be set"),
        ({"jwt_public_key": str(tmp_path / "missing.pem")}, "cannot read the PEM file"),
        ({"jwt_public_key": "-----BEGIN PUBLIC KEY-----\nnope"}, "not a PEM public key"),
        ({"jwt_public_key": private_pem}, "not a PEM public key"),
        ({"jwt_public_key": _pem(ec.generate_private_key(ec.SECP256R1()).public_key())}, "RSA"),
        ({"jwt_public_key": _key_pair(1024).public_pem}, "at least 2048 bits"),
    ]
    for overrides, message in bad:
        settings = make_settings("sqlite://", **jwt_settings(**overrides))
        with pytest.raises(ValueError, match=message):
            credentials_for(settings)
        with pytest.raises(ValueError, match=message):
            create_app(settings)


def test_the_secret_stays_out_of_the_settings_repr() -> None:
    assert SECRET not in repr(make_settings("sqlite://", **jwt_settings()))


# -- WebSocket credentials -------------------------------------------------------------------


def test_connection_init_payload_credentials() -> None:
    assert connection_authorization(None) is None
    assert connection_authorization({}) is None
    assert connection_authorization({"other": 1}) is None
    assert connection_authorization({"Authorization": "Bearer x"}) == "Bearer x"
    assert connection_authorization({"authorization": "Bearer x"}) == "Bearer x"
    assert connection_authorization({"token": "x"}) == "Bearer x"
    for payload in ({"Authorization": 5}, {"token": ["x"]}, {"token": " "}):
        with pytest.raises(Unauthenticated):
            connection_authorization(payload)


def test_require_connection() -> None:
    public = creds(**jwt_settings())
    require_connection(None, public)
    require_connection(bearer(hs256(scope=None)), public)  # valid; scopes matter per operation
    assert isinstance(refusal(require_connection, bearer("nope"), public), Unauthenticated)
    expired = bearer(hs256(exp=int(time.time()) - 120))
    assert refusal(require_connection, expired, public).detail == "token expired"
    guarded = creds(**jwt_settings(read_api_keys=(READ_KEY,)))
    require_connection(bearer(READ_KEY), guarded)
    require_connection(bearer(hs256(scope="trends:read")), guarded)
    assert isinstance(refusal(require_connection, None, guarded), Unauthenticated)
    assert isinstance(refusal(require_connection, bearer(hs256(scope=None)), guarded), Forbidden)


# -- through the app -------------------------------------------------------------------------


@pytest.fixture
def jwt_client(database_url: str, rsa_keys: KeyPair) -> Iterator[TestClient]:
    """A server taking JWTs (no API_KEYS) whose reads need a credential."""
    settings = make_settings(
        database_url, **jwt_settings(rsa_keys, api_keys=(), read_api_keys=(READ_KEY,))
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def flow_records() -> list[dict[str, Any]]:
    """Two countries sharing two topics an hour apart, recently: one hot flow FR -> BE."""
    now = datetime.now(UTC)
    return [
        record(country, topic, hours_ago=hours, count=100, as_of=now)
        for country, hours in (("FR", 3), ("BE", 2))
        for topic in ("Alpha", "Beta")
    ]


def test_rest_writes_with_a_jwt(jwt_client: TestClient, rsa_keys: KeyPair) -> None:
    batch = [record()]
    for token in (hs256(), rs256(rsa_keys)):
        response = jwt_client.post(
            "/v1/trends", json=batch, headers={"Authorization": bearer(token)}
        )
        assert response.status_code == 200, response.text
    expired = hs256(exp=int(time.time()) - 120)
    response = jwt_client.post("/v1/trends", json=batch, headers={"Authorization": bearer(expired)})
    assert response.status_code == 401
    assert response.json()["detail"] == "token expired"
    assert response.headers["www-authenticate"] == "Bearer"
    reader = hs256(scope="trends:read")
    response = jwt_client.post("/v1/trends", json=batch, headers={"Authorization": bearer(reader)})
    assert response.status_code == 403
    assert jwt_client.get("/v1/trends").status_code == 401
    listed = jwt_client.get("/v1/trends", headers={"Authorization": bearer(reader)})
    assert listed.status_code == 200
    assert listed.json()["total_count"] == 1


def test_graphql_ingest_with_a_jwt(jwt_client: TestClient, rsa_keys: KeyPair) -> None:
    variables = {"trends": [as_input(record())]}

    def ingest(token: str) -> dict[str, Any]:
        response = jwt_client.post(
            "/graphql",
            json={"query": INGEST, "variables": variables},
            headers={"Authorization": bearer(token)},
        )
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    assert ingest(rs256(rsa_keys))["data"]["ingestTrends"] == {"received": 1}
    wrong_audience = ingest(rs256(rsa_keys, aud="elsewhere"))["errors"][0]
    assert wrong_audience["message"] == "token audience is not accepted"
    assert wrong_audience["extensions"]["status"] == 401
    no_scope = ingest(hs256(scope="openid"))["errors"][0]
    assert (no_scope["extensions"]["code"], no_scope["extensions"]["status"]) == ("forbidden", 403)


def _init(ws: Any, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "connection_init"}
    if payload is not None:
        message["payload"] = payload
    ws.send_json(message)
    answer: dict[str, Any] = ws.receive_json()
    return answer


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
@pytest.mark.parametrize(
    "payload",
    [None, {"token": "nope"}, {"Authorization": "Bearer nope"}, {"token": "EXPIRED"}],
)
def test_websocket_refuses_a_bad_or_missing_credential_with_4403(
    jwt_client: TestClient, protocol: str, payload: dict[str, Any] | None
) -> None:
    if payload == {"token": "EXPIRED"}:
        payload = {"token": hs256(exp=int(time.time()) - 120)}
    with (
        jwt_client.websocket_connect("/graphql", subprotocols=[protocol]) as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        answer = _init(ws, payload)
        # Legacy graphql-ws says why first; graphql-transport-ws closes straight away.
        assert answer["type"] == "connection_error"
        assert answer["payload"]["code"] == "unauthenticated"
        ws.receive_json()
    assert closed.value.code == 4403


def _subscribe(ws: Any, protocol: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
    payload = {"query": query, "variables": variables or {}}
    ws.send_json({"id": "1", "type": kind, "payload": payload})
    return ws.receive_json()


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
@pytest.mark.parametrize("form", ["Authorization", "authorization", "token", "header"])
def test_websocket_subscribes_with_a_good_credential(
    jwt_client: TestClient, rsa_keys: KeyPair, protocol: str, form: str
) -> None:
    writer = hs256()
    assert (
        jwt_client.post(
            "/v1/trends", json=flow_records(), headers={"Authorization": bearer(writer)}
        ).status_code
        == 200
    )
    reader = rs256(rsa_keys, scope="trends:read")
    headers = {"Authorization": bearer(reader)} if form == "header" else {}
    payload = {"token": reader} if form == "token" else {form: bearer(reader)}
    with jwt_client.websocket_connect("/graphql", subprotocols=[protocol], headers=headers) as ws:
        assert _init(ws, None if form == "header" else payload)["type"] == "connection_ack"
        message = _subscribe(ws, protocol, HOT_FLOWS)
        assert message["type"] in ("next", "data"), message
        flow = message["payload"]["data"]["hotFlows"]
        assert (flow["fromCountry"], flow["toCountry"]) == ("FR", "BE")


def test_websocket_mutation_uses_the_connection_credential(
    jwt_client: TestClient,
) -> None:
    """The init payload's credential is the one resolvers see: here it writes."""
    variables = {"trends": [as_input(record())]}
    protocol = "graphql-transport-ws"
    with jwt_client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
        assert _init(ws, {"token": hs256(scope="trends:read")})["type"] == "connection_ack"
        refused = _subscribe(ws, protocol, INGEST, variables)
        assert refused["payload"]["errors"][0]["extensions"]["code"] == "forbidden"
    with jwt_client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
        assert _init(ws, {"token": hs256()})["type"] == "connection_ack"
        done = _subscribe(ws, protocol, INGEST, variables)
        assert done["payload"]["data"]["ingestTrends"] == {"received": 1}


def test_websocket_with_public_reads(database_url: str) -> None:
    """Reads public: no credential is fine, a bad one is still refused."""
    with TestClient(create_app(make_settings(database_url, **jwt_settings()))) as client:
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            assert _init(ws)["type"] == "connection_ack"
        with (
            client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            _init(ws, {"token": hs256(OTHER_SECRET)})
        assert closed.value.code == 4403
        with (
            client.websocket_connect(
                "/graphql",
                subprotocols=["graphql-transport-ws"],
                headers={"Authorization": bearer(WRITE_KEY + "x")},
            ) as ws,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            _init(ws)
        assert closed.value.code == 4403


def test_tokens_are_never_logged(
    database_url: str, rsa_keys: KeyPair, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(database_url, log_level="DEBUG", **jwt_settings(rsa_keys))
    good, expired = hs256(), hs256(exp=int(time.time()) - 120)
    with TestClient(create_app(settings)) as client:
        for token in (good, expired, WRITE_KEY, "not-a-key"):
            headers = {"Authorization": bearer(token)}
            client.post("/v1/trends", json=[record()], headers=headers)
            client.post(
                "/graphql", json={"query": INGEST, "variables": {"trends": []}}, headers=headers
            )
        with (
            client.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as ws,
            pytest.raises(WebSocketDisconnect),
        ):
            _init(ws, {"token": expired})
            ws.receive_json()
        assert (
            client.post("/v1/trends", json=[record()], headers=write_headers()).status_code == 200
        )
    output = "".join(capfd.readouterr())
    assert '"status":401' in output.replace(" ", "")  # the requests were logged...
    for token in (good, expired, WRITE_KEY, SECRET, good.split(".")[2], expired.split(".")[2]):
        assert token not in output  # ...their credentials were not


def test_legacy_websocket_malformed_init_is_strawberrys_to_refuse(jwt_client: TestClient) -> None:
    """Not a credential problem: Strawberry's own answer (connection_error, close 1000)."""
    with (
        jwt_client.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.send_json({"type": "connection_init", "payload": ["Bearer x"]})
        assert ws.receive_json()["type"] == "connection_error"
        ws.receive_json()
    assert closed.value.code == 1000
