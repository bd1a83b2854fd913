#!/bin/bash
# Bring the researchers' database, plots, pages and research dataset up to
# date: runs `make -C database` on the server's folders (by default the
# targets web and export, with --keep-going so that a failing plot never keeps
# the export from being written). This is the job a systemd timer
# (co2unit-summaries.timer.example) or cron calls. After a successful run it
# touches <var>/pipeline-last-ok (its mtime is the server's
# co2server_pipeline_last_success_timestamp_seconds metric).
#
# Folders follow the server's settings when set, else the checkout's defaults:
#   CO2_DATA_DIR (remote_data/)  CO2_VAR_DIR (var/)  CO2_DB_PATH (<var>/db.sqlite3)
#   CO2_HW_ID_PATTERN (which folders are units)
# A lock (flock on <var>/locks/make-summaries.lock) makes a second run wait
# until the first is done, so two timer runs never overlap.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/make-summaries.sh [--help] [MAKE_TARGET_OR_VARIABLE...]

Runs make in database/ on the server's folders, one run at a time.
Examples:
  scripts/make-summaries.sh            # import, then plots, pages and the export
  scripts/make-summaries.sh import     # only the database
Environment: CO2_DATA_DIR, CO2_VAR_DIR, CO2_DB_PATH, CO2_HW_ID_PATTERN
(relative paths are relative to the checkout, as for the server).
USAGE
}

# Print an absolute path for $1, taken relative to the checkout.
absolute() {
  if [[ "$1" == /* ]]; then
    echo "$1"
  else
    echo "${ROOT}/$1"
  fi
}

main() {
  if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    usage
    return 0
  fi
  local data_dir var_dir db_file
  data_dir="$(absolute "${CO2_DATA_DIR:-remote_data}")"
  var_dir="$(absolute "${CO2_VAR_DIR:-var}")"
  db_file="${CO2_DB_PATH:-}"
  if [[ -z "${db_file}" ]]; then
    db_file="${var_dir}/db.sqlite3"
  fi
  db_file="$(absolute "${db_file}")"
  local vars=(
    "DATA_DIR=${data_dir}"
    "DB_DIR=$(dirname "${db_file}")"
    "DB_FILE=${db_file}"
    "PINGS_DIR=${var_dir}/pings"
    "WEB_PUB_DIR=${var_dir}/pub"
  )
  if [[ -n "${CO2_HW_ID_PATTERN:-}" ]]; then
    vars+=("UNIT_PATTERN=${CO2_HW_ID_PATTERN}")
  fi
  mkdir -p "${var_dir}/locks"
  local lock="${var_dir}/locks/make-summaries.lock"
  exec 9>>"${lock}"
  if ! flock --nonblock 9; then
    echo "make-summaries: another run holds ${lock}; waiting for it" >&2
    flock 9
  fi
  local targets=("$@")
  if [[ ${#targets[@]} == 0 ]]; then
    targets=(--keep-going web export)
  fi
  make -C "${ROOT}/database" "${vars[@]}" "${targets[@]}"
  touch "${var_dir}/pipeline-last-ok"
}

main "$@"
