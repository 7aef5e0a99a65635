#!/bin/sh
# Install midbox from this unpacked bundle. Uses no network: everything it needs is in this folder.
#
#   sudo ./install.sh [--prefix /usr/local] [--root DIR] [--no-user] [--user NAME]
#
# Verify the bundle's signature first (see INSTALL.md); this script then checks that no file
# changed since (SHA256SUMS), installs the binary, creates the midbox system user and the state
# folder, and puts the systemd unit template in place. It neither enables nor starts the service.
# --root DIR installs below DIR instead of / (a staging tree; no user is created, systemd untouched;
# with --user, an existing user NAME is given the state folder there). --user NAME: the service user
# (default midbox).
set -eu
umask 022
prefix=/usr/local
root=""
make_user=1
user=midbox
user_given=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --root) root="$2"; shift 2 ;;
    --no-user) make_user=0; shift ;;
    --user) user="$2"; user_given=1; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

echo "1/5 checking files against SHA256SUMS"
sha256sum --check --strict --quiet SHA256SUMS || {
  echo "install.sh: a file differs from SHA256SUMS: do not install this bundle" >&2; exit 1; }

bin="$prefix/bin/midbox"
owner=""
if [ "$(id -u)" -eq 0 ] && [ -z "$root" ]; then owner="-o root -g root"; fi

echo "2/5 installing $bin"
# shellcheck disable=SC2086 # owner is empty or two options
install -d -m 0755 "$root$prefix/bin" "$root$prefix/share/doc/midbox"
# shellcheck disable=SC2086
install -m 0755 $owner midbox "$root$bin"
install -m 0644 ./*.md midbox.cdx.json "$root$prefix/share/doc/midbox/"
# The man page and bash completion go where man and bash-completion look, if this system has them.
man_dir="$root/usr/share/man/man1"
completion_dir="$root/usr/share/bash-completion/completions"
if [ -f midbox.1 ] && [ -d "$man_dir" ]; then install -m 0644 midbox.1 "$man_dir/midbox.1"; fi
if [ -f midbox.bash-completion ] && [ -d "$completion_dir" ]; then
  install -m 0644 midbox.bash-completion "$completion_dir/midbox"
fi

echo "3/5 system user and folders"
if [ -z "$root" ] && [ "$make_user" -eq 1 ] && ! getent passwd "$user" >/dev/null 2>&1; then
  useradd --system --user-group --home-dir /var/lib/midbox --no-create-home \
    --shell /usr/sbin/nologin "$user"
fi
install -d -m 0700 "$root/var/lib/midbox"
install -d -m 0750 "$root/etc/midbox"
if { [ -z "$root" ] || [ "$user_given" -eq 1 ]; } && getent passwd "$user" >/dev/null 2>&1; then
  group=$(id -gn "$user")
  # The service user owns its state; /etc/midbox is root's, readable by the service's group.
  chown "$user:$group" "$root/var/lib/midbox"
  chown "root:$group" "$root/etc/midbox"
fi

echo "4/5 systemd unit template"
install -d -m 0755 "$root/etc/systemd/system"
sed -e "s|@BINARY@|$bin|g" -e "s|^User=midbox\$|User=$user|" -e "s|^Group=midbox\$|Group=$user|" \
  midbox.service > "$root/etc/systemd/system/midbox.service.tmp"
chmod 0644 "$root/etc/systemd/system/midbox.service.tmp"
mv -f "$root/etc/systemd/system/midbox.service.tmp" "$root/etc/systemd/system/midbox.service"
if [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload
fi

echo "5/5 checking the installed binary"
"$root$bin" --version
cat <<NEXT
installed. Next, as root (see $prefix/share/doc/midbox/INSTALL.md); on /var/lib/midbox midbox acts as
the service user $user itself, so everything it writes there stays readable by the service:
  midbox enroll --name NAME --out /etc/midbox          the appliance's key (encrypted) and CSR
  (send /etc/midbox/appliance.csr to the CA that signs appliance certificates; with its answer:)
  midbox enroll --install CERT --ca-file CLIENT-CA.pem --out /etc/midbox
  midbox trust init --pubkey ADMIN.pub [...] --threshold N --name NAME
  copy the signed config to /etc/midbox/midbox.toml (+ .sig) and the instance CA beside it, then:
  midbox config verify /etc/midbox/midbox.toml
  midbox creds add ALIAS --type TYPE --user USER       each credential alias the config names
  midbox hosts pin HOST KEY.pub                        each SSH target's host key
  midbox doctor --config /etc/midbox/midbox.toml
  midbox service render-unit --config /etc/midbox/midbox.toml > /etc/systemd/system/midbox.service
  systemctl daemon-reload && systemctl enable --now midbox
  (by hand, as the service runs it: runuser -u $user -- midbox run --config /etc/midbox/midbox.toml)
NEXT
