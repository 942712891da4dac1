"""RFC 8693 token exchange and RFC 9449 DPoP against a real broker and OpenBao, with issuers that
mint tokens in the shapes SPIRE, Kubernetes, GitHub Actions and an OIDC provider really use."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from support.issuers import github_actions, id_token, kubernetes_sa, spiffe_svid

from broker.client import BrokerClient, Unauthenticated
from broker.identity.dpop import make_proof
from tests.exchange.conftest import AUDIENCE, HUMAN_CLIENT

pytestmark = pytest.mark.openbao

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
SPIFFE_ID = "spiffe://example.org/ns/agents/sa/summarizer"


class Key:
    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)

    def proof(self, method: str, url: str, token: str | None = None, **kw: object) -> str:
        return make_proof(self.private, self.jwk, method=method, url=url, access_token=token, **kw)  # type: ignore[arg-type]


def exchange(broker, subject: str, *, key: Key | None = None, **form: str) -> httpx.Response:
    url = f"{broker.url}/v1/token"
    headers = {"DPoP": key.proof("POST", url)} if key is not None else {}
    body = {"grant_type": GRANT, "subject_token": subject, "subject_token_type": JWT, **form}
    return httpx.post(url, data=body, headers=headers, timeout=60)


def svid(issuers, **over: object) -> str:
    return issuers.spiffe.mint(spiffe_svid(issuers.spiffe, SPIFFE_ID, AUDIENCE, **over))


def call(
    broker, method: str, path: str, token: str, key: Key | None, json: dict | None = None, proof: str | None = None
) -> httpx.Response:
    url = f"{broker.url}{path}"
    if key is None and proof is None:
        headers = {"Authorization": f"Bearer {token}"}
    else:
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof or key.proof(method, url, token)}  # type: ignore[union-attr]
    return httpx.request(method, url, headers=headers, json=json, timeout=60)


def test_the_same_svid_exchanged_several_times_within_its_lifetime_gets_working_bound_tokens(xbroker, issuers):
    subject = svid(issuers)  # SPIRE hands out the same cached SVID (no jti) until it is half-expired
    key = Key()
    tokens = []
    for _ in range(3):
        r = exchange(xbroker, subject, key=key)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"] == "DPoP" and body["issued_token_type"].endswith(":access_token")
        assert 0 < body["expires_in"] <= 300 and r.headers["cache-control"] == "no-store"
        tokens.append(body["access_token"])
    assert len(set(tokens)) == 3
    # each token works with the key it is bound to: open a task, get a credential from OpenBao
    task = call(xbroker, "POST", "/v1/tasks", tokens[0], key, {"profile": "demo", "purpose": "svid"})
    assert task.status_code == 201, task.text
    cred = call(
        xbroker,
        "POST",
        f"/v1/tasks/{task.json()['task_id']}/credentials",
        tokens[2],
        key,
        {"action": "db.read", "resource": "demo-data"},
    )
    assert cred.status_code == 200 and cred.json()["credential"]["token"]
    assert task.json()["agent"] == "spiffe-agent"


def test_access_token_verifies_against_the_published_jwks_and_names_the_agent(xbroker, issuers):
    meta = httpx.get(f"{xbroker.url}/.well-known/oauth-authorization-server", timeout=60).json()
    assert meta["token_endpoint"].endswith("/v1/token") and GRANT in meta["grant_types_supported"]
    jwks = httpx.get(meta["jwks_uri"], timeout=60).json()
    key = Key()
    token = exchange(xbroker, svid(issuers), key=key).json()["access_token"]
    public = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(token, public, algorithms=["ES256"], audience=meta["issuer"], issuer=meta["issuer"])
    assert claims["agent"] == "spiffe-agent" and claims["sub"] == "agent:spiffe-agent"
    assert claims["wid"] == {"iss": issuers.spiffe.issuer, "sub": SPIFFE_ID}
    from broker.identity.dpop import jwk_thumbprint

    assert claims["cnf"] == {"jkt": jwk_thumbprint(key.jwk)}
    assert claims["exp"] <= jwt.decode(svid(issuers), options={"verify_signature": False})["exp"] + 5


def test_kubernetes_and_github_actions_tokens_exchange_for_their_agents(xbroker, issuers):
    k8s = issuers.k8s.mint(kubernetes_sa(issuers.k8s, "agents", "reporter", AUDIENCE))
    gh = issuers.github.mint(github_actions(issuers.github, "acme/agents", "main", AUDIENCE))
    for token, agent in ((k8s, "k8s-agent"), (gh, "ci-agent")):
        first, second = exchange(xbroker, token), exchange(xbroker, token)  # reusable within its lifetime
        assert first.status_code == second.status_code == 200, first.text
        assert first.json()["token_type"] == "Bearer"
        claims = jwt.decode(first.json()["access_token"], options={"verify_signature": False})
        assert claims["agent"] == agent and "cnf" not in claims
        r = call(xbroker, "POST", "/v1/tasks", first.json()["access_token"], None, {"profile": "demo", "purpose": "x"})
        assert r.status_code == 201 and r.json()["agent"] == agent


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "wrong_audience",
        "unregistered",
        "claim_mismatch",
        "grant_type",
        "token_type",
        "untrusted_actor",
        "scope",
        "audience",
    ],
)
def test_exchange_is_refused_with_the_rfc_error(xbroker, issuers, case):
    form: dict[str, str] = {}
    subject = svid(issuers)
    expected = "invalid_grant"
    if case == "expired":
        subject = svid(issuers, iat=int(time.time()) - 600, exp=int(time.time()) - 300)
    elif case == "wrong_audience":
        subject = issuers.spiffe.mint(spiffe_svid(issuers.spiffe, SPIFFE_ID, "another-service"))
    elif case == "unregistered":
        subject = issuers.spiffe.mint(spiffe_svid(issuers.spiffe, "spiffe://example.org/ns/other/sa/x", AUDIENCE))
    elif case == "claim_mismatch":
        subject = issuers.github.mint(
            github_actions(issuers.github, "acme/agents", "main", AUDIENCE, repository="evil/agents")
        )
    elif case == "grant_type":
        form = {"grant_type": "client_credentials"}
        expected = "unsupported_grant_type"
    elif case == "token_type":
        form = {"subject_token_type": ID_TOKEN}
        expected = "invalid_request"
    elif case == "untrusted_actor":
        person = issuers.untrusted_people.mint(
            id_token(issuers.untrusted_people, "alice", HUMAN_CLIENT, email="alice@example.test", groups=["finance"])
        )
        form = {"actor_token": person, "actor_token_type": ID_TOKEN}
    elif case == "scope":
        form = {"scope": "demo prod-admin"}
        expected = "invalid_scope"
    elif case == "audience":
        form = {"audience": "https://some-other-service"}
        expected = "invalid_target"
    r = exchange(xbroker, subject, **form)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == expected and r.json()["error_description"]
    assert "access_token" not in r.json()
    refused = [e for e in xbroker.admin().audit(kind="token.refused") if e["outcome"] == expected]
    assert refused


def test_a_person_proven_by_an_id_token_becomes_the_subject_with_the_agent_as_actor(xbroker, issuers):
    person = issuers.people.mint(
        id_token(issuers.people, "alice", HUMAN_CLIENT, email="alice@example.test", groups=["finance", "staff"])
    )
    r = exchange(xbroker, svid(issuers), key=Key(), actor_token=person, actor_token_type=ID_TOKEN)
    assert r.status_code == 200, r.text
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["act"] == {"sub": "agent:spiffe-agent"}
    assert claims["human"] == {
        "iss": issuers.people.issuer,
        "sub": "alice",
        "groups": ["finance", "staff"],
        "email": "alice@example.test",
    }


def test_a_narrowed_scope_limits_the_profiles_a_token_may_open_tasks_under(xbroker, issuers):
    xbroker.admin().put("profiles", "narrow", {"allowed_actions": ["db.read"], "ceiling": "low"})
    xbroker.admin().put(
        "agents",
        "spiffe-agent",
        {
            "owner": "platform-team",
            "profiles": ["demo", "narrow"],
            "identities": [{"issuer": issuers.spiffe.issuer, "subject": SPIFFE_ID}],
        },
    )
    key = Key()
    r = exchange(xbroker, svid(issuers), key=key, scope="narrow")
    assert r.status_code == 200 and r.json()["scope"] == "narrow"
    token = r.json()["access_token"]
    assert call(xbroker, "POST", "/v1/tasks", token, key, {"profile": "narrow", "purpose": "ok"}).status_code == 201
    refused = call(xbroker, "POST", "/v1/tasks", token, key, {"profile": "demo", "purpose": "beyond scope"})
    assert refused.status_code == 403 and "scope" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    "attack",
    [
        "no_proof",
        "other_method",
        "other_url",
        "replayed",
        "stale",
        "future",
        "other_key",
        "ath_mismatch",
        "bound_as_bearer",
        "other_agents_proof",
    ],
)
def test_dpop_attacks_are_401_and_audited(xbroker, issuers, attack):
    key = Key()
    token = exchange(xbroker, svid(issuers), key=key).json()["access_token"]
    path = "/v1/tasks"
    url = f"{xbroker.url}{path}"
    body = {"profile": "demo", "purpose": f"attack {attack}"}
    proof: str | None = None
    use_key: Key | None = key
    if attack == "no_proof":
        r = httpx.post(url, json=body, headers={"Authorization": f"DPoP {token}"}, timeout=60)
    else:
        if attack == "other_method":
            proof = key.proof("GET", url, token)
        elif attack == "other_url":
            proof = key.proof("POST", f"{xbroker.url}/v1/scan", token)
        elif attack == "replayed":
            proof = key.proof("POST", url, token)
            assert call(xbroker, "POST", path, token, key, body, proof=proof).status_code == 201
        elif attack == "stale":
            proof = key.proof("POST", url, token, iat=time.time() - 600)
        elif attack == "future":
            proof = key.proof("POST", url, token, iat=time.time() + 600)
        elif attack == "other_key":
            proof = Key().proof("POST", url, token)
        elif attack == "ath_mismatch":
            proof = key.proof("POST", url, token + "x")
        elif attack == "bound_as_bearer":
            use_key = None
        elif attack == "other_agents_proof":
            # agent B's own valid token and key; agent A's token with B's proof must fail
            k8s = issuers.k8s.mint(kubernetes_sa(issuers.k8s, "agents", "reporter", AUDIENCE))
            other = Key()
            other_token = exchange(xbroker, k8s, key=other).json()["access_token"]
            proof = other.proof("POST", url, other_token)
        r = call(xbroker, "POST", path, token, use_key, body, proof=proof)
    assert r.status_code == 401, (attack, r.text)
    assert r.headers.get("www-authenticate")
    failures = xbroker.admin().audit(kind="auth.failed")
    assert failures and failures[-1]["data"]["source"] == path


def test_the_python_client_exchanges_once_and_signs_a_proof_per_call(xbroker, issuers):
    minted: list[str] = []

    def identity() -> str:
        minted.append(svid(issuers))
        return minted[-1]

    with BrokerClient(xbroker.url, identity, exchange=True) as client, client.task("demo", "with DPoP") as task:
        assert task.credential("db.read", "demo-data").secret("token")
        assert task.credential("db.read", "demo-data").secret("token")
    assert len(minted) == 1  # one exchange for the whole session


def test_the_python_client_reports_a_refused_exchange(xbroker, issuers):
    expired = svid(issuers, iat=int(time.time()) - 600, exp=int(time.time()) - 300)
    with BrokerClient(xbroker.url, lambda: expired, exchange=True) as client, pytest.raises(Unauthenticated) as exc:
        client.open_task("demo", "x")
    assert exc.value.code == "invalid_grant"


def test_a_policy_on_the_verified_persons_group_decides_payments(openbao, issuers, tmp_path):
    """The example bundle: payments.charge only on behalf of a verified member of finance."""
    from pathlib import Path

    from support.broker import start_broker

    bundle = Path(__file__).resolve().parents[2] / "policies" / "examples" / "finance-payments"
    broker = start_broker(
        tmp_path / "finance",
        openbao,
        policy_dir=bundle,
        issuers=[issuers.spiffe.settings(AUDIENCE, require_jti=False)],
        human_issuers=[issuers.people.settings(HUMAN_CLIENT)],
    )
    try:
        broker.admin().put(
            "agents",
            "spiffe-agent",
            {
                "owner": "platform-team",
                "profiles": ["demo"],
                "identities": [{"issuer": issuers.spiffe.issuer, "subject": SPIFFE_ID}],
            },
        )

        def charge(groups: list[str] | None, typed: str | None = None) -> httpx.Response:
            key = Key()
            form = {}
            if groups is not None:
                person = issuers.people.mint(
                    id_token(issuers.people, "alice", HUMAN_CLIENT, email="alice@example.test", groups=groups)
                )
                form = {"actor_token": person, "actor_token_type": ID_TOKEN}
            token = exchange(broker, svid(issuers), key=key, **form).json()["access_token"]
            body = {"profile": "demo", "purpose": "charge"} | ({"on_behalf_of": typed} if typed else {})
            task = call(broker, "POST", "/v1/tasks", token, key, body)
            assert task.status_code == 201, task.text
            return call(
                broker,
                "POST",
                f"/v1/tasks/{task.json()['task_id']}/credentials",
                token,
                key,
                {"action": "payments.charge", "resource": "prod-payments"},
            )

        member = charge(["finance"])
        assert member.status_code == 202 and member.json()["decision"]["outcome"] == "step_up"
        outsider = charge(["engineering"])
        assert outsider.status_code == 403
        assert "forbid-charge-without-finance-person" in outsider.json()["decision"]["policy_ids"]
        typed = charge(None, typed="alice")  # a typed name proves nothing
        assert typed.status_code == 403
        assert "forbid-charge-without-finance-person" in typed.json()["decision"]["policy_ids"]
    finally:
        broker.stop()


def test_a_typed_on_behalf_of_that_contradicts_the_verified_person_is_refused(xbroker, issuers):
    person = issuers.people.mint(
        id_token(issuers.people, "alice", HUMAN_CLIENT, email="a@example.test", groups=["finance"])
    )
    key = Key()
    token = exchange(xbroker, svid(issuers), key=key, actor_token=person, actor_token_type=ID_TOKEN).json()
    r = call(
        xbroker,
        "POST",
        "/v1/tasks",
        token["access_token"],
        key,
        {"profile": "demo", "purpose": "x", "on_behalf_of": "mallory"},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "on_behalf_of"
    ok = call(xbroker, "POST", "/v1/tasks", token["access_token"], key, {"profile": "demo", "purpose": "x"})
    assert ok.status_code == 201
    assert ok.json()["acting_for"] == {"issuer": issuers.people.issuer, "subject": "alice", "verified": True}
    assert ok.json()["on_behalf_of"] == f"{issuers.people.issuer}#alice"
