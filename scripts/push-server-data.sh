#!/bin/bash
# Copy this server's pings logs into the data folder, as
#
#   <data dir>/server-<hostname>/var/pings/pings-NNNN.tsv
#
# so that the data of several servers (units send everything to each server
# they are configured with) can be gathered and analysed together. Safe to
# repeat: only what changed is copied (rsync when installed, else cp into a
# private temporary folder, then renamed into place). Usage:
#
#   scripts/push-server-data.sh [--dest DATA_DIR] [--host NAME]
#
# DATA_DIR defaults to CO2_DATA_DIR (remote_data/ in the checkout), NAME to
# the short hostname. The pings logs come from CO2_VAR_DIR (default var/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

in_checkout() {
  local dir="$1"
  [[ "${dir}" == /* ]] || dir="${ROOT}/${dir}"
  printf '%s\n' "${dir}"
}

# The copies are made in a private folder (mktemp -d: created new, mode 0700,
# so nothing planted can stand at a copy's name) and renamed over the log's
# name (rename replaces a link there, never writes through it); the folder
# goes when the script ends, copied or not.
TMP_DIR=""

remove_tmp_dir() {
  if [[ -n "${TMP_DIR}" ]]; then
    rm -rf -- "${TMP_DIR}"
  fi
}

copy_changed() {
  local src="$1" dest="$2" file name
  trap remove_tmp_dir EXIT
  TMP_DIR="$(mktemp -d "${dest}/.push-server-data.XXXXXX")"
  for file in "${src}"/pings-*.tsv; do
    name="$(basename "${file}")"
    if [[ -f "${dest}/${name}" && ! -L "${dest}/${name}" ]] && cmp -s "${file}" "${dest}/${name}"; then
      continue
    fi
    cp -p -- "${file}" "${TMP_DIR}/${name}"
    mv -f -T -- "${TMP_DIR}/${name}" "${dest}/${name}"
    echo "push-server-data: copied ${name}"
  done
}

main() {
  local dest_root host
  dest_root="$(in_checkout "${CO2_DATA_DIR:-remote_data}")"
  host="$(hostname -s 2>/dev/null || hostname)"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --help | -h) usage; exit 0 ;;
      --dest) dest_root="$(in_checkout "${2:?--dest needs a folder}")"; shift 2 ;;
      --host) host="${2:?--host needs a name}"; shift 2 ;;
      *) echo "push-server-data: error: unexpected argument '$1' (see --help)" >&2; exit 2 ;;
    esac
  done
  if [[ ! "${host}" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; then
    echo "push-server-data: error: host name '${host}' is not a plain name; use --host" >&2
    exit 2
  fi
  local src dest
  src="$(in_checkout "${CO2_VAR_DIR:-var}")/pings"
  dest="${dest_root}/server-${host}/var/pings"
  shopt -s nullglob
  local files=("${src}"/pings-*.tsv)
  if [[ ${#files[@]} -eq 0 ]]; then
    echo "push-server-data: no pings logs in ${src}; nothing to copy" >&2
    exit 0
  fi
  local part
  for part in "${dest_root}/server-${host}" "${dest_root}/server-${host}/var" "${dest}"; do
    if [[ -L "${part}" ]]; then
      echo "push-server-data: error: ${part} is a symbolic link; refusing to write through it" >&2
      exit 1
    fi
  done
  mkdir -p -- "${dest}"
  if command -v rsync >/dev/null; then
    rsync -a --itemize-changes -- "${files[@]}" "${dest}/"
  else
    copy_changed "${src}" "${dest}"
  fi
  echo "push-server-data: ${#files[@]} pings logs in ${dest}"
}

main "$@"
