# opsbot 引擎回复（简体中文）：展示层和内置命令（crates/opsbot-engine/src/present.rs、verbs.rs）。
# 命令词保留英文并放在反引号里；任务名、编号和取值原样保留。

# Help and the job list (present.rs).
help-heading = { $bot } — 运行并跟踪运维任务
help-verb-help = 本帮助，或某个任务的参数和示例
help-verb-list = 你可以运行的任务
help-verb-run = 运行任务（也可以：`JOB key=value`、`!JOB value value`）
help-verb-status = 某次运行的状态、耗时和最后几行输出
help-verb-logs = 某次运行的输出
help-verb-cancel = 停止排队中或运行中的任务
help-verb-history = 最近的运行记录
help-verb-whoami = opsbot 认为你是谁、你的角色及其权限
help-verb-ping = 立即回复 PONG：opsbot 在线并能收到你的消息
help-verb-approvals = 待处理的审批申请；对其中一个投票（对自己的申请 `deny` 即撤回）
help-verb-lock = 锁定某个任务或取值，解锁前禁止运行
help-verb-link = 把另一个聊天账号关联到你
help-jobs = 你可以运行的任务：{ $jobs }。试试 `help { $first }`。
job-help-no-description = （无描述）
job-help-usage = 用法：`{ $job } { $params }`
job-help-default = 默认 { $value }
job-help-required = 必填
job-help-optional = 可选
job-help-also-accepts = { $param } 也接受
job-help-aliases = 别名
job-help-examples = 示例
job-help-positional = 位置参数顺序
job-help-timeout = 超时 { $timeout }
job-help-concurrency = 最多同时运行 { $n } 个
job-help-confirms = 运行前需要确认
job-help-limits = 限制
list-heading = 共 { $n } 个任务
list-footer = `help JOB` 可查看任务的参数和示例。

# Separators between items of a list.
list-comma = ，
list-semicolon = ；
list-or = {" "}或{" "}

# Table headers.
header-param = 参数
header-type = 类型
header-allowed = 允许值
header-help = 说明
header-job = 任务
header-params = 参数
header-description = 描述
header-id = 编号
header-run = 运行
header-state = 状态
header-by = 发起人
header-queued = 排队时间
header-took = 耗时
header-asked-by = 申请人
header-needs = 需要
header-expires = 过期时间
header-scope = 范围
header-locked-by = 锁定人
header-since = 锁定时间
header-reason = 原因

# Field names of job cards, `status`, `whoami` and approval requests.
field-requested-by = 发起人
field-duration = 耗时
field-exit-code = 退出码
field-note = 备注
field-job = 任务
field-state = 状态
field-where = 位置
field-queued = 排队时间
field-started = 开始时间
field-finished = 结束时间
field-running-for = 已运行
field-cpu-time = CPU 时间
field-max-memory = 最大内存
field-cancel = 取消
field-you = 你
field-account = 账号
field-here = 当前位置
field-roles = 角色
field-accounts = 全部账号
field-asked-by = 申请人
field-needs = 需要
field-expires = 过期时间
field-override-asked = 申请豁免
field-command = 命令

# Buttons.
button-status = 状态
button-cancel = 取消
button-logs = 日志
button-run-again = 再次运行
button-approve = 批准
button-deny = 拒绝

# States of a run.
state-queued = 已排队
state-running = 运行中
state-succeeded = 成功
state-failed = 失败
state-failed-exit = 失败（退出码 { $code }）
state-cancelled = 已取消
state-timed-out = 超时
state-lost = 已丢失

# Job cards, `status`, `history`, the run form.
queued-status = #{ $id } 已排队
queued-para = { $run } — 结束后我会在这里通知。`status { $id }` · `logs { $id }` · `cancel { $id }`
started-status = #{ $id } 运行中
finished-more = … 前面还有 { $n } 行未显示：`logs { $id } --all`
finished-no-output = （无输出）
status-cancel-requested = 已请求
status-tail = 共 { $total } 行，显示最后 { $shown } 行 — 更多请用 `logs { $id }`
history-empty = { $title }：暂无记录。
form-title = 运行 { $job }

# `whoami` (verbs.rs).
whoami-listed = { $name }（配置中的人员 `{ $key }`）
whoami-linked = { $name }（人员 `{ $key }`，账号通过 `link` 关联）
whoami-local = { $name }（本地命令行）
whoami-unknown = { $name } — 我不认识这个账号；用 `link` 可以把它关联到你
whoami-here-direct = （私聊）
whoami-linked-account = { $account }（已关联）
whoami-grants = 你的角色允许：
nothing-runnable-unknown = 我不认识你的账号 `{ $account }`，所以你暂时不能运行任何任务。请让管理员把它加到配置中你的人员下，或在私聊中发送 `link`，把它关联到我认识的账号。
nothing-runnable-roles = 你的角色不允许在这里运行任何任务。`whoami` 可查看你的角色。

# Someone else's run.
touch-not-yours = #{ $id } 是 { $who } 发起的 `{ $job }`。{ $explain }
touch-may-not = 你无权对 #{ $id } 执行 `{ $verb }`。
admin-not-allowed = 不允许：{ $action } `{ $subject }`。

# Approval requests.
approval-withdraw-hint = 可以用 `deny { $id }` 撤回。
approval-status = 审批申请 { $id } — { $state }
approval-state-pending = 待审批
approval-state-approved = 已批准
approval-state-denied = 已拒绝
approval-state-expired = 已过期
approval-state-withdrawn = 已撤回
approval-waits = 此运行正在等待审批：
approval-approvers = 审批人：`approve { $id }` 或 `deny { $id } [reason]`。
approvals-none = 没有需要你处理的审批申请。
approvals-heading = 待处理的审批申请
vote-no-request = 没有审批申请 { $id }。`approvals` 可列出待处理的申请。
vote-already-decided = 申请 { $id } 已处理：{ $state }。
vote-already-decided-note = 申请 { $id } 已处理：{ $state }（{ $note }）。
vote-expired = 申请 { $id } 已于 { $at } 过期，未运行任何任务。申请人可以重新申请。
vote-own-request = 申请 { $id } 是你发起的，必须由其他人批准（四眼原则）。`deny { $id }` 可撤回。
vote-withdrawn = 申请 { $id } 已撤回，未运行任何任务。
vote-job-gone = `{ $job }` 已不再是任务，申请 { $id } 已关闭。
vote-may-not = 你无权对申请 { $id } 投票。{ $explain }
vote-wrong-roles = 申请 { $id } 需要 { $wanted } 批准；你的角色是 { $roles }。
vote-already-voted = 你已经对申请 { $id } 投过票了。
vote-decided-meanwhile = 申请 { $id } 已在此期间被处理。
vote-denied = 申请 { $id }（{ $job }）已被 { $name } 拒绝。未运行任何任务。
vote-denied-reason = 申请 { $id }（{ $job }）已被 { $name } 拒绝：{ $reason }。未运行任何任务。
vote-missing-item = { $policy } 还需 { $n } 人批准
vote-recorded = 已记录你对申请 { $id } 的批准。仍需：{ $missing }。
vote-approved-but = 申请 { $id }：已批准，但 { $explain } 未运行任何任务。
vote-approved = 申请 { $id } 已由 { $names } 批准。
vote-approved-started = 申请 { $id } 已由 { $names } 批准：已为 { $requester } 启动 #{ $run }。

# Locks.
lock-no-job = 没有任务 `{ $job }`。
lock-secret = `{ $param }` 是机密参数，锁不能指定机密值。
lock-no-param = 没有任何任务有参数 `{ $param }`。
lock-nothing-locked = { $msg } 未锁定任何内容。
lock-needs-reason = 锁定需要写明原因，让被拦下的人知道为什么：`lock { $scope } --reason "why"`。
lock-done = 已锁定 `{ $scope }`：在 `unlock { $scope }` 之前，它覆盖的运行都会被拒绝。
lock-already = `{ $scope }` 已被 { $by } 于 { $since } 锁定：“{ $reason }”。
unlock-not-locked = `{ $scope }` 没有被锁定。`locks` 可列出所有锁。
unlock-done = 已解锁 `{ $scope }`。
locks-for-viewers = 只有能在这里运行或查看任务的人才能查看锁；`whoami` 可查看你的角色。
lock-none = 当前没有锁。
locks-heading = 锁

# Linking accounts.
link-turned-off = 这里已关闭账号关联（[access] self_link = false）；请让管理员把你的账号加入配置。
link-already-yours = 这个账号已属于 { $name }（人员 `{ $key }`）。
link-direct-only = 请在私聊中给我发送 `link`：它生成的验证码必须保密。
link-code-intro = 要把 `{ $account }` 关联到你，请在 { $minutes } 分钟内用我已认识的你的账号（例如 Web 控制台的聊天）发送：
link-code-once = 验证码只能使用一次。如果不是你申请的，请忽略。
link-from-known = 请用我已认识的你的账号（例如 Web 控制台的聊天）发送验证码，而不是用新账号。
link-code-bad = 验证码无效、已使用或已过期。请用新账号再次发送 `link` 获取新的验证码。
link-listed = `{ $account }` 属于配置中的某个人员，请在配置中修改。
link-done = 已将 `{ $account }` 关联到你（{ $name }）。它现在拥有你的角色：{ $roles }。
unlink-syntax = 账号格式为 PLATFORM:ID，例如 `unlink slack:U024BE7LH`。
unlink-not-linked = `{ $account }` 没有被关联。
unlink-not-linked-listed = `{ $account }` 没有被关联。它写在配置中，请在配置中修改。
unlink-done = `{ $account }` 已不再关联到 `{ $owner }`。
