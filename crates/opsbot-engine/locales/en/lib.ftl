# opsbot engine core replies in English (crates/opsbot-engine/src/lib.rs).
# Keep them byte-for-byte what the tests expect.

## Failures and refusals before understanding
internal-error = Something went wrong on my side (error id { $id }; an admin can find it in opsbot's log). Check `history` before trying again: the request may or may not have been recorded.
message-too-long = That message is { $len } bytes; I read at most { $max } bytes ({ $kib } KiB). Nothing was run.
unknown-form = I know `{ $word }`, but not in this form. `help` shows how to use it, `help JOB` one job.
unknown-did-you-mean = I don't know `{ $word }`. Did you mean `{ $suggestion }`? `help` lists what I can do.
unknown-word = I don't know `{ $word }`. `help` lists what I can do, `list` the jobs.
help-may-not-run = You may not run `{ $job }` here. `whoami` shows your roles, `list` what you may run.
nothing-waiting = Nothing is waiting for your answer here.
no-job = There is no job `{ $job }`. `list` shows the jobs.
no-job-did-you-mean = There is no job `{ $job }`. Did you mean `{ $suggestion }`? `list` shows the jobs.
no-such-execution = There is no execution #{ $id }. `history` lists recent runs.

## Runs refused
override-needs-reason = `--override` needs a reason, e.g. `--override "hotfix for INC-42"`. Nothing was run.
cant-run = I can't run `{ $job }`:
cant-run-help = `help { $job }` shows its parameters.
secret-given = { $names } of `{ $job }` is secret and may only be given in a direct message to me or in the web console's run form, never in a channel — consider it exposed and change it.
secret-asked = `{ $job }` needs the secret { $names }, which I only take in a direct message or the web console's run form: start it there.
secret-refused = { $reason } Nothing was run.
refuse-not-allowed = Not allowed: { $what }. Nothing was run.
refuse-action = { $action } on `{ $job }`
refuse-schedule = schedule on `{ $job }`

## Questions: a missing value, a sensitive run
ask-param = Which `{ $param }` for `{ $job }`? { $kind }
ask-param-hint = Reply with the value, or `cancel`.
confirm-sensitive = `{ $job }` is sensitive. Reply `yes` within { $within } to run:
confirm-or-no = or `no` to drop it.
confirm-yes-button = Yes, run it

## Answers to questions
stale-button = That button belongs to an earlier question; nothing was done. Answer the open question, or send the command again.
confirm-expired = That confirmation for `{ $job }` expired at { $at }; nothing was run.
question-expired = That question for `{ $job }` expired at { $at }; nothing was run.
expired-start-over = Send the command again to start over.
already-answered = That was already answered.
dialog-job-gone = `{ $job }` is no longer a job; nothing was run.
confirm-declined = OK, `{ $job }` was not run.
dialog-job-changed = `{ $job }` changed since I asked; send the command again.
param-dropped = OK, dropped `{ $job }`; nothing was run.
param-doesnt-fit = That doesn't fit: { $problem }
param-ask-again = Which `{ $param }` for `{ $job }`? Reply with the value, or `cancel`.

## `logs`, `cancel`, `history`
logs-not-started = No output yet: it has not started.
logs-no-output = No output.
logs-tail = last { $shown } of { $total } lines — `logs { $id } --all` for everything
cancel-already-ended = #{ $id } already ended ({ $state }); nothing to cancel.
cancel-was-queued = #{ $id } was still queued; it is cancelled and will not run.
cancel-stopping = Stopping #{ $id }: SIGTERM to its processes, SIGKILL if they linger. I'll confirm when it has stopped.
history-title = Last { $n } run(s)
history-title-job = Last { $n } run(s) of { $job }
history-title-mine = Last { $n } run(s) by you
history-title-job-mine = Last { $n } run(s) of { $job } by you
