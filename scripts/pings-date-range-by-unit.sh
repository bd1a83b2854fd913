#!/bin/bash
# Count the pings of each unit between two dates (UTC, both included):
#
#   scripts/pings-date-range-by-unit.sh [START [END]]     e.g. 2019-10-01 2019-10-31
#
# START defaults to the beginning, END to the end of the logs. One line per
# unit that pinged in the range, by hardware ID:
#
#   hardware ID <TAB> nickname (latest) <TAB> pings <TAB> first <TAB> last
#
# Reads <var dir>/pings/pings-*.tsv (CO2_VAR_DIR, default var/ in the checkout).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly DATE_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}$'

usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

var_dir() {
  local dir="${CO2_VAR_DIR:-var}"
  [[ "${dir}" == /* ]] || dir="${ROOT}/${dir}"
  printf '%s\n' "${dir}"
}

main() {
  if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    usage
    exit 0
  fi
  if [[ $# -gt 2 ]]; then
    echo "pings-date-range-by-unit: error: at most two dates, START and END (see --help)" >&2
    exit 2
  fi
  local start="${1:-0000-00-00}" end="${2:-9999-99-99}"
  local d
  for d in "${start}" "${end}"; do
    if [[ ! "${d}" =~ ${DATE_RE} ]]; then
      echo "pings-date-range-by-unit: error: '${d}' is not a date like 2019-10-31" >&2
      exit 2
    fi
  done
  if [[ "${start}" > "${end}" ]]; then
    echo "pings-date-range-by-unit: error: START ${start} is after END ${end}" >&2
    exit 2
  fi
  local pings_dir
  pings_dir="$(var_dir)/pings"
  shopt -s nullglob
  local files=("${pings_dir}"/pings-*.tsv)
  if [[ ${#files[@]} -eq 0 ]]; then
    echo "pings-date-range-by-unit: no pings logs in ${pings_dir}" >&2
    exit 0
  fi
  awk -F '\t' -v start="${start}" -v end="${end}" '
    $1 ~ /^[0-9][0-9][0-9][0-9]-/ && NF >= 3 && $2 != "" {
      day = substr($1, 1, 10)
      if (day < start || day > end) next
      n[$2]++
      if (!($2 in first) || $1 < first[$2]) first[$2] = $1
      if (!($2 in last) || $1 > last[$2]) { last[$2] = $1; nick[$2] = $3 }
    }
    END {
      for (id in n)
        printf "%s\t%s\t%d\t%s\t%s\n", id, nick[id], n[id], substr(first[id], 1, 19), substr(last[id], 1, 19)
    }
  ' "${files[@]}" | sort
}

main "$@"
