"""Features, next-best-action policies and the customer simulator."""

from models.features import features
from models.policy import LogisticHeads, Policy
from models.uplift import UpliftHeads

__all__ = ["LogisticHeads", "Policy", "UpliftHeads", "features"]
