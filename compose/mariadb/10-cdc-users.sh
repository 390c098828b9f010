# Sourced (keep it non-executable) by the mariadb image's entrypoint on the first start only, with
# an empty data directory. Creates the pipeline's users, passwords read from the compose secrets:
#   cdc_debezium  the connector: read rows, read the binlog, list databases, flush for the snapshot
#   cdc_admin     `cdc check`: reads the source tables to compare them with the lake (read-only here)
admin_pw="$(docker_sql_escape_string_literal "$(< /run/secrets/mariadb_admin_password)")"
debezium_pw="$(docker_sql_escape_string_literal "$(< /run/secrets/mariadb_debezium_password)")"
docker_process_sql --database=mysql <<-EOSQL
	CREATE USER 'cdc_debezium'@'%' IDENTIFIED BY '${debezium_pw}';
	GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'cdc_debezium'@'%';
	CREATE USER 'cdc_admin'@'%' IDENTIFIED BY '${admin_pw}';
	GRANT SELECT, SHOW VIEW ON *.* TO 'cdc_admin'@'%';
EOSQL
unset admin_pw debezium_pw
