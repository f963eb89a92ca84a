# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash
# Sourced by scripts/setup.sh: apt helpers that work on Debian 12 and Debian 13 alike.
#   debian_release            prints the major release (12, 13, ...) from /etc/debian_version
#   debian_install SPEC...    installs what is missing; SPEC is "name" or "alt1|alt2|..."
#                             (the first name apt has a candidate for is used)

debian_release() {
  local v
  v=$(cut -d. -f1 /etc/debian_version 2>/dev/null || true)
  case $v in ''|*[!0-9]*) . /etc/os-release 2>/dev/null; v=${VERSION_ID:-unknown};; esac
  echo "$v"
}

_DEBIAN_APT_UPDATED=""
_debian_apt_update() {
  if [ -z "$_DEBIAN_APT_UPDATED" ]; then
    apt-get update -qq
    _DEBIAN_APT_UPDATED=1
  fi
}

_debian_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
}

_debian_has_candidate() {
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
  [ -n "$c" ] && [ "$c" != "(none)" ]
}

# resolve "a|b|c" to one package name: an installed one, else the first apt offers
_debian_resolve() {
  local spec=$1 alt
  local -a alts
  IFS='|' read -r -a alts <<< "$spec"
  for alt in "${alts[@]}"; do
    if _debian_installed "$alt"; then echo "$alt"; return 0; fi
  done
  [ ${#alts[@]} -eq 1 ] && { echo "${alts[0]}"; return 0; }
  _debian_apt_update
  for alt in "${alts[@]}"; do
    if _debian_has_candidate "$alt"; then echo "$alt"; return 0; fi
  done
  echo "setup: Debian $(debian_release) offers none of: ${alts[*]}" >&2
  return 1
}

debian_install() {
  local spec name
  local -a missing=()
  for spec in "$@"; do
    name=$(_debian_resolve "$spec")
    _debian_installed "$name" || missing+=("$name")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    _debian_apt_update
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}
