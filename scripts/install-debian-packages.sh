#!/usr/bin/env bash
# Debian packages the test suite needs: Chromium for the browser tests, Dovecot for the
# IMAP tests, the sqlite3 and PostgreSQL clients for benchmarks and backups.
set -euo pipefail
packages=(chromium dovecot-imapd openssl sqlite3 postgresql-client)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "Debian packages already installed: ${packages[*]}"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages: ${missing[*]}; run this script as root." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
