"""Plain-Python conversion core: raw recordings in, LeRobot v2.1 out. Never imports dagster or redis."""
