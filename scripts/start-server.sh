#!/bin/bash
# Run the CO2 Observation Unit server under uWSGI.
#
# Sets up what is missing first: the venv (.venv, from requirements.txt),
# server.ini (copied from server.ini.example) and the data folders; then
# replaces itself with uWSGI. This is the README's quick start and what
# co2unit-server.service.example runs. Settings: the CO2_* environment
# variables (README, "Configure"); extra arguments go to uwsgi.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

main() {
  if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
  fi
  "${ROOT}/scripts/setup-venv.sh"
  if [[ ! -f "${ROOT}/server.ini" ]]; then
    cp "${ROOT}/server.ini.example" "${ROOT}/server.ini"
    echo "start-server: created server.ini from server.ini.example" >&2
  fi
  cd "${ROOT}"
  local where="HTTP on ${CO2_HTTP_SOCKET:-:8080}"
  if [[ -n "${CO2_UWSGI_SOCKET:-}" ]]; then
    where="the uwsgi protocol on ${CO2_UWSGI_SOCKET}, for nginx"
  fi
  echo "start-server: uWSGI, ${where}, data in ${CO2_DATA_DIR:-remote_data}, var in ${CO2_VAR_DIR:-var}" >&2
  exec "${ROOT}/.venv/bin/uwsgi" --ini "${ROOT}/server.ini" "$@"
}

main "$@"
