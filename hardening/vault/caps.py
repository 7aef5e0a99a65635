"""Every cap of the credential vault. ``hardening`` cannot import ``appliance.limits``, so they live here."""

from __future__ import annotations

MAX_STORE_BYTES = 8 * 1024 * 1024
MAX_RECORDS = 1024
MAX_ALIAS_CHARS = 64
MAX_USER_BYTES = 256
MAX_OPTIONS = 8
MAX_OPTION_KEY_BYTES = 32
MAX_OPTION_VALUE_BYTES = 256
MAX_SECRETS_PER_RECORD = 4
MAX_SECRET_BYTES = 64 * 1024  # an SSH private key with a long comment fits
MAX_HOST_KEY_FILE_BYTES = 4096  # a DPAPI blob of 32 bytes is well under this
MAX_PASSPHRASE_BYTES = 1024
MAX_GENERATION_FILE_BYTES = 256
LOCK_TIMEOUT_S = 10.0

# Argon2id bounds a header may carry: the floor keeps the passphrase KDF meaningful, the ceiling
# stops an edited header from making every open allocate gigabytes.
ARGON2_MIN_MEMORY_KIB = 19 * 1024
ARGON2_MAX_MEMORY_KIB = 1024 * 1024
ARGON2_MIN_ITERATIONS = 1
ARGON2_MAX_ITERATIONS = 16
ARGON2_MAX_LANES = 16
