# opsbot 引擎回复（简体中文）：访问决定和策略拒绝的说明（crates/opsbot-engine/src/access.rs、policy.rs，以及 verbs.rs 中复用它们的检查）。
# 命令词保留英文并放在反引号里；任务名、取值、规则名和 `文件:行` 原样保留。审计记录始终使用英文。

# Access decisions (access.rs).
access-allowed = 已允许：{ $by }。
access-denied = { $why }。
access-denied-more = { $why }。{ $would_pass }
access-in-channels = 在 { $channels } 中
access-role-denies = 角色 `{ $role }` 禁止{ $where }对 { $scope }执行 { $verb }（{ $at }）
access-role-allows-only = 角色 `{ $role }` 只允许{ $where }对 { $scope }执行 { $verb }（{ $at }）。
access-no-role = 你没有任何角色，因此不能对 `{ $job }` 执行 { $verb }
access-no-role-allows = 你的角色（{ $roles }）都不允许在 { $place } 对 `{ $job }` 执行 { $verb }{ $with }
access-asked-with = （参数 { $values }）
access-unknown-account = 我不认识你的账号 `{ $account }`：请管理员把它加到配置里你的人员条目中，或者私聊我发送 `link`，把它关联到我认识的账号。
access-ask-admin = 请向管理员申请允许此操作的角色；`whoami` 可查看你的角色。
access-job-gone = `{ $job }` 已不是当前配置中的任务
access-job-gone-pass = 能对所有任务执行 `{ $verb }` 的人可以。

# What a rule covers (jobs and parameter conditions).
scope-every-job = 所有任务
scope-one-of = { $param } 取 { $values } 之一
scope-and = {" "}且{" "}
scope-with = { $jobs }（{ $conditions }）

# `whoami`: what each role grants.
role-line = { $role }：{ $what }
role-grants-nothing = 不授予任何权限
role-allows = 可{ $where }对 { $scope }执行 { $verbs }
role-denies = 禁止{ $where }对 { $scope }执行 { $verbs }

# Approvals a run needs (policy.rs).
requirement = { $who }中 { $count } 人批准（{ $policy }）
approvers-anyone = 有权批准的人
approvers-roles = { $roles } 角色

# Policy refusals (policy.rs).
refused-by = 被 { $policy } 拒绝：{ $why }{ $would_pass }
refused-given-reason = （{ $reason }）
refused-lock = { $by } 于 { $at } UTC 锁定了它：“{ $reason }”。
refused-lock-pass = 有人解锁（`unlock { $scope }`）后即可运行。
refused-argv = { $hit } 会匹配禁止的模式 `{ $pattern }`{ $reason }。
refused-argv-whole = 整条命令行
refused-argv-pass = 请换用不会产生它的取值。
refused-hours = { $scope }只能在 { $hours }（{ $tz }）运行；当地现在是 { $now }。
refused-hours-next = （下次开放：{ $at }）
refused-hours-pass = 请在这些时段内再试{ $next }。
refused-freeze = { $scope }冻结至 { $until }{ $reason }。
refused-freeze-override = 请等到冻结结束，或加上 `--override "why"` 重新请求：届时这次运行需要{ $who }中 { $count } 人批准。
refused-freeze-no-override = 请等到冻结结束；此冻结不允许 `--override`。
refused-rate = { $scope }每 { $every } 最多运行 { $max } 次（{ $per }）。
rate-per-person = 每人分别计算
rate-per-job = 所有人合计
refused-rate-pass = 请在 { $wait } 后再试。

# An approved request checked again before it runs (verbs.rs).
refused-access-rules = 访问规则
refused-no-longer-may = { $name } 已无权运行它：{ $explain }
refused-new-policy = 它在这次申请之后才生效，要求的批准是这次申请所没有的。
refused-new-policy-pass = 请重新申请：新的申请会请求这些批准。
