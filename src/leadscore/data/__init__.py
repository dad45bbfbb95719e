"""Reading and cleaning lead tables, schema inference and feature preparation, the CRM point-in-time
snapshot, and the demo CRM generator.
"""
