#!/usr/bin/env bash
# Install smoke: build the wheel, install it WITHOUT extras into a fresh venv outside the
# checkout, and run the installed `nhi-broker` as a user would (.ci/smoke_install.py):
# --version, `up` (start, one credential, end the task, stop on SIGINT and on SIGTERM), `scan`
# on a small tree, and the errors a base install must give (terraform extra, bad serve config).
#
#   .ci/smoke_install.sh            # by hand; SMOKE_DIR=/tmp/x to keep the venv for a look
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT=$PWD
PYTHON=${PYTHON:-python3}
WORK=${SMOKE_DIR:-$(mktemp -d /tmp/nhi-install-smoke.XXXXXX)}
mkdir -p "$WORK"
case "$WORK" in "$CHECKOUT"/*) echo "SMOKE_DIR must be outside the checkout" >&2; exit 2;; esac

echo "== install smoke in $WORK"
rm -rf "$WORK/dist" "$WORK/venv"
"$PYTHON" -m pip wheel --disable-pip-version-check --no-deps --wheel-dir "$WORK/dist" "$CHECKOUT" \
  > "$WORK/wheel.log" 2>&1 || { cat "$WORK/wheel.log"; exit 1; }
WHEEL=$(ls "$WORK"/dist/nhi_broker-*.whl)
echo "== built $(basename "$WHEEL")"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --disable-pip-version-check --progress-bar off "$WHEEL" > "$WORK/pip.log" 2>&1 \
  || { tail -50 "$WORK/pip.log"; exit 1; }
echo "== installed without extras: $(grep -c . <("$WORK/venv/bin/pip" list --format=freeze)) distributions"
# run from outside the checkout, so nothing of it is importable
cp "$CHECKOUT/.ci/smoke_install.py" "$WORK/smoke_install.py"
(cd "$WORK" && env -u PYTHONPATH "$WORK/venv/bin/python" -P "$WORK/smoke_install.py")
[ -n "${SMOKE_DIR:-}" ] || rm -rf "$WORK"
