"""Credentials: ``Authorization: Bearer <token>``, where the token is an API key or a JWT.

- API keys: one of ``API_KEYS`` may write (and read), one of ``READ_API_KEYS`` only read. A
  token is compared in constant time with every configured key.
- JWTs: HS256 with ``JWT_SECRET``, RS256 with ``JWT_PUBLIC_KEY``. Each key verifies its own
  algorithm and no other, so ``alg: none`` and algorithm confusion (an HS256 token "signed"
  with the RSA public key) are refused. ``exp`` is required; ``exp``, ``nbf`` and ``iat`` are
  checked with ``JWT_LEEWAY_SECONDS`` of leeway, ``iss`` against ``JWT_ISSUER`` and ``aud``
  against ``JWT_AUDIENCE``. The ``scope`` claim (space-separated) or ``scp`` (a list) grants
  ``trends:write`` (write and read) or ``trends:read``.

Writes need a write credential; reads are public unless ``READ_API_KEYS`` is set. A missing,
unknown or invalid credential is 401 (Unauthenticated); a valid one that may not do what it
asks is 403 (Forbidden). Tokens are never logged nor repeated in an error.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import HMACAlgorithm

from graph.core.errors import Forbidden, Unauthenticated
from graph.settings import Settings

READ_SCOPE = "trends:read"
WRITE_SCOPE = "trends:write"
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as its hash
MIN_RSA_BITS = 2048  # NIST SP 800-131A


class Access(enum.IntEnum):
    """What a valid credential may do; each level includes those below it."""

    NONE = 0
    READ = 1
    WRITE = 2


@dataclass(frozen=True, slots=True)
class TokenRules:
    """How JWTs are verified: the key of each accepted algorithm, the claims they must carry."""

    keys: Mapping[str, bytes | RSAPublicKey]
    issuer: str
    audience: str
    leeway: float


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request's credential is checked against (see ``credentials_for``)."""

    write_keys: tuple[str, ...] = ()
    read_keys: tuple[str, ...] = ()
    tokens: TokenRules | None = None

    @property
    def writes_enabled(self) -> bool:
        return bool(self.write_keys) or self.tokens is not None


def credentials_for(settings: Settings) -> Credentials:
    """The credentials the settings configure, made once per configuration.

    Raises ValueError naming the setting when the JWT configuration is unusable (unreadable or
    weak key, missing ``JWT_ISSUER``/``JWT_AUDIENCE``): call it at startup to fail there.
    """
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret is not None else None
    return _credentials(
        settings.api_keys,
        settings.read_api_keys,
        secret or None,
        settings.jwt_public_key or None,
        settings.jwt_issuer or None,
        settings.jwt_audience or None,
        settings.jwt_leeway_seconds,
    )


@functools.lru_cache(maxsize=16)
def _credentials(
    write_keys: tuple[str, ...],
    read_keys: tuple[str, ...],
    secret: str | None,
    public_key: str | None,
    issuer: str | None,
    audience: str | None,
    leeway: float,
) -> Credentials:
    keys: dict[str, bytes | RSAPublicKey] = {}
    if secret is not None:
        keys["HS256"] = _hmac_key(secret)
    if public_key is not None:
        keys["RS256"] = _rsa_key(public_key)
    if not keys:
        return Credentials(write_keys, read_keys)
    if issuer is None or audience is None:
        raise ValueError(
            "JWT_ISSUER and JWT_AUDIENCE must be set with JWT_SECRET or JWT_PUBLIC_KEY: "
            "a token for another service or issuer must not be accepted here"
        )
    return Credentials(write_keys, read_keys, TokenRules(keys, issuer, audience, leeway))


def _hmac_key(secret: str) -> bytes:
    key = secret.encode()
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long")
    try:
        return HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(key)
    except jwt.InvalidKeyError as exc:
        # A PEM or SSH key as an HMAC secret is the algorithm-confusion mistake itself.
        raise ValueError(
            "JWT_SECRET looks like a public key: RS256 keys go in JWT_PUBLIC_KEY"
        ) from exc


def _rsa_key(value: str) -> RSAPublicKey:
    """An RSA public key from PEM text (``\\n`` escapes allowed) or the path of a PEM file."""
    text = value.strip()
    if not text.startswith("-----BEGIN"):
        try:
            text = Path(text).expanduser().read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"JWT_PUBLIC_KEY: cannot read the PEM file {text!r}") from exc
    # Environment variables often carry a PEM on one line with literal "\n".
    pem = text.strip().replace("\\n", "\n").encode()
    try:
        key = load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError("JWT_PUBLIC_KEY is not a PEM public key") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError("JWT_PUBLIC_KEY must be an RSA public key (RS256)")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"JWT_PUBLIC_KEY must be at least {MIN_RSA_BITS} bits long")
    return key


def bearer_token(authorization: str | None) -> str | None:
    """The token of a ``Bearer`` header, or None when there is none."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("use 'Authorization: Bearer <key>'")
    return token.strip()


def connection_authorization(params: Mapping[str, object] | None) -> str | None:
    """The credential of a WebSocket's ``connection_init`` payload, as an Authorization value.

    ``{"Authorization": "Bearer x"}`` (any case) or ``{"token": "x"}``; None when neither.
    """
    if not params:
        return None
    for name, value in params.items():
        if name.lower() == "authorization":
            if not isinstance(value, str):
                raise Unauthenticated("the connection_init Authorization must be a string")
            return value
    token = params.get("token")
    if token is None:
        return None
    if not isinstance(token, str) or not token.strip():
        raise Unauthenticated("the connection_init token must be a non-empty string")
    return f"Bearer {token}"


def matches_any(token: str, keys: Sequence[str]) -> bool:
    """Constant-time membership: every key is compared, whichever matches."""
    given = token.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


# Most specific first: ExpiredSignatureError and InvalidSignatureError have broader bases.
_TOKEN_PROBLEMS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidIssuerError, "token issuer is not accepted"),
    (jwt.InvalidAudienceError, "token audience is not accepted"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted"),
    (jwt.DecodeError, "token is malformed"),
)


def token_claims(token: str, rules: TokenRules) -> dict[str, Any]:
    """The claims of a JWT whose signature, algorithm, time and audience are right; else 401."""
    try:
        named = jwt.get_unverified_header(token).get("alg")
        algorithm = named if isinstance(named, str) else ""
        # The header only chooses among our keys; each key is pinned to its one algorithm.
        key = rules.keys.get(algorithm)
        if key is None:
            raise jwt.InvalidAlgorithmError("algorithm not configured")
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=rules.issuer,
            audience=rules.audience,
            leeway=rules.leeway,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthenticated(f"token lacks the '{exc.claim}' claim") from exc
    except jwt.PyJWTError as exc:
        detail = next((d for kind, d in _TOKEN_PROBLEMS if isinstance(exc, kind)), None)
        raise Unauthenticated(detail or "token is not valid") from exc


def token_access(claims: Mapping[str, Any]) -> Access:
    """What the token's ``scope`` (space-separated) or ``scp`` (list) grants."""
    granted = _scopes(claims.get("scope")) | _scopes(claims.get("scp"))
    if WRITE_SCOPE in granted:
        return Access.WRITE
    if READ_SCOPE in granted:
        return Access.READ
    return Access.NONE


def _scopes(value: object) -> set[str]:
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def access_of(token: str, credentials: Credentials) -> Access:
    """What a token may do: 401 when it is neither a configured key nor a valid JWT."""
    if matches_any(token, credentials.write_keys):
        return Access.WRITE
    if matches_any(token, credentials.read_keys):
        return Access.READ
    if credentials.tokens is not None and token.count(".") == 2:
        return token_access(token_claims(token, credentials.tokens))
    raise Unauthenticated("the credential is not valid")


# Per configuration (the Credentials object credentials_for makes once for it): the access of
# each configured key that a request presented, by the sha256 of the token. Checking a token
# against every key in constant time, and the settings' secrets, cost more than a whole cached
# answer; a dict keyed by the digest leaks nothing about the keys themselves. Bounded by the
# number of configured keys: a token that is not one (a bad key, a JWT, which expires) is
# never kept.
@dataclass(slots=True)
class _Known:
    settings: Settings
    credentials: Credentials
    by_digest: dict[str, Access] = field(default_factory=dict)
    by_header: dict[str, tuple[str, Access]] = field(default_factory=dict)
    """``Bearer <key>`` headers of configured keys, spelled exactly so (at most one per key):
    the client they name and what it may do, without parsing or hashing the header again.
    A str key is found by its process-keyed SipHash before any comparison, so the look-up
    tells nothing about the keys either."""


_KNOWN: dict[int, _Known] = {}


def _known(settings: Settings) -> _Known:
    known = _KNOWN.get(id(settings))
    if known is None or known.settings is not settings:
        if len(_KNOWN) >= 16:
            _KNOWN.clear()
        known = _KNOWN[id(settings)] = _Known(settings, credentials_for(settings))
    return known


def _credential(token: str, known: _Known) -> tuple[str, Access]:
    digest = hashlib.sha256(token.encode()).hexdigest()
    access = known.by_digest.get(digest)
    if access is None:
        access = access_of(token, known.credentials)
        if known.credentials.tokens is None or token.count(".") != 2:
            known.by_digest[digest] = access  # a configured key: a JWT would have two dots
    return digest, access


def header_credential(authorization: str | None, settings: Settings) -> tuple[str, Access] | None:
    """The client (``key:<sha256 of the token>``) and access of an ``Authorization`` header;
    None when it holds no token, Unauthenticated when its token is not a valid credential."""
    if not authorization:
        return None
    known = _known(settings)
    found = known.by_header.get(authorization)
    if found is not None:
        return found
    token = bearer_token(authorization)
    if token is None:
        return None
    digest, access = _credential(token, known)
    found = "key:" + digest, access
    if authorization == "Bearer " + token and digest in known.by_digest:
        known.by_header[authorization] = found  # a configured key, in its one plain spelling
    return found


def require_write(authorization: str | None, credentials: Credentials) -> None:
    """Let a write through only with a write key or a ``trends:write`` token (else 401/403)."""
    if not credentials.writes_enabled:
        raise Forbidden(
            "writes are disabled on this server: it has no API_KEYS configured"
            " (nor JWT_SECRET or JWT_PUBLIC_KEY)"
        )
    token = bearer_token(authorization)
    if token is None:
        raise Unauthenticated("writes need a credential: 'Authorization: Bearer <key>'")
    access = access_of(token, credentials)
    if access is Access.READ:
        raise Forbidden("this credential may read but not write")
    if access is not Access.WRITE:
        raise Forbidden(f"the token does not grant the '{WRITE_SCOPE}' scope")


def require_read(authorization: str | None, credentials: Credentials) -> None:
    """Reads are public unless read keys are configured; then a read or write credential."""
    if not credentials.read_keys:
        return
    token = bearer_token(authorization)
    if token is None:
        raise Unauthenticated("reads need a credential: 'Authorization: Bearer <key>'")
    if access_of(token, credentials) < Access.READ:
        raise Forbidden(f"the token grants neither '{READ_SCOPE}' nor '{WRITE_SCOPE}'")


def require_connection(authorization: str | None, credentials: Credentials) -> None:
    """A WebSocket's credential at ``connection_init``: refused when present but not valid,
    or when missing or unable to read while reads need a credential."""
    if credentials.read_keys:
        require_read(authorization, credentials)
        return
    token = bearer_token(authorization)
    if token is not None:
        access_of(token, credentials)
