"""How much a person's authentication costs on a people route, in process (no HTTP, no OpenBao):
a per-person API token (id lookup + salted HMAC, constant-time compare) against the admin token
(constant-time compare + one ``admin_token.used`` audit append) and a wrong token (dummy HMAC +
``auth.failed`` audit append), on a SQLite store in a temporary directory.

    PYTHONPATH=. python benchmarks/people_auth.py [--n 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

from broker.audit import AuditLog
from broker.audit.keys import load_key_file
from broker.errors import Unauthenticated
from broker.people.model import Caller, PersonIdentity, Role
from broker.people.service import PeopleService, token_key
from broker.secrets import Secret
from broker.store.db import make_engine, migrate
from broker.store.repo import Store

ADMIN = "bench-admin-token-0123456789abcdef"


def timed(fn, n: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'b.db'}")
        migrate(engine)
        store = Store(engine)
        audit = AuditLog(store, load_key_file(Path(tmp) / "audit.key", create=True))
        people = PeopleService(
            store,
            audit,
            token_key=token_key(b"k" * 32),
            admin_token=Secret(ADMIN),
            sign_in=None,
            human_issuers=["https://idp.test"],
            max_token_ttl_seconds=86400,
        )
        seed = Caller.system("bench")
        people.put(
            "alice",
            display_name="",
            roles=[Role.APPROVER],
            identities=[PersonIdentity("https://idp.test", "a")],
            disabled=False,
            actor=seed,
        )
        token, _ = people.create_token("alice", ttl_seconds=3600, description="", actor=seed)
        person = f"Bearer {token.reveal()}"
        wrong = f"Bearer {token.reveal()[:-1]}{'A' if token.reveal()[-1] != 'A' else 'B'}"

        def bad() -> None:
            with contextlib.suppress(Unauthenticated):
                people.authenticate(wrong, source="bench")

        for name, fn in (
            ("person token", lambda: people.authenticate(person, source="bench")),
            ("admin token (audited)", lambda: people.authenticate(f"Bearer {ADMIN}", source="bench")),
            ("wrong person token (audited)", bad),
        ):
            p50, p99 = timed(fn, args.n)
            print(f"{name:<30} p50 {p50:.3f} ms  p99 {p99:.3f} ms  (n={args.n})")
        engine.dispose()


if __name__ == "__main__":
    main()
