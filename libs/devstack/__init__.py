"""Running the whole bridge on one machine: embedded PostgreSQL and NATS, the emulators, and every
service as its own process. Used by `make run` and by the end-to-end tests; never in production."""
