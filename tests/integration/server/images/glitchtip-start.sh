#!/bin/sh
# bin/start.sh of the glitchtip STAND-IN image: runs the stand-in server (tests/standins/glitchtip).
# Runs in: a container on the throwaway server, as uid 5000, WORKDIR /code.
set -eu
cd /code
exec python3 -m glitchtip_standin.start "$@"
