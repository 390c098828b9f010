#!/bin/sh
# Write the connector's secrets file from the compose secret, then run the Connect worker.
# The connector config says ${file:<CDC_HOME>/stack/connect/secrets/connector.properties:database.password}
# (that is what `cdc connectors apply` renders); CDC_HOME is /var/lib/cdc in the cdc image, so the
# file must be at the same path here.
set -eu
dir=/var/lib/cdc/stack/connect/secrets
umask 077
mkdir -p "$dir"
printf 'database.password=%s\n' "$(cat "${DEBEZIUM_PASSWORD_FILE:-/run/secrets/mariadb_debezium_password}")" \
    > "$dir/connector.properties"
exec /opt/kafka/bin/connect-distributed.sh /opt/kafka/config/cdc-connect.properties
