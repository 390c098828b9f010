"""The Iceberg side: catalog, table layout, type mapping and the landing writer."""
