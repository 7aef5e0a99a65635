"""Every cap in one place. Config may lower these, never raise them past the hard ceiling."""

from __future__ import annotations

from dataclasses import dataclass

# Ceilings that no config can exceed.
MAX_CONFIG_BYTES = 1_000_000
MAX_PAYLOAD_BYTES = 20_000_000  # as the MID's mid.eccq.max_payload_size
MAX_INSTANCE_RESPONSE_BYTES = 64_000_000
MAX_JSON_DEPTH = 32  # an instance answer nests four levels deep; more is refused before json.loads
MAX_RECORD_FIELD_CHARS = 100_000  # an output record's fields other than its payload
MAX_RETRY_AFTER_S = 300.0  # an instance's Retry-After is honoured up to this (an hour would idle a MID)
# An output record claimed this many times without a result (each start interrupted by the process
# ending) is answered with an error instead of being run again: it may be what ends the process.
MAX_JOB_STARTS = 2
MAX_CONCURRENT_PROBES = 1024
MAX_XML_DEPTH = 32
INSTANCE_DEADLINE_FACTOR = 4  # a whole instance request, slow drip included, ends by then
# Connections to the instance, open and kept alive: the sender workers, the poller and the claims share
# them; keeping every one alive avoids a TLS handshake per request (measured: 1.2 connections per job
# with 4 kept alive).
INSTANCE_CONNECTIONS = 12
MAX_PARAMETERS = 1000
# Parsed payloads kept per dispatcher (one sent to many targets is parsed once); bigger ones are not kept.
ASK_CACHE_ENTRIES = 1024
ASK_CACHE_PAYLOAD_CHARS = 16_384
# 'midbox creds test' waits this long for the running appliance to record its audit events.
CREDS_TEST_AUDIT_WAIT_S = 5.0
# The journal and outbox logs drop dead lines (finished jobs, sent results) once they outweigh the live
# ones and pass this bound: a compaction re-seals the live entries, so it runs once per hundreds of jobs.
DURABLE_COMPACT_DEAD_LINES = 1_000
DURABLE_COMPACT_DEAD_BYTES = 8_000_000
MAX_LEDGER_ENTRIES = 1_000_000  # sys_ids run within the replay window (replay protection); ~40 MB on disk

# Shazzam jobs as an instance builds them (port-probe spec + ranges); pairs are capped by Limits.scan_targets.
MAX_SHAZZAM_SPEC_BYTES = 100_000  # the port-probe spec XML
MAX_SHAZZAM_PORT_PROBES = 64
MAX_SHAZZAM_PORTS_PER_PROBE = 1024
MAX_SHAZZAM_RANGES_BYTES = 2_000_000  # the ranges parameter, JSON or XML (excludes are listed one by one)
MAX_SHAZZAM_RANGES = 4096  # include entries
MAX_SHAZZAM_EXCLUDES = 65_536  # exclude entries
MAX_SHAZZAM_WAIT_MS = 30_000  # any <Scanner>_wait*MS or tap interval
MAX_SHAZZAM_SNMP_TAPS = 10
SHAZZAM_BANNER_BYTES = 1024  # BannerTCP reads at most this much of a banner

# What an SSH server may send before authentication (paramiko's banner read has no bound of its own).
SSH_BANNER_BYTES = 64 * 1024  # lines before the SSH- version line, and that line
SSH_PREAUTH_BYTES = 1_000_000  # banner, key exchange and authentication together
# A login (address, port, user) whose shell answered the POSIX check skips it for this long.
SSH_SHELL_MEMO_TTL_S = 600.0
SSH_SHELL_MEMO_ENTRIES = 4096  # logins remembered, the oldest dropped first (under 1 MB when full)

# The HTTP probe's connection pool (per client: plain HTTP shares one, HTTPS has one per server name).
HTTP_MAX_CONNECTIONS = 100  # open at once; more requests wait (httpx's own default)
HTTP_IDLE_CONNECTIONS = 64  # kept open for reuse; the longest idle one is closed first
HTTP_KEEPALIVE_S = 5.0  # an idle connection older than this is closed rather than reused
# An instance proxy's answer to CONNECT (status line and headers); the tunnel opens only after it.
PROXY_ANSWER_BYTES = 16 * 1024

# Health (STATE/status.json, the metrics textfile, ecc_agent_issue records).
HEALTH_EXPIRY_WARNING_S = 7 * 24 * 3600  # a config or certificate expiring within this is a problem
HEALTH_OUTBOX_BACKLOG = 100  # results waiting to be sent: the instance is not taking them
HEALTH_DENIALS = 10  # this many allowlist denials ...
HEALTH_DENIAL_WINDOW_S = 3600  # ... within this window: the instance's ranges and the config disagree
HEALTH_STALE_POLLS = 3  # no successful poll within this many poll intervals: 'midbox status' exits 3
LATENCY_BUCKETS_MS = (10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000)
MAX_STATUS_BYTES = 1_000_000  # status.json as 'midbox status' reads it

# A signed config delivered through the instance (topic midbox.config): base64 of a config of at most
# MAX_CONFIG_BYTES (1,333,336 chars) and of its signature file (hardening.signing.envelope.MAX_ENVELOPE_BYTES,
# 21,336 chars), in a <parameters> payload. Checked before the payload is parsed.
MAX_CONFIG_PUSH_PAYLOAD_BYTES = 1_360_000
MAX_CONFIG_PUSH_B64_CHARS = 1_333_336  # the config parameter
MAX_SIGNATURE_PUSH_B64_CHARS = 21_336  # the signature parameter


@dataclass(frozen=True)
class Limits:
    """The caps one appliance runs with; built from the config and the ceilings above."""

    payload_bytes: int = MAX_PAYLOAD_BYTES
    concurrent_probes: int = 64
    poll_batch: int = 50
    probe_timeout_s: float = 60.0
    http_response_bytes: int = 5_000_000
    http_timeout_s: float = 30.0
    ssh_output_bytes: int = 1_000_000
    ssh_stdin_bytes: int = 1_000_000  # a ${File:...} script sent on stdin (it is never written on the target)
    ssh_command_timeout_s: float = 60.0
    snmp_varbinds: int = 100_000
    # The SNMP result tree, serialised; half the MID's payload cap leaves room for the parameters echo.
    snmp_result_bytes: int = 10_000_000
    # Credentials tried for one job before giving up (each failed try costs a login attempt on the target).
    credential_attempts: int = 8
    # Targets whose working credential is remembered (STATE_DIR/affinity.json); the oldest go first.
    affinity_entries: int = 65_536
    scan_targets: int = 65_536
    # Probe concurrency. sshd's default MaxStartups is 10:30:100; one snmpd overflowed its UDP receive
    # buffer under a burst of 400 requests; a connect scan must not flood a network.
    ssh_connections: int = 16  # SSH sessions (one thread each) at once, all targets together
    ssh_per_target: int = 4  # SSH logins under way at once to one address:port (MaxStartups)
    snmp_per_agent: int = 8  # SNMP requests in flight to one agent
    snmp_max_repetitions: int = 50  # varbinds asked for per GETBULK
    # Ranges of one bulk walk fetched at once (each request also takes a snmp_per_agent slot): past 4,
    # the pages fetched twice at range edges cost snmpd more than the overlap saves (measured on snmpd).
    snmp_walk_lanes: int = 4
    scan_rate_per_s: float = 1000.0  # TCP connects started per second, all scans together
    scan_concurrency: int = 256  # TCP connects in flight, all scans together
    scan_per_host: int = 16  # TCP connects in flight to one address
    instance_timeout_s: float = 30.0  # per read; a whole request gets INSTANCE_DEADLINE_FACTOR times this
    instance_response_bytes: int = MAX_INSTANCE_RESPONSE_BYTES
    shutdown_deadline_s: float = 20.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    retry_after_cap_s: float = MAX_RETRY_AFTER_S
    outbox_entries: int = 10_000  # when this many results wait unsent, the appliance stops claiming

    def __post_init__(self) -> None:
        if not 1 <= self.concurrent_probes <= MAX_CONCURRENT_PROBES:
            raise ValueError(f"concurrent_probes must be 1..{MAX_CONCURRENT_PROBES}")
        if not 1 <= self.payload_bytes <= MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload_bytes must be 1..{MAX_PAYLOAD_BYTES}")
        if not 1 <= self.instance_response_bytes <= MAX_INSTANCE_RESPONSE_BYTES:
            raise ValueError(f"instance_response_bytes must be 1..{MAX_INSTANCE_RESPONSE_BYTES}")
        if not 0 <= self.retry_after_cap_s <= MAX_RETRY_AFTER_S:
            raise ValueError(f"retry_after_cap_s must be 0..{MAX_RETRY_AFTER_S:g}")


# Offline release bundles (midbox bundle verify): a bundle is a handful of files around one binary.
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
MAX_BUNDLE_MEMBER_BYTES = 256 * 1024 * 1024
MAX_BUNDLE_MEMBERS = 64

# The audit log: a checkpoint is anchored on the instance at least this often (entries), besides the timer.
AUDIT_CHECKPOINT_ENTRIES = 1000

# Host service integration (midbox service ...).
SERVICE_STOP_TIMEOUT_S = 60.0  # uninstall waits this long for a graceful stop (drain 20 s + checkpoint 10 s)
SERVICE_LOG_BYTES = 10_000_000  # the Windows service's log file, rotated at this size
SERVICE_LOG_BACKUPS = 3
MAX_UNIT_BYTES = 1_000_000  # an existing unit file larger than this is not one midbox wrote
SYSTEMCTL_TIMEOUT_S = 90.0  # enable --now / disable --now wait for a start or a graceful stop
RELOAD_ANSWER_TIMEOUT_S = 30.0  # 'midbox reload' waits this long for the running appliance's verdict
RELOAD_REQUEST_POLL_S = 0.5  # how often the running appliance looks for a reload request

# Upgrades (midbox upgrade): how long a new binary has to show a successful poll before it is rolled back.
UPGRADE_DEADLINE_S = 180.0  # default; a slow first poll (TLS, a busy instance) must fit
UPGRADE_DEADLINE_MAX_S = 3600.0
UPGRADE_WATCH_INTERVAL_S = 0.25  # how often status.json is read while waiting
UPGRADE_RESTART_TIMEOUT_S = 120.0  # one restart command (systemctl restart waits for a graceful stop)
MAX_UPGRADE_STATE_BYTES = 64 * 1024
MAX_UPGRADE_PENDING_AUDIT_BYTES = 256 * 1024  # audit entries waiting for the appliance's next start
