"""The seeded demo CRM generator: leads, activities, outcomes and the true conversion probabilities.

>>> from leadscore.data.demo import generate_crm, write_crm
>>> data = generate_crm(n_leads=500, seed=7)
>>> sorted(data.outcomes["converted"].unique().tolist())
[0, 1]
"""

from __future__ import annotations

from leadscore.data.demo.generator import DEMO_DEFAULTS, CRMData, generate_crm, write_crm
from leadscore.data.demo.latent import label_probability

__all__ = ["DEMO_DEFAULTS", "CRMData", "generate_crm", "label_probability", "write_crm"]
