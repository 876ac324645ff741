# kaf.testing provides the `kaf_broker` fixture: an embedded Kafka-compatible broker, started
# once per test session (it comes with the dev extra, kaf-runtime[dev]).
pytest_plugins = ["kaf.testing"]
