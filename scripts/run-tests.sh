#!/bin/bash
# Set up everything the tests need, then run the whole test suite.
#
# - the venv (.venv) with requirements-dev.txt (pytest, Playwright's Python
#   package; uWSGI is compiled from requirements.txt);
# - from Debian's packages: Chromium for the browser tests, strace for the
#   tests that watch the server fsync before it answers, nginx and openssl
#   for the tests of the production front (nginx-co2unit.conf.example, a
#   self-signed certificate, scripts/operators.sh), prometheus, promtool and
#   amtool for the tests of /metrics, the shipped alert rules and the example
#   Alertmanager config, R (Rscript) for the test of database/README.md's R
#   snippet on the research dataset: installed with apt-get
#   when missing and we are root (always so in CI). Elsewhere those tests
#   are reported as skipped, with how to install what they need.
# Extra arguments go to pytest, e.g. scripts/run-tests.sh -k uploads -x
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

find_chromium() {
  command -v chromium || command -v chromium-browser || true
}

# apt-get install, with Debian's policy-rc.d asking the packages not to
# start their services (nginx would take port 80; the tests start their own).
install_without_starting() {
  local policy=/usr/sbin/policy-rc.d rc=0
  if [[ -e "${policy}" ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
    return
  fi
  printf '#!/bin/sh\nexit 101\n' >"${policy}"
  chmod +x "${policy}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 || rc=$?
  rm -f "${policy}"
  return "${rc}"
}

ensure_packages() {
  local missing=()
  [[ -n "$(find_chromium)" ]] || missing+=(chromium fonts-dejavu-core)
  command -v strace >/dev/null || missing+=(strace)
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
  command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
  command -v Rscript >/dev/null || missing+=(r-base-core)
  if [[ "${#missing[@]}" -eq 0 ]]; then
    return 0
  fi
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "run-tests: installing Debian's ${missing[*]} for the tests" >&2
    apt-get update -q >&2
    install_without_starting "${missing[@]}"
  elif [[ -n "$(find_chromium)" ]]; then
    return 0  # strace, nginx, openssl or prometheus is missing: those tests say so when skipped
  elif [[ "${CI:-}" == "true" ]]; then
    echo "error: Chromium is missing and cannot be installed (not root or no apt-get)" >&2
    exit 1
  else
    export CO2_BROWSER_SKIP="Chromium is not installed; as root run: apt-get install chromium"
    echo "run-tests: ${CO2_BROWSER_SKIP}; browser tests will be skipped" >&2
  fi
}

main() {
  "${ROOT}/scripts/setup-venv.sh" "${ROOT}/requirements-dev.txt"
  ensure_packages
  export CO2_CHROMIUM="${CO2_CHROMIUM:-$(find_chromium)}"
  cd "${ROOT}"
  local rc=0
  "${ROOT}/.venv/bin/python" -m pytest "$@" || rc=$?
  if [[ "${rc}" -eq 5 ]]; then
    echo "error: pytest collected no tests" >&2
  fi
  return "${rc}"
}

main "$@"
