"""Background work: revocation worker, expiry sweeper, scheduled scans, rotation of static secrets.

Depends on the broker's domain services and ports, never on its HTTP layer.
"""
