#!/bin/bash
# Create the project's virtual environment in .venv (when missing) and install
# the packages from requirements.txt (or the file given as $1) into it.
# Re-running is cheap: pip is only called when the requirements file changed
# since the last successful install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly VENV="${VENV:-${ROOT}/.venv}"
readonly REQS="${1:-${ROOT}/requirements.txt}"

main() {
  local python="${PYTHON:-python3}"
  if [[ ! -x "${VENV}/bin/python" ]]; then
    if ! "${python}" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "error: ${python} is older than Python 3.11; set PYTHON=python3.11" >&2
      exit 1
    fi
    echo "setup-venv: creating ${VENV}" >&2
    if ! "${python}" -m venv "${VENV}"; then
      echo "error: could not create a venv; on Debian: apt-get install python3-venv python3-dev" >&2
      exit 1
    fi
  fi
  local stamp
  stamp="${VENV}/.installed-$(basename "${REQS}")"
  local want
  want="$(cat "${REQS}" "${ROOT}/requirements.txt" | sha256sum | cut -d' ' -f1)"
  if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
    return 0
  fi
  if [[ ! -x "${VENV}/bin/uwsgi" ]]; then
    local include
    include="$("${VENV}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    if [[ ! -f "${include}/Python.h" ]] || ! command -v gcc >/dev/null; then
      echo "error: uWSGI is compiled from source and needs gcc and the Python headers (${include}/Python.h)" >&2
      echo "       on Debian/Ubuntu: sudo apt-get install gcc python3-dev" >&2
      exit 1
    fi
  fi
  echo "setup-venv: installing ${REQS} (uWSGI compiles from source: a minute or two the first time)" >&2
  if ! "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check -r "${REQS}"; then
    echo "error: pip could not install ${REQS}; see its message above" >&2
    exit 1
  fi
  echo "${want}" > "${stamp}"
}

main "$@"
