#!/bin/bash
# Per-unit keys: enroll units, list them, rotate and revoke their keys.
#
#   scripts/units.sh enroll <hw_id> [--nickname N] [--also-sync URL ...] [--publish]
#   scripts/units.sh list | rotate <hw_id> | revoke <hw_id>
#
# --help (also after each command) for details. Respects CO2_VAR_DIR,
# CO2_DATA_DIR, CO2_URL_KEY and CO2_PUBLIC_URL like the server; run it as the
# service's user.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly PYTHON="${ROOT}/.venv/bin/python"

main() {
  if [[ ! -x "${PYTHON}" ]]; then
    echo "units: error: ${PYTHON} is missing; run scripts/setup-venv.sh first" >&2
    exit 1
  fi
  exec "${PYTHON}" "${ROOT}/scripts/units.py" "$@"
}

main "$@"
