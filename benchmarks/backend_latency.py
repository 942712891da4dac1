"""Backend adapters' issue/revoke latency next to the raw upstream call they wrap.

Real OpenBao dev server, real PostgreSQL (127.0.0.1:5432 or a private cluster), moto server with
IAM authorization on — the same components as the tests. Prints one table.

    .venv/bin/python benchmarks/backend_latency.py [--n 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]

from _harness import print_table, summarize, timed  # noqa: E402
from support.backend_requests import make_request, make_resource  # noqa: E402
from support.moto import REGION, start_moto  # noqa: E402
from support.postgres import find_or_start  # noqa: E402

from broker.backends.aws_sts import AwsClientSettings, AwsRevocationMode, AwsStsBackend  # noqa: E402
from broker.backends.openbao_http import OpenBaoHTTP  # noqa: E402
from broker.backends.openbao_kv import OpenBaoKVBackend  # noqa: E402
from broker.backends.postgres import PostgresBackend, configure_openbao_role, ensure_group_role  # noqa: E402
from broker.openbao_server import start_dev_server  # noqa: E402
from broker.secrets import Fingerprinter, Secret  # noqa: E402


def row(name: str, samples: list[float]) -> dict[str, Any]:
    return {"operation": name, **summarize(samples)}


def bench_postgres(http: OpenBaoHTTP, n: int) -> list[dict[str, Any]]:
    pg = find_or_start()
    if isinstance(pg, str):
        print(f"postgres rows skipped: {pg}")
        return []
    import psycopg

    db = "nhi_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    try:
        ensure_group_role(pg.conninfo(db), f"{db}_read", dbname=db)
        configure_openbao_role(
            http,
            role="bench",
            group_role=f"{db}_read",
            connection_url=pg.connection_url(db),
            username="postgres",
            password=Secret("trust"),
            connection_name="bench",
            default_ttl=600,
        )
        backend = PostgresBackend(http)
        resource = make_resource(
            "postgres", backend.validate_settings({"vault": {"mount": "database", "role": "bench"}})
        )
        c = http.make_client()
        raw_leases: list[str] = []
        ours: list[Any] = []
        rows = [
            row(
                "postgres issue (adapter: creds + renew to tier)",
                timed(lambda: ours.append(backend.issue(make_request(resource, "db.read", ttl=300))), n, 5),
            ),
            row(
                "postgres issue (raw hvac: GET creds)",
                timed(lambda: raw_leases.append(c.adapter.get("/v1/database/creds/bench")["lease_id"]), n, 5),
            ),
        ]
        it = iter(ours)
        rows.append(
            row(
                "postgres revoke (adapter, terminate + drop)",
                timed(lambda: backend.revoke(next(it).revocation), n, 5),
            )
        )
        raw = iter(raw_leases)
        rows.append(
            row(
                "postgres revoke (raw hvac: sys/leases/revoke)",
                timed(lambda: c.adapter.put("/v1/sys/leases/revoke", json={"lease_id": next(raw)}), n, 5),
            )
        )
        return rows
    finally:
        http.make_client().adapter.put("/v1/sys/leases/revoke-prefix/database/creds/bench", json={"sync": True})
        with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{db}_read"')
        pg.stop()


def bench_aws(n: int) -> list[dict[str, Any]]:
    moto = start_moto(Path(tempfile.mkdtemp(prefix="nhi-bench-moto-", dir="/tmp")))
    try:
        assert moto.admin is not None
        iam, sts = moto.admin.client("iam", moto.endpoint), moto.admin.client("sts", moto.endpoint)
        iam.create_role(
            RoleName="bench",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["sts:AssumeRole", "sts:TagSession"],
                            "Principal": {"AWS": "arn:aws:iam::123456789012:user/nhi-broker"},
                        }
                    ],
                }
            ),
        )
        iam.put_role_policy(
            RoleName="bench",
            PolicyName="s3",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        settings = AwsClientSettings(
            region=REGION,
            endpoint_url=moto.endpoint,
            access_key_id=moto.admin.access_key_id,
            secret_access_key=Secret(moto.admin.secret_access_key),
        )
        tag = AwsStsBackend(settings)
        per_task = AwsStsBackend(settings, mode=AwsRevocationMode.PER_TASK_ROLE, role_ready_timeout=0)
        resource = make_resource(
            "aws",
            tag.validate_settings(
                {"aws": {"role_arn": "arn:aws:iam::123456789012:role/bench", "endpoint_url": moto.endpoint}}
            ),
        )
        ours: list[Any] = []
        rows = [
            row(
                "aws issue (adapter: AssumeRole + policy + tags)",
                timed(lambda: ours.append(tag.issue(make_request(resource, "storage.read"))), n, 5),
            ),
            row(
                "aws issue (raw boto3 AssumeRole)",
                timed(
                    lambda: sts.assume_role(
                        RoleArn="arn:aws:iam::123456789012:role/bench",
                        RoleSessionName="raw",
                        DurationSeconds=900,
                    ),
                    n,
                    5,
                ),
            ),
        ]
        it = iter(ours)
        rows.append(
            row(
                "aws revoke grant (adapter: tag deny, read-modify-verify)",
                timed(lambda: tag.revoke(next(it).revocation), min(n, 100), 0),
            )
        )
        rows.append(
            row(
                "aws revoke (raw boto3 PutRolePolicy)",
                timed(
                    lambda: iam.put_role_policy(
                        RoleName="bench",
                        PolicyName="raw",
                        PolicyDocument=json.dumps(
                            {
                                "Version": "2012-10-17",
                                "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}],
                            }
                        ),
                    ),
                    n,
                    5,
                ),
            )
        )
        firsts: list[Any] = []
        rows.append(
            row(
                "aws issue, per-task role, first grant (creates role)",
                timed(
                    lambda: firsts.append(
                        per_task.issue(
                            make_request(
                                make_resource(
                                    "aws",
                                    {
                                        **resource.settings,
                                        "aws": {**resource.settings["aws"], "revocation": "per_task_role"},
                                    },
                                ),
                                "storage.read",
                            )
                        )
                    ),
                    min(n, 100),
                    0,
                ),
            )
        )
        handles = iter([f.task_handle for f in firsts])
        rows.append(
            row(
                "aws revoke task, per-task role (deny-all + trust)",
                timed(lambda: per_task.revoke(next(handles)), min(n, 100), 0),
            )
        )
        return rows
    finally:
        moto.stop()


def bench_kv(http: OpenBaoHTTP, n: int) -> list[dict[str, Any]]:
    c = http.make_client()
    c.secrets.kv.v2.create_or_update_secret(path="bench/api-key", secret={"key": "v" * 40}, mount_point="secret")
    backend = OpenBaoKVBackend(http, fingerprinter=Fingerprinter(b"k" * 32))
    plain = OpenBaoKVBackend(http)
    resource = make_resource(
        "vault_kv", backend.validate_settings({"vault": {"mount": "secret", "path": "bench/api-key"}})
    )
    ours: list[Any] = []
    raw: list[str] = []
    rows = [
        row(
            "kv issue (adapter: fingerprint read + wrapped read)",
            timed(lambda: ours.append(backend.issue(make_request(resource, "secrets.read"))), n),
        ),
        row(
            "kv issue (adapter without fingerprinter)",
            timed(lambda: plain.issue(make_request(resource, "secrets.read")), n),
        ),
        row(
            "kv issue (raw hvac wrapped read)",
            timed(
                lambda: raw.append(
                    c.adapter.get("/v1/secret/data/bench/api-key", wrap_ttl="300s")["wrap_info"]["accessor"]
                ),
                n,
            ),
        ),
    ]
    it, rit = iter(ours), iter(raw)
    rows.append(row("kv revoke (adapter)", timed(lambda: backend.revoke(next(it).revocation), n, 0)))
    rows.append(
        row(
            "kv revoke (raw hvac revoke-accessor)",
            timed(lambda: c.adapter.post("/v1/auth/token/revoke-accessor", json={"accessor": next(rit)}), n, 0),
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    bao = start_dev_server()
    try:
        http = OpenBaoHTTP(bao.address, bao.root_token)
        rows = bench_postgres(http, args.n) + bench_aws(args.n) + bench_kv(http, args.n)
    finally:
        bao.stop()
    print_table(
        f"Backend adapters vs raw upstream calls (n={args.n}, single thread, loopback)",
        rows,
        ["operation", "n", "median_ms", "p90_ms", "p99_ms", "mean_ms"],
    )


if __name__ == "__main__":
    main()
