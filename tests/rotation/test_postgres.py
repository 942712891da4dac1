"""postgres_password (OpenBao static role) and database_root (rotate-root) against a real
PostgreSQL that enforces SCRAM passwords: the old password really stops working."""

from __future__ import annotations

import pytest

from rotation.playbooks.base import SecretState

from .conftest import PgSetup, Rig

pytestmark = [pytest.mark.openbao, pytest.mark.postgres]


def _register_app(rig: Rig, pg: PgSetup, **settings: object) -> str:
    name = pg.app_role.replace("_", "-")
    rig.service.put(
        name,
        "postgres_password",
        {"db_name": pg.db_name, "username": pg.app_role, "static_role": pg.app_role, **settings},
        kv_mount="secret",
        kv_path=f"db/{name}",
        overlap_seconds=3600,
        actor="test",
    )
    return name


def test_leaked_postgres_password_is_rotated_and_the_old_one_no_longer_logs_in(rig: Rig, pg_setup: PgSetup) -> None:
    name = _register_app(rig, pg_setup)
    with rig.bao.client() as c:  # what consumers had before the broker managed it
        c.adapter.post(
            f"/v1/secret/data/db/{name}",
            json={"data": {"username": pg_setup.app_role, "password": pg_setup.app_password}},
        )
    first = rig.service.rotate(name, reason="manual", actor="test")
    assert first.ok, first.error
    pw1 = rig.kv_read(f"db/{name}")["data"]["password"]  # type: ignore[index]
    assert pg_setup.login(pg_setup.app_role, pw1)
    assert not pg_setup.login(pg_setup.app_role, pg_setup.app_password)  # the pre-broker password is dead
    verified = [e for e in rig.events(name) if e["kind"] == "rotation.verified"][-1]["data"]
    assert verified["old_value_refused"] is True

    # a scan finds pw1 in a log: fingerprint → managed secret → rotate for a leak
    found = rig.service.match_fingerprint(rig.fingerprint(pw1))
    assert found == name
    result = rig.service.rotate(found, reason="leak", actor="scanner")
    assert result.ok and result.retired
    entry = rig.kv_read(f"db/{name}")
    pw2 = entry["data"]["password"]  # type: ignore[index]
    assert pw2 != pw1 and entry["data"]["username"] == pg_setup.app_role  # type: ignore[index]
    assert pg_setup.login(pg_setup.app_role, pw2)
    assert not pg_setup.login(pg_setup.app_role, pw1)
    assert rig.destroyed(f"db/{name}", first.kv_version)  # type: ignore[arg-type]
    assert rig.service.match_fingerprint(rig.fingerprint(pw1)) is None
    assert rig.fingerprint(pg_setup.app_role) not in result.fingerprints  # the username is not a secret


def test_postgres_rotation_aborts_when_the_new_password_cannot_be_verified(rig: Rig, pg_setup: PgSetup) -> None:
    # consumers dial a port where nothing listens: the new password cannot be proven to work
    name = _register_app(rig, pg_setup, connection={"host": "127.0.0.1", "port": 1, "dbname": "postgres"})
    result = rig.service.rotate(name, reason="manual", actor="test")
    assert not result.ok and result.failed_step == "verify"
    assert "did not log in" in (result.error or "")
    assert rig.kv_read(f"db/{name}") is None  # consumers' entry never switched
    failed = rig.events(name)[-1]
    assert failed["kind"] == "rotation.failed" and failed["data"]["step"] == "verify"
    assert "kept at" in failed["data"]["undo"]["staging"]  # the only copy of the new password is kept
    secret = rig.service.get(name)
    assert secret.state is SecretState.FAILED and secret.next_attempt_at is not None
    assert name not in [r.name for r in rig.service.rotate_due()]  # no max_age: never scheduled


def test_database_root_rotation_invalidates_the_old_root_password_and_openbao_still_works(
    rig: Rig, pg_setup: PgSetup
) -> None:
    name = f"root-{pg_setup.db_name}"
    rig.service.put(name, "database_root", {"db_name": pg_setup.db_name}, actor="test")
    assert pg_setup.login(pg_setup.admin_role, pg_setup.admin_password)
    result = rig.service.rotate(name, reason="leak", actor="test")
    assert result.ok and result.steps[:4] == ("created", "stored", "verified", "switched")
    assert result.fingerprints == ()  # only OpenBao knows the new value
    assert not pg_setup.login(pg_setup.admin_role, pg_setup.admin_password)
    # OpenBao manages PostgreSQL with the new root credential: a static role can still be rotated
    app = _register_app(rig, pg_setup)
    assert rig.service.rotate(app, reason="manual", actor="test").ok


def test_database_root_refuses_a_connection_that_logs_in_as_the_superuser(rig: Rig, bao: object) -> None:
    from broker.errors import InvalidInput

    with rig.bao.client() as c:
        mounts = c.sys.list_mounted_secrets_engines()
        if "database/" not in mounts.get("data", mounts):
            c.sys.enable_secrets_engine("database", path="database")
        c.adapter.post(
            "/v1/database/config/superuser-conn",
            json={
                "plugin_name": "postgresql-database-plugin",
                "verify_connection": False,
                "connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres",
                "username": "postgres",
                "password": "unused",
            },
        )
    with pytest.raises(InvalidInput, match="dedicated role"):
        rig.service.put("root-su", "database_root", {"db_name": "superuser-conn"}, actor="test")
