# opsbot engine replies (English): explanations of access decisions and policy refusals
# (crates/opsbot-engine/src/access.rs, policy.rs, and the checks of verbs.rs that reuse them).
# These texts also go into the audit trail in English: keep them byte for byte.

# Access decisions (access.rs).
access-allowed = Allowed by { $by }.
access-denied = { $why }.
access-denied-more = { $why }. { $would_pass }
access-in-channels = {" "}in { $channels }
access-role-denies = Role `{ $role }` denies { $verb } on { $scope }{ $where } ({ $at })
access-role-allows-only = Role `{ $role }` allows { $verb } only on { $scope }{ $where } ({ $at }).
access-no-role = you have no role, so you may not { $verb } `{ $job }`
access-no-role-allows = None of your roles ({ $roles }) allows { $verb } on `{ $job }`{ $with } in { $place }
access-asked-with = {" "}with { $values }
access-unknown-account = I don't know your account `{ $account }`: ask an admin to add it to your person in the config, or send `link` to me in a direct message to tie it to an account I know.
access-ask-admin = Ask an admin for a role that allows it; `whoami` shows your roles.
access-job-gone = `{ $job }` is no longer a job of this config
access-job-gone-pass = Someone who may { $verb } every job can.

# What a rule covers (jobs and parameter conditions).
scope-every-job = every job
scope-one-of = { $param } in [{ $values }]
scope-and = {" "}and{" "}
scope-with = { $jobs } with { $conditions }

# `whoami`: what each role grants.
role-line = { $role }: { $what }
role-grants-nothing = grants nothing
role-allows = { $verbs } on { $scope }{ $where }
role-denies = deny { $verbs } on { $scope }{ $where }

# Approvals a run needs (policy.rs).
requirement = { $count } { $count ->
        [one] approval
       *[other] approvals
    } from { $who } ({ $policy })
approvers-anyone = anyone allowed to approve it
approvers-roles = { $roles }

# Policy refusals (policy.rs).
refused-by = Refused by { $policy }: { $why } { $would_pass }
refused-given-reason = {" "}({ $reason })
refused-lock = { $by } locked it at { $at } UTC: "{ $reason }".
refused-lock-pass = It runs once someone unlocks it (`unlock { $scope }`).
refused-argv = { $hit } would match the forbidden pattern `{ $pattern }`{ $reason }.
refused-argv-whole = the whole command line
refused-argv-pass = Use values that do not produce it.
refused-hours = { $scope } may run only { $hours } ({ $tz }); it is { $now } there.
refused-hours-next = {" "}(next opening { $at })
refused-hours-pass = Ask again within those hours{ $next }.
refused-freeze = { $scope } is frozen until { $until }{ $reason }.
refused-freeze-override = Wait until then, or ask again with `--override "why"`: the run then needs { $count } { $count ->
        [one] approval
       *[other] approvals
    } from { $who }.
refused-freeze-no-override = Wait until then; this freeze allows no override.
refused-rate = at most { $max } { $max ->
        [one] run
       *[other] runs
    } of { $scope } { $per } every { $every }.
rate-per-person = per person
rate-per-job = for everyone together
refused-rate-pass = Try again in { $wait }.

# An approved request checked again before it runs (verbs.rs).
refused-access-rules = the access rules
refused-no-longer-may = { $name } may no longer run it: { $explain }
refused-new-policy = it began after this request was made and asks for approvals the request did not have.
refused-new-policy-pass = Ask again: the new request will ask for them.
