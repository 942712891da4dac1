"""The production-shaped topology on one machine (``nhi-broker up --ha``): a 3-node OpenBao raft
cluster, PostgreSQL, N ``serve`` replicas and HAProxy in front. Each part is its own module; the
CLI (``broker/cli/up_ha.py``) starts them in order and stops them in reverse."""
