#!/bin/bash
# Publish a code or configuration update for one unit (or all), atomically.
#
#   scripts/new-update.sh <hw_id|all> <update-name> [--flash FILE:DEST ...]
#                         [--conf-patch NAME.json ...] [--new-unit] [--dry-run]
#
# Builds remote_data/<hw_id>/updates/update-<name>/ (flash/<DEST>,
# conf-patch/<NAME>.json) under a hidden name, then renames it into place,
# and prints the listing the unit will get. Refuses names that would not sort
# last and conf patches that are not JSON objects. --help for details.
# Respects CO2_DATA_DIR like the server; run it as the service's user.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly PYTHON="${ROOT}/.venv/bin/python"

main() {
  if [[ ! -x "${PYTHON}" ]]; then
    echo "new-update: error: ${PYTHON} is missing; run scripts/setup-venv.sh first" >&2
    exit 1
  fi
  exec "${PYTHON}" "${ROOT}/scripts/new_update.py" "$@"
}

main "$@"
