"""``midbox upgrade``: install a verified release bundle, restart, and roll back if it does not poll.

The steps, in order (each one recorded in ``.midbox-upgrade.json`` beside the binary before the next
begins, so a second ``midbox upgrade`` finishes or rolls back an upgrade whose upgrader died):

1. verify the bundle exactly as ``midbox bundle verify`` does, and read its signed version and platform;
2. refuse a downgrade unless asked for one;
3. extract the binary beside the installed one, checking it against the verified SHA-256 again;
4. keep the installed binary as ``midbox.previous`` and swap the new one in by a rename;
5. restart through the service manager (systemd, the Windows SCM, or a given command);
6. wait for ``status.json`` to show a successful poll by the new version, newer than the restart;
7. else put the previous binary back and restart again.
"""
