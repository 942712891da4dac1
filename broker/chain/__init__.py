"""Chains: each task's ordered steps, the detectors that escalate it, and the escalation itself."""
