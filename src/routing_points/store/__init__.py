"""The store: schema, migrations, admin writes and the hot-path readers."""
