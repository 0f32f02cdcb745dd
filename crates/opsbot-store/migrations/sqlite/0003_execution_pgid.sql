-- The process group of a running exec job, so a run found lost can have its processes stopped.
ALTER TABLE executions ADD COLUMN pgid INTEGER;
