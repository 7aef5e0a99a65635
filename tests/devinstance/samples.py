"""Hand-written answers in the documented layouts (the ECC contract (ecc-protocol.md), "What a real instance sends").

Until the appliance's real Shazzam, SNMP and SSH answers land, these stand for them; each is what the
layout section shows, with loopback addresses and this project's test ports.
"""

from __future__ import annotations

SSH_BANNER = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
SYS_DESCR = "Linux probe-host 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 x86_64"
NET_SNMP_LINUX = ".1.3.6.1.4.1.8072.3.2.10"
UNAME = "Linux probe-host 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01) x86_64 GNU/Linux"


def shazzam_answer(ssh_port: int = 2222, snmp_port: int = 16161) -> str:
    return f"""<results probe_time="812" result_code="0">
<result alive="true" active="true" ip_address="127.0.0.1">
  <scanner service="ssh" result="open" protocol="tcp" portprobe="ssh" port="{ssh_port}" name="BannerTCP">
    <banner_text>{SSH_BANNER}</banner_text></scanner>
  <scanner service="snmp" result="open" protocol="udp" portprobe="snmp" port="{snmp_port}" name="SNMP">
    <sysDescr>{SYS_DESCR}</sysDescr></scanner>
  <scanner service="http" result="refused" protocol="tcp" portprobe="http" port="80" name="HTTP"/>
  <scanner service="epmap" result="timed_out" protocol="tcp" portprobe="wmi" port="135" name="GenericTCP"/>
</result>
<result alive="true" active="false" ip_address="127.0.0.2">
  <scanner service="ssh" result="refused" protocol="tcp" portprobe="ssh" port="{ssh_port}" name="BannerTCP"/>
  <scanner service="snmp" result="timed_out" protocol="udp" portprobe="snmp" port="{snmp_port}" name="SNMP"/>
</result>
<parameters><parameter name="topic" value="Shazzam"/></parameters>
</results>"""


def snmp_answer(object_id: str = NET_SNMP_LINUX) -> str:
    object_id_el = (
        f'<sysObjectID oid="1.3.6.1.2.1.1.2" type="SnmpObjectId">{object_id}</sysObjectID>'
        if object_id
        else ""
    )
    return f"""<results probe_time="40" result_code="0"><result><snmp><iso><org><dod><internet><mgmt><mib-2>
<system oid="1.3.6.1.2.1.1">
  <sysDescr oid="1.3.6.1.2.1.1.1" type="SnmpOctetString">{SYS_DESCR}</sysDescr>
  {object_id_el}
  <sysUpTime oid="1.3.6.1.2.1.1.3" type="SnmpTimeTicks">123456</sysUpTime>
  <sysName oid="1.3.6.1.2.1.1.5" type="SnmpOctetString">probe-host</sysName>
</system></mib-2></mgmt></internet></dod></org></iso></snmp></result>
<parameters><parameter name="topic" value="SNMP"/></parameters></results>"""


def ssh_answer(stdout: str = UNAME + "\n", exit_status: int = 0) -> str:
    return f"""<results probe_time="310" result_code="0"><result command="${{File:unix_classify.sh}}">
<stdout>{stdout}</stdout><stderr/><exit_status>{exit_status}</exit_status></result>
<parameters><parameter name="topic" value="SSHCommand"/></parameters></results>"""


ERROR_ANSWER = '<results probe_time="3" result_code="1" error="target 127.0.0.1:2222 denied by policy"><parameters/></results>'
