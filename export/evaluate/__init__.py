"""Evaluation of exported models, one protocol per signal kind, with baselines and figures."""
