#!/bin/bash
# List every unit that ever pinged this server with the time of its last
# ping, oldest first (so the units that went quiet are at the top):
#
#   nickname <TAB> last ping (UTC, to the second) <TAB> hardware ID
#
# Reads the pings logs of record, <var dir>/pings/pings-*.tsv (CO2_VAR_DIR,
# default var/ in the checkout), not the database, so it works anywhere a
# copy of the logs is. Usage: scripts/units-last-seen.sh [--help]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

var_dir() {
  local dir="${CO2_VAR_DIR:-var}"
  [[ "${dir}" == /* ]] || dir="${ROOT}/${dir}"
  printf '%s\n' "${dir}"
}

main() {
  if [[ $# -gt 0 ]]; then
    if [[ "$1" == "--help" || "$1" == "-h" ]]; then
      usage
      exit 0
    fi
    echo "units-last-seen: error: unexpected argument '$1' (see --help)" >&2
    exit 2
  fi
  local pings_dir
  pings_dir="$(var_dir)/pings"
  shopt -s nullglob
  local files=("${pings_dir}"/pings-*.tsv)
  if [[ ${#files[@]} -eq 0 ]]; then
    echo "units-last-seen: no pings logs in ${pings_dir}" >&2
    exit 0
  fi
  # Lines that do not start with a date are skipped (a broken line).
  awk -F '\t' '
    $1 ~ /^[0-9][0-9][0-9][0-9]-/ && NF >= 3 && $2 != "" {
      if (!($2 in last) || $1 > last[$2]) { last[$2] = $1; nick[$2] = $3 }
    }
    END { for (id in last) printf "%s\t%s\t%s\n", nick[id], substr(last[id], 1, 19), id }
  ' "${files[@]}" | sort -t "$(printf '\t')" -k2,2 -k3,3
}

main "$@"
