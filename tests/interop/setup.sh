#!/usr/bin/env bash
# Installs the foreign KRPC implementations the interop tests (tests/tests/interop_*.rs) run
# against; see docs/interop.md. Idempotent; safe to run on every CI run.
#
#   - bittorrent-dht 11.0.12, k-rpc 5.1.0 and sodium-universal 5.0.1 (the ed25519 `verify` and
#     signing bittorrent-dht needs for BEP 44 mutable items) from npm, into tests/interop/node_modules
#     (versions pinned in package.json, the whole tree in package-lock.json);
#   - libtorrent 2.1.1 (C++ libtorrent with its Python bindings, a binary wheel) from PyPI.
#
# Needs Node.js (>= 18) with npm, and Python 3 with pip. KRPC_INTEROP_PYTHON picks the Python
# (default python3); the tests use the same variable.
set -euo pipefail
cd "$(dirname "$0")"

python="${KRPC_INTEROP_PYTHON:-python3}"

echo "== npm: bittorrent-dht, k-rpc, sodium-universal (tests/interop/node_modules)"
npm ci --no-audit --no-fund
node -e 'for (const p of ["bittorrent-dht", "k-rpc", "sodium-universal"]) console.log(p, require(`./node_modules/${p}/package.json`).version)'

echo "== pip: libtorrent"
"$python" -m pip install --disable-pip-version-check --quiet libtorrent==2.1.1
"$python" -c 'import libtorrent; print("libtorrent", libtorrent.__version__)'
