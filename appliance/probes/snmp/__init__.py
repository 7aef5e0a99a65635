"""The SNMP probe (``probe``) and what it is made of, one job each.

The job as ServiceNow's SNMP probes write it: ``params`` (version, port, credentials' place) and
``spec`` (the ``oid_spec_list`` lines). The wire: ``ber`` (a strict v1/v2c BER codec), ``usm`` and
``keys`` (SNMPv3's user-based security), ``v2c`` and ``v3`` (one UDP channel per job), ``opener``
(which version and credential answers), ``session`` (get, getnext and bulk walks, ``walk`` cutting a
walk into concurrent lanes). The answer: ``values`` (rendered as ServiceNow renders them) and ``tree``
(the MIB-named ``<snmp>`` tree). OID names resolve through ``appliance.mib``, shared with the config's
OID scopes. Nothing is re-exported here, so importing the codec does not load the probe.
"""
