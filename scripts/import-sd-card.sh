#!/bin/bash
# Import a copy of a unit's SD card, brought back from the field, into its
# folder beside what it uploaded:
#
#   scripts/import-sd-card.sh CARD_DIR [--hw-id ID] [--dry-run]
#
# Finds the unit from the card's readings lines and conf/, then per file adds
# what the server lacks (a new file, or the bytes after the server's end) and
# never writes over bytes the server holds: a card file that disagrees with
# them is kept under <hw_id>/superseded/<UTC time>/. Takes the server's locks,
# so it is safe while the server runs; a second run adds nothing. --help for
# details. Respects CO2_DATA_DIR and CO2_VAR_DIR like the server; run it as
# the service's user. The code is the server's (src/co2server/sdcard.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly PYTHON="${ROOT}/.venv/bin/python"

main() {
  if [[ ! -x "${PYTHON}" ]]; then
    echo "import-sd-card: error: ${PYTHON} is missing; run scripts/setup-venv.sh first" >&2
    exit 1
  fi
  PYTHONPATH="${ROOT}/src${PYTHONPATH:+:${PYTHONPATH}}" exec "${PYTHON}" -m co2server.sdcard "$@"
}

main "$@"
