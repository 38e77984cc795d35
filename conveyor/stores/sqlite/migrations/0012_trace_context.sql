-- OpenTelemetry (SPEC §9): the trace context of the code that enqueued the job, as the
-- propagator writes it into headers (a JSON object: W3C traceparent, and tracestate if
-- any), so that the run's span joins that trace. NULL when the job was enqueued outside
-- any span, or by a process that does not trace.
ALTER TABLE jobs ADD COLUMN trace_context TEXT;
