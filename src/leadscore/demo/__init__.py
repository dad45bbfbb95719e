"""Everything that generates or simulates, apart from the production packages: the seeded demo CRM
(generator, latent truth, activities, follow-up; written to files or a database), history replayed as
production (replay), the learning loop replayed on a drifting world (loop), simulated A/B experiments
(simulation, experiment) and the hidden truth the reports compare with (truth).

>>> from leadscore.demo import generate_crm, write_crm
>>> data = generate_crm(n_leads=500, seed=7)
>>> sorted(data.outcomes["converted"].unique().tolist())
[0, 1]
"""

from __future__ import annotations

from leadscore.demo.generator import DEMO_DEFAULTS, CRMData, generate_crm, write_crm
from leadscore.demo.latent import label_probability

__all__ = ["DEMO_DEFAULTS", "CRMData", "generate_crm", "label_probability", "write_crm"]
