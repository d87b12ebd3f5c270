//! Integration tests of millrace-otel: real OTLP/HTTP exports to a receiver the test runs, real
//! Prometheus scrapes parsed by an independent parser, against a real PostgreSQL.

mod common;
mod examples;
mod gauges;
mod otlp;
mod prometheus;
mod receiver;
mod spans;
