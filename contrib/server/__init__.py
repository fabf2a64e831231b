"""oaio.server — the oaio server (Django): objects, versions, subscriptions, files, change feed."""
