#!/bin/sh
# bin/run-migrate.sh of the glitchtip STAND-IN image: the stand-in's migrate step.
# Runs in: a container on the throwaway server, as uid 5000, WORKDIR /code.
set -eu
cd /code
exec python3 -m glitchtip_standin.migrate "$@"
