"""What the service says about itself beyond its answers: metrics, traces and logs.

- `metrics`: the Prometheus series of /metrics; `process_metrics`: process CPU and memory
  where prometheus_client has nothing to read (macOS);
- `tracing`: spans per request and per forward pass, log export, and what export dropped,
  on `otlp` (OTLP/HTTP export, shared with the gateway and registry images);
- `service_log`: the log file, written by one thread behind a bounded queue.
"""
