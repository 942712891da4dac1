"""Consequence-based risk: the action catalog and the table-driven risk model."""

from broker.risk.model import RiskInput, RiskModel, RiskTable, TierCost, load_catalog, load_risk_table

__all__ = ["RiskInput", "RiskModel", "RiskTable", "TierCost", "load_catalog", "load_risk_table"]
