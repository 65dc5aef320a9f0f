"""App JWT verification and installation tokens, with GitHub's answers when something is wrong."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from github_app.sandbox.state import IssuedToken, SandboxState, client_id_of

# GitHub rejects app JWTs valid for more than ten minutes; allow its documented clock-drift margin.
MAX_JWT_LIFETIME = 600
CLOCK_DRIFT = 60
_TOKEN_ALPHABET = string.ascii_letters + string.digits


class AuthError(Exception):
    """A request GitHub would answer with 401 (or 404 for an unknown installation)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def generate_key_pair(bits: int = 2048) -> tuple[str, str]:
    """Generate an RSA key pair for a GitHub App: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private_pem, public_pem


def public_key_of(private_pem: str) -> str:
    """Derive the public PEM of a private key PEM."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def make_app_jwt(private_pem: str, app_id: int | str, *, now: float, lifetime: int = 540) -> str:
    """Sign an app JWT the way GitHub expects (RS256, iss = app id), for tests that skip githubkit."""
    iat = int(now) - 60
    return jwt.encode({"iss": str(app_id), "iat": iat, "exp": iat + 60 + lifetime}, private_pem, algorithm="RS256")


def verify_app_jwt(state: SandboxState, authorization: str | None) -> int:
    """Verify the `Authorization: Bearer <jwt>` of an app-level call; return the app id."""
    if not authorization:
        raise AuthError("A JSON web token could not be decoded")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise AuthError("A JSON web token could not be decoded")
    if state.app is None:
        raise AuthError("Integration not found")
    try:
        # Time claims are checked below against the sandbox clock, which tests may advance.
        claims = jwt.decode(value.strip(), state.app.public_key_pem, algorithms=["RS256"],
                            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                     "require": ["iat", "exp", "iss"]})
    except jwt.InvalidTokenError:
        raise AuthError("A JSON web token could not be decoded") from None
    now = state.now()
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, (int, float)) or iat > now + CLOCK_DRIFT:
        raise AuthError("'Issued at' claim ('iat') must be an Integer representing the time that the "
                        "assertion was issued.")
    if not isinstance(exp, (int, float)) or exp <= now:
        raise AuthError("'Expiration time' claim ('exp') must be a numeric value representing the future "
                        "time at which the assertion expires.")
    if exp - iat > MAX_JWT_LIFETIME:
        raise AuthError("'Expiration time' claim ('exp') is too far in the future.")
    if str(claims.get("iss")) not in (str(state.app.id), client_id_of(state.app.id)):  # GitHub takes either
        raise AuthError("Integration not found")
    return state.app.id


def issue_installation_token(state: SandboxState, installation_id: int, *,
                             repositories: list[str] | None = None,
                             permissions: dict[str, str] | None = None) -> IssuedToken:
    """Issue an installation access token that expires after the state's `token_ttl`."""
    inst = state.installations.get(installation_id)
    if inst is None:
        raise AuthError("Not Found", status=404)
    if inst.suspended:
        raise AuthError("This installation has been suspended", status=403)
    granted = dict(inst.permissions)
    if permissions:
        missing = [name for name in permissions if name not in inst.permissions]
        if missing:
            raise AuthError("The permissions requested are not granted to this installation: "
                            + ", ".join(sorted(missing)), status=422)
        granted = dict(permissions)
    token = IssuedToken(token="ghs_" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(36)),
                        installation_id=installation_id, expires_at=state.now() + state.token_ttl,
                        permissions=granted,
                        repositories=[r.lower() for r in repositories] if repositories else inst.repositories)
    with state.lock:
        state.tokens[token.token] = token
    return token


@dataclass(frozen=True)
class Caller:
    """Who is calling: the installation behind the token."""

    installation_id: int
    token: IssuedToken


def authenticate(state: SandboxState, authorization: str | None) -> Caller:
    """Resolve `Authorization: token X` / `Bearer X` to an unexpired installation token."""
    if not authorization:
        raise AuthError("Requires authentication")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() not in ("token", "bearer") or not value:
        raise AuthError("Bad credentials")
    issued = state.tokens.get(value.strip())
    if issued is None or issued.expires_at <= state.now():
        raise AuthError("Bad credentials")
    return Caller(installation_id=issued.installation_id, token=issued)


def can_access(state: SandboxState, caller: Caller, owner: str, name: str) -> bool:
    """Tell whether an installation token reaches a repository."""
    inst = state.installations.get(caller.installation_id)
    if inst is None or inst.account.lower() != owner.lower():
        return False
    allowed = caller.token.repositories
    return allowed is None or name.lower() in {r.lower().split("/")[-1] for r in allowed}
