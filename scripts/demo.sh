#!/usr/bin/env bash
# Installs the project into .venv and runs the server in demo mode (tiny random weights on
# the CPU) in the foreground, like any server: Ctrl-C stops it. Arguments go to
# `kontext serve` (e.g. --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
cat >&2 <<MESSAGE

Starting the demo server: tiny random weights, so its images are noise. It runs in this
terminal until Ctrl-C. Meanwhile, in another terminal:
    cd $(pwd) && . .venv/bin/activate
    kontext edit photo.jpg "add a bowler hat"      # writes photo-edited.png
or open the playground in a browser at the address in the log below.

MESSAGE
exec .venv/bin/kontext serve --demo "$@"
