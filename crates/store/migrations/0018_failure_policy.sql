-- A job that one of its tasks stopped by an exit code its `abort_on` names: which task, and
-- the code, as JSON (`wire::Aborted`). The job's state is then 'failed'. A task's retried
-- failures need no column: they are the failed attempts of a task that has not ended.

ALTER TABLE jobs ADD COLUMN aborted TEXT;
