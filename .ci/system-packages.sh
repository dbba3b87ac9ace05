#!/usr/bin/env bash
# Installs the Debian packages the test suite's real components need (PostgreSQL, Chromium)
# where they are missing. Runs apt-get only as root on a Debian-like machine; elsewhere it says
# what is missing and the tests that need it skip with that reason.
set -uo pipefail

# "check|package": check is a shell test that succeeds when the package's program is present.
needs=(
  "ls /usr/lib/postgresql/*/bin/initdb|postgresql"
  "test -x /usr/bin/chromium|chromium"
)

missing=()
for entry in "${needs[@]}"; do
  check=${entry%%|*}
  package=${entry##*|}
  eval "$check" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-packages: missing ${missing[*]} (not root or no apt-get): the tests that need them will skip" >&2
  exit 0
fi
echo "system-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" \
  || echo "system-packages: could not install ${missing[*]}: the tests that need them will skip" >&2
exit 0
