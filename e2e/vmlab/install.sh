#!/bin/sh
# install.sh installs the host packages the VM lab needs. It is idempotent:
# packages already present are not fetched again, and apt-get update runs only
# when something is missing. The Debian kernel itself is not installed here; the
# lab downloads it with `apt-get download` into its cache on first use.
set -eu

need=""
command -v qemu-system-x86_64 >/dev/null 2>&1 || need="$need qemu-system-x86"
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx poweroff || need="$need busybox-static"
command -v dpkg-deb >/dev/null 2>&1 || need="$need dpkg"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# The lab fetches its kernel with `apt-get download`, which needs package
# lists; a fresh container has none.
if [ -n "$need" ] || ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
	$SUDO apt-get update -qq
fi

if [ -z "$need" ]; then
	echo "vmlab: host packages present"
	exit 0
fi
echo "vmlab: installing$need"
# --no-install-recommends keeps qemu from pulling in a desktop's worth of UI libraries.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
