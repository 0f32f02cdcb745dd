-- Listing by job and state together (`?job=deploy&state=lost`) stays an index range scan.
CREATE INDEX executions_job_state ON executions (job, state, id);
