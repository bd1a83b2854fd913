#!/bin/bash
# Manage the operators who may see the people's pages: the htpasswd file that
# nginx checks for HTTP basic auth (auth_basic_user_file). Usage:
#
#   scripts/operators.sh add NAME      add NAME, or change NAME's password
#   scripts/operators.sh remove NAME   remove NAME
#   scripts/operators.sh list          the names, one per line
#
# add asks for the password twice on the terminal (not echoed), or reads one
# line from stdin when that is not a terminal:
#   printf '%s\n' "$pw" | scripts/operators.sh add alice
# It is never taken from the command line or the environment, and it is
# hashed with SHA-512 crypt (openssl passwd -6, fed on stdin), which nginx
# verifies with crypt(3). The file is CO2_HTPASSWD (default
# /etc/nginx/co2unit.htpasswd; a relative path is taken from the checkout),
# created when missing (mode 640; group www-data under /etc/nginx as root)
# and always replaced in one step. nginx reads it on every request: no reload.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly MAX_PASSWORD_BYTES=256  # openssl passwd -6 silently hashes only the first 256 bytes

TMP_FILE=""

usage() {
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

fail() {
  local code="$1"
  shift
  echo "operators: error: $*" >&2
  exit "${code}"
}

cleanup() {
  if [[ -n "${TMP_FILE}" ]]; then
    rm -f -- "${TMP_FILE}"
  fi
}

htpasswd_file() {
  local file="${CO2_HTPASSWD:-/etc/nginx/co2unit.htpasswd}"
  [[ -n "${file}" ]] || fail 2 "CO2_HTPASSWD is set but empty; unset it or name a file"
  [[ "${file}" == /* ]] || file="${ROOT}/${file}"
  if [[ -L "${file}" ]]; then
    file="$(readlink -f -- "${file}")"  # replace the file the link points to, not the link
  fi
  printf '%s\n' "${file}"
}

check_name() {
  local name="$1"
  [[ -n "${name}" ]] || fail 2 "the operator's name is empty"
  if [[ "${name}" =~ [:[:space:][:cntrl:]] ]]; then
    fail 2 "operator name '${name//[[:cntrl:]]/?}' contains ':', whitespace or a control character; choose a plain name such as alice"
  fi
  if [[ "${name}" == \#* ]]; then
    fail 2 "operator name '${name}' starts with '#', which nginx reads as a comment; choose a plain name such as alice"
  fi
}

# The password, from the terminal (twice, not echoed) or one line of stdin.
read_password() {
  local name="$1" pw="" again=""
  if [[ -t 0 ]]; then
    IFS= read -r -s -p "Password for ${name}: " pw || true
    echo >&2
    IFS= read -r -s -p "Password for ${name} (again): " again || true
    echo >&2
    [[ "${pw}" == "${again}" ]] || fail 2 "the two passwords differ; nothing changed, try again"
  else
    IFS= read -r pw || true
    pw="${pw%$'\r'}"  # a Windows line end
  fi
  [[ -n "${pw}" ]] || fail 2 "empty password refused; nothing changed"
  local bytes
  bytes="$(LC_ALL=C; printf '%s' "${#pw}")"
  if ((bytes > MAX_PASSWORD_BYTES)); then
    fail 2 "the password is ${bytes} bytes; at most ${MAX_PASSWORD_BYTES} (openssl would hash only the first ${MAX_PASSWORD_BYTES})"
  fi
  PASSWORD="${pw}"
}

# SHA-512 crypt of $PASSWORD; the password goes to openssl on stdin only.
hash_password() {
  local hash
  if ! hash="$(printf '%s\n' "${PASSWORD}" | openssl passwd -6 -stdin)"; then
    fail 1 "openssl passwd -6 failed; nothing changed"
  fi
  if [[ ! "${hash}" =~ ^\$6\$[./0-9A-Za-z]+\$[./0-9A-Za-z]+$ ]]; then
    fail 1 "openssl passwd -6 did not give a SHA-512 crypt hash; is openssl older than 1.1.1? nothing changed"
  fi
  printf '%s\n' "${hash}"
}

# A temporary file next to $1 with the mode, owner and group the result must have.
make_temp() {
  local file="$1" dir
  dir="$(dirname -- "${file}")"
  [[ -d "${dir}" ]] || fail 1 "folder ${dir} does not exist; install nginx (apt-get install nginx) or set CO2_HTPASSWD"
  if ! TMP_FILE="$(mktemp -- "${dir}/.$(basename -- "${file}").XXXXXX" 2>/dev/null)"; then
    TMP_FILE=""
    fail 1 "cannot write in ${dir}; run as a user who may (sudo scripts/operators.sh ...)"
  fi
  if [[ -e "${file}" ]]; then
    chmod --reference="${file}" -- "${TMP_FILE}"
    if [[ "$(id -u)" == 0 ]]; then
      chown --reference="${file}" -- "${TMP_FILE}"
    else
      chgrp --reference="${file}" -- "${TMP_FILE}" 2>/dev/null ||
        echo "operators: warning: could not keep the group of ${file}; check that nginx can still read it" >&2
    fi
  else
    chmod 640 -- "${TMP_FILE}"
    if [[ "$(id -u)" == 0 && "${file}" == /etc/nginx/* ]] && getent group www-data >/dev/null; then
      chgrp www-data -- "${TMP_FILE}"
    fi
  fi
}

# Move the finished temporary file over $1, on disk first.
commit_temp() {
  local file="$1"
  sync -- "${TMP_FILE}" 2>/dev/null || true
  mv -f -- "${TMP_FILE}" "${file}"
  TMP_FILE=""
}

# One run at a time changes the file (a lock on its folder, when flock exists).
lock_folder() {
  local dir
  dir="$(dirname -- "$1")"
  if [[ -d "${dir}" ]] && command -v flock >/dev/null; then
    exec 9<"${dir}"
    flock 9
  fi
}

cmd_add() {
  local name="$1" file="$2"
  command -v openssl >/dev/null ||
    fail 1 "openssl is not installed; install it with: sudo apt-get install openssl"
  PASSWORD=""
  read_password "${name}"
  local hash
  hash="$(hash_password)"
  PASSWORD=""
  lock_folder "${file}"
  make_temp "${file}"
  local line found=0
  if [[ -f "${file}" ]]; then
    while IFS= read -r line || [[ -n "${line}" ]]; do
      if [[ "${line}" == "${name}:"* ]]; then
        ((found += 1))
        ((found > 1)) || printf '%s:%s\n' "${name}" "${hash}"  # later duplicates are dropped
      else
        printf '%s\n' "${line}"
      fi
    done <"${file}" >"${TMP_FILE}"
  fi
  if ((found == 0)); then
    printf '%s:%s\n' "${name}" "${hash}" >>"${TMP_FILE}"
  fi
  local created=0
  [[ -e "${file}" ]] || created=1
  commit_temp "${file}"
  if ((created)); then
    echo "operators: created ${file} ($(stat -c '%U:%G, mode %a' -- "${file}")); nginx's worker user must be able to read it" >&2
  fi
  if ((found == 0)); then
    echo "operators: added ${name} to ${file}"
  else
    echo "operators: changed the password of ${name} in ${file}"
  fi
}

cmd_remove() {
  local name="$1" file="$2"
  [[ -f "${file}" ]] || fail 1 "no operator '${name}': ${file} does not exist"
  lock_folder "${file}"
  make_temp "${file}"
  local line found=0
  while IFS= read -r line || [[ -n "${line}" ]]; do
    if [[ "${line}" == "${name}:"* ]]; then
      ((found += 1))
    else
      printf '%s\n' "${line}"
    fi
  done <"${file}" >"${TMP_FILE}"
  ((found > 0)) || fail 1 "no operator '${name}' in ${file}; the names are: scripts/operators.sh list"
  commit_temp "${file}"
  echo "operators: removed ${name} from ${file}"
}

cmd_list() {
  local file="$1" line
  if [[ ! -f "${file}" ]]; then
    echo "operators: no operators yet: ${file} does not exist (scripts/operators.sh add NAME)" >&2
    return 0
  fi
  while IFS= read -r line || [[ -n "${line}" ]]; do
    [[ "${line}" == *:* && "${line}" != \#* ]] || continue
    printf '%s\n' "${line%%:*}"
  done <"${file}"
}

main() {
  trap cleanup EXIT
  local command="${1:-}"
  case "${command}" in
    --help | -h) usage; exit 0 ;;
    add | remove)
      [[ $# -ge 2 ]] || fail 2 "${command} needs a NAME: scripts/operators.sh ${command} NAME"
      if [[ $# -gt 2 ]]; then
        if [[ "${command}" == add ]]; then
          fail 2 "unexpected argument after NAME; the password is read from the terminal or stdin, never from the command line"
        fi
        fail 2 "unexpected argument '$3' (see --help)"
      fi
      check_name "$2"
      local file
      file="$(htpasswd_file)"
      "cmd_${command}" "$2" "${file}"
      ;;
    list)
      [[ $# -eq 1 ]] || fail 2 "unexpected argument '$2' (see --help)"
      cmd_list "$(htpasswd_file)"
      ;;
    "") fail 2 "missing command: add NAME, remove NAME or list (see --help)" ;;
    *) fail 2 "unknown command '${command}'; use add NAME, remove NAME or list (see --help)" ;;
  esac
}

main "$@"
