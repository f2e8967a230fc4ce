"""The production-like stack on one machine (`make stack`): every component a real process.

PostgreSQL databases (Dagster instance, MLflow backend), SeaweedFS S3 (lakehouse, bundle
store, MLflow artifacts), mosquitto with passwords, TLS and ACLs, the MLflow tracking
server, dagster-webserver and dagster-daemon, two gateway replicas on one shared
subscription and four edge runtimes (the press edge on Sparkplug B). Each component gets
only its own credentials, by environment variables; secrets are generated at start under
``data/stack/secrets`` and never live in the repository.

It is configuration of the same code that `make demo` runs, not a fork: this package only
starts processes, writes their configuration and drives the demo scenario through them.
"""
