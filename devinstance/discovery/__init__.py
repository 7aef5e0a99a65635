"""Classic horizontal Discovery as a ServiceNow instance runs it: real-shaped outputs and sensors.

``shapes`` builds the outputs (Shazzam, SNMP - Classify, UNIX - Classify), ``sensors`` reads the
answers, ``sequence`` runs Shazzam then the classifiers its sensor calls for.
"""
