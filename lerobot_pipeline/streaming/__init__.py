"""Redis streaming path: messages, publisher, stream reading, embedded server. No dagster import."""
