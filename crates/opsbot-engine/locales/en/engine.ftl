# opsbot engine replies in English: the presenter and the built-in verbs
# (crates/opsbot-engine/src/present.rs, verbs.rs). Keep them byte-for-byte what the tests expect.

# Help and the job list (present.rs).
help-heading = { $bot } — run and watch ops jobs
help-verb-help = this help, or one job's parameters and examples
help-verb-list = the jobs you can run
help-verb-run = run a job (also: `JOB key=value`, `!JOB value value`)
help-verb-status = state, timings and last lines of a run
help-verb-logs = output of a run
help-verb-cancel = stop a queued or running run
help-verb-history = recent runs
help-verb-whoami = who opsbot thinks you are, your roles and what they allow
help-verb-ping = answers PONG at once: opsbot is there and hears you
help-verb-approvals = open approval requests; vote on one (your own `deny` withdraws it)
help-verb-lock = stop runs of a job or a value until unlocked
help-verb-link = tie another chat account to you
help-jobs = Jobs you may run: { $jobs }. Try `help { $first }`.
job-help-no-description = (no description)
job-help-usage = Usage: `{ $job } { $params }`
job-help-default = default { $value }
job-help-required = required
job-help-optional = optional
job-help-also-accepts = { $param } also accepts
job-help-aliases = Aliases
job-help-examples = Examples
job-help-positional = Positional order
job-help-timeout = timeout { $timeout }
job-help-concurrency = at most { $n } at a time
job-help-confirms = asks you to confirm
job-help-limits = Limits
list-heading = { $n } jobs
list-footer = `help JOB` shows a job's parameters and examples.

# Separators between items of a list.
list-comma = ,{" "}
list-semicolon = ;{" "}
list-or = {" "}or{" "}

# Table headers.
header-param = param
header-type = type
header-allowed = allowed
header-help = help
header-job = job
header-params = params
header-description = description
header-id = id
header-run = run
header-state = state
header-by = by
header-queued = queued
header-took = took
header-asked-by = asked by
header-needs = needs
header-expires = expires
header-scope = scope
header-locked-by = by
header-since = since
header-reason = reason

# Field names of job cards, `status`, `whoami` and approval requests.
field-requested-by = requested by
field-duration = duration
field-exit-code = exit code
field-note = note
field-job = job
field-state = state
field-where = where
field-queued = queued
field-started = started
field-finished = finished
field-running-for = running for
field-cpu-time = cpu time
field-max-memory = max memory
field-cancel = cancel
field-you = you
field-account = account
field-here = here
field-roles = roles
field-accounts = accounts
field-asked-by = asked by
field-needs = needs
field-expires = expires
field-override-asked = override asked
field-command = command

# Buttons.
button-status = Status
button-cancel = Cancel
button-logs = Logs
button-run-again = Run again
button-approve = Approve
button-deny = Deny

# States of a run.
state-queued = queued
state-running = running
state-succeeded = succeeded
state-failed = failed
state-failed-exit = failed (exit { $code })
state-cancelled = cancelled
state-timed-out = timed out
state-lost = lost

# Job cards, `status`, `history`, the run form.
queued-status = #{ $id } queued
queued-para = { $run } — I'll report here when it ends. `status { $id }` · `logs { $id }` · `cancel { $id }`
started-status = #{ $id } running
finished-more = … { $n } earlier line(s) not shown: `logs { $id } --all`
finished-no-output = (no output)
status-cancel-requested = requested
status-tail = last { $shown } of { $total } lines — `logs { $id }` for more
history-empty = { $title }: nothing yet.
form-title = Run { $job }

# `whoami` (verbs.rs).
whoami-listed = { $name } (person `{ $key }` in the config)
whoami-linked = { $name } (person `{ $key }`, account linked with `link`)
whoami-local = { $name } (the local command line)
whoami-unknown = { $name } — an account I don't know; `link` ties it to you
whoami-here-direct = {" "}(direct)
whoami-linked-account = { $account } (linked)
whoami-grants = What your roles allow:
nothing-runnable-unknown = I don't know your account `{ $account }`, so you may not run anything yet. Ask an admin to add it to your person in the config, or send `link` in a direct message to tie it to an account I know.
nothing-runnable-roles = Your roles let you run no job here. `whoami` shows your roles.

# Someone else's run.
touch-not-yours = #{ $id } is { $who }'s run of `{ $job }`. { $explain }
touch-may-not = You may not { $verb } #{ $id }.
admin-not-allowed = Not allowed: { $action } `{ $subject }`.

# Approval requests.
approval-withdraw-hint = You can withdraw it with `deny { $id }`.
approval-status = approval request { $id } — { $state }
approval-state-pending = pending
approval-state-approved = approved
approval-state-denied = denied
approval-state-expired = expired
approval-state-withdrawn = withdrawn
approval-waits = This run waits for approval:
approval-approvers = Approvers: `approve { $id }` or `deny { $id } [reason]`.
approvals-none = No open approval requests for you.
approvals-heading = Open approval requests
vote-no-request = There is no approval request { $id }. `approvals` lists the open ones.
vote-already-decided = Request { $id } is already { $state }.
vote-already-decided-note = Request { $id } is already { $state } ({ $note }).
vote-expired = Request { $id } expired at { $at }; nothing was run. The requester can ask again.
vote-own-request = You asked for request { $id }; someone else must approve it (four eyes). `deny { $id }` withdraws it.
vote-withdrawn = Request { $id } withdrawn; nothing was run.
vote-job-gone = `{ $job }` is no longer a job; request { $id } is closed.
vote-may-not = You may not vote on request { $id }. { $explain }
vote-wrong-roles = Request { $id } needs approval from { $wanted }; your roles are { $roles }.
vote-already-voted = You already voted on request { $id }.
vote-decided-meanwhile = Request { $id } was decided meanwhile.
vote-denied = Request { $id } ({ $job }) was denied by { $name }. Nothing was run.
vote-denied-reason = Request { $id } ({ $job }) was denied by { $name }: { $reason }. Nothing was run.
vote-missing-item = { $n } more for { $policy }
vote-recorded = Your approval of request { $id } is recorded. It still needs { $missing }.
vote-approved-but = Request { $id }: approved, but { $explain } Nothing was run.
vote-approved = Request { $id } approved by { $names }.
vote-approved-started = Request { $id } approved by { $names }: #{ $run } started for { $requester }.

# Locks.
lock-no-job = There is no job `{ $job }`.
lock-secret = `{ $param }` is secret; a lock cannot name a secret value.
lock-no-param = No job has a parameter `{ $param }`.
lock-nothing-locked = { $msg } Nothing was locked.
lock-needs-reason = A lock needs a reason for whoever it stops: `lock { $scope } --reason "why"`.
lock-done = Locked `{ $scope }`: runs it covers are refused until `unlock { $scope }`.
lock-already = `{ $scope }` is already locked by { $by } since { $since }: "{ $reason }".
unlock-not-locked = `{ $scope }` is not locked. `locks` lists the locks.
unlock-done = Unlocked `{ $scope }`.
locks-for-viewers = The locks are for people who may run or view jobs here; `whoami` shows your roles.
lock-none = Nothing is locked.
locks-heading = Locks

# Linking accounts.
link-turned-off = Linking accounts is turned off here ([access] self_link = false); ask an admin to add your account to the config.
link-already-yours = This account is already { $name }'s (person `{ $key }`).
link-direct-only = Send `link` to me in a direct message: the code it gives must stay private.
link-code-intro = To tie `{ $account }` to you, send this within { $minutes } minutes from an account I already know as you (for example in the web console's chat):
link-code-once = The code works once. If you did not ask for it, ignore it.
link-from-known = Send the code from an account I already know as you (e.g. the web console's chat), not from the new one.
link-code-bad = That code is unknown, used or expired. Send `link` again from the new account for a new one.
link-listed = `{ $account }` belongs to a person in the config; change it there.
link-done = Linked `{ $account }` to you ({ $name }). It now has your roles: { $roles }.
unlink-syntax = Write the account as PLATFORM:ID, e.g. `unlink slack:U024BE7LH`.
unlink-not-linked = `{ $account }` is not linked.
unlink-not-linked-listed = `{ $account }` is not linked. It is listed in the config; change it there.
unlink-done = `{ $account }` is no longer linked to `{ $owner }`.
