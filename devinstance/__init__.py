"""A development stand-in for a ServiceNow instance: the ECC queue contract over mutual TLS.

For tests and the demo only; never part of the appliance binary.
"""
