#!/usr/bin/env bash
# Installs the Debian packages distress needs that this machine lacks, from the package lists given (default
# tools/debian-packages.txt): as root or with passwordless sudo it installs them itself; otherwise it stops before
# anything else happens with one line naming the exact command to run. Quiet and quick when nothing is missing.
set -euo pipefail
lists=("$@")
[ ${#lists[@]} -gt 0 ] || lists=("$(dirname "$0")/debian-packages.txt")
for list in "${lists[@]}"; do
  [ -r "$list" ] || { echo "error: cannot read the package list $list" >&2; exit 1; }
done
mapfile -t wanted < <(grep -hv '^[[:space:]]*#' "${lists[@]}" | tr -s '[:space:]' '\n' | sed '/^$/d')

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "error: distress installs its system packages with apt (Debian or Ubuntu); install these or their" \
       "equivalents yourself: ${wanted[*]}" >&2
  exit 1
fi
mapfile -t installed < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${wanted[@]}" 2>/dev/null |
                         awk '$2 == "installed" { print $1 }')
missing=()
for package in "${wanted[@]}"; do
  [[ " ${installed[*]} " == *" $package "* ]] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo)
else
  echo "error: missing Debian packages ${missing[*]}; install them with:" \
       "sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "installing the missing Debian packages: ${missing[*]}"
"${as_root[@]}" apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
