#!/bin/sh
# run.sh installs what the VM lab needs and runs it once: what CI calls.
# Extra arguments go to `go test`, e.g. ./e2e/vmlab/run.sh -run 'TestVMLab'.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/install.sh"
cd "$here/../.."
exec go test ./e2e/vmlab -count=1 -v -timeout 18m "$@"
