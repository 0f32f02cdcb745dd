# Replies of the understanding step, scheduling and the engine core (crates/opsbot-engine/src/lib.rs, schedule.rs).

## The understand step (reading.rs)
empty-message = Yes? `help` shows what I can do, `list` the jobs.
read-as = I read that as `{ $command }`.
refuse-shell = That looks like shell syntax (`{ $sign }`). I never run text as a command: jobs run only with checked values. Nothing was run; `list` shows the jobs.
refuse-destructive = No job of mine does `{ $word }`, and I never guess at something destructive. Nothing was run; `list` shows the jobs.
refuse-invalid = I understood the job, but a value does not fit: { $detail } Nothing was run.
not-understood = I'm not sure what you mean. `help` lists what I can do, `list` the jobs.
llm-proposal = My language model suggests this; check it before you say yes.
did-you-mean = Did you mean:
did-you-mean-at = at { $at }
did-you-mean-hint = Reply `yes` to go ahead, or `no`.
yes-button = Yes
no-button = No
choose-one = I'm not sure what you mean. One of these?
choose-hint = Press one, or send the command you mean.
llm-invalid = My language model suggested `{ $job }` with values it does not accept; nothing was run:
suggestion-gone = That suggestion no longer works (the config changed); send the request again.
suggestion-dropped = OK, nothing was run.

## Times
in-minutes = in { $m } min
in-hours = in { $h } h
in-hours-minutes = in { $h } h { $m } min
in-days-hours = in { $d } d { $h } h

## Scheduling (schedule.rs)
schedule-secret = `{ $job }` would carry a secret value; a scheduled run cannot. Start it yourself when it is time. Nothing was scheduled.
schedule-past = { $at } has passed; nothing was scheduled.
schedule-made = Scheduled #{ $id } for { $at } ({ $until }):
schedule-made-hint = `schedules` lists what is scheduled, `unschedule { $id }` drops this one. Permissions and policies are checked again when it starts.
schedule-drop-button = Unschedule
schedules-none = Nothing is scheduled.
schedules-title = Scheduled runs ({ $n }):
schedules-line = #{ $id }  { $at }  { $what }  — { $who }, { $place }
schedules-hint = `unschedule ID` drops one.
schedules-cron-title = From the config (cron, in the team's time zone):
schedules-cron-line = { $name }  `{ $cron }`  next { $next }  { $what }
schedule-no-such = There is no scheduled run #{ $id }. `schedules` lists them.
schedule-not-yours = Scheduled run #{ $id } is { $who }'s; only they, or someone who may cancel that job's runs here, can drop it.
schedule-not-pending = Scheduled run #{ $id } is { $state }; there is nothing to drop.
schedule-dropped = Dropped scheduled run #{ $id } (it was for { $at }); nothing will run.
schedule-failed = Scheduled run #{ $id } (`{ $job }`) did not start:
schedule-too-late = it was due at { $at }, and opsbot was not running then; it is too late to start it now.
schedule-job-gone = `{ $job }` is no longer a job of the config.
schedule-starting = Starting scheduled run #{ $id } (due { $at }):
cron-refused = The cron schedule `{ $name }` did not start its run:
refuse-negated = You said `{ $word }`, so I did nothing. Nothing was run.
