"""Test peers run as separate processes or threads, and the hostile-target kit:

- ``hostile_snmp``: a raw UDP SNMPv2c agent (huge varbinds, walks that never advance, garbage, spoofed
  answers, floods)
- ``hostile_ssh``: a TCP server that plays a hostile SSH server (endless banner, endless lines, a drip,
  an IGNORE flood before key exchange, a 2 GiB packet length)
- hostile HTTP targets live beside their tests (``tests/probes/test_http_hostile.py``) and the target
  server in ``tests/helpers.py``; ``fault_proxy`` misbehaves between the appliance and its instance
"""
