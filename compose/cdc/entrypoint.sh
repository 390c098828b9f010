#!/bin/sh
# For every NAME_FILE=/path in the environment, export NAME=<contents of /path> (the compose
# secrets convention), then run the command. Passwords never sit in the compose file or image.
set -eu
for name in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)_FILE=.*/\1/p'); do
    eval "path=\${${name}_FILE}"
    value="$(cat "$path")"
    export "$name=$value"
    unset "${name}_FILE"
done
unset name path value
exec "$@"
