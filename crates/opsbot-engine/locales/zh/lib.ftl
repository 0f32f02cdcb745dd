# opsbot 引擎核心回复（简体中文）（crates/opsbot-engine/src/lib.rs）。
# 命令词保留英文并放在反引号里；任务名、编号和取值原样保留。

## Failures and refusals before understanding
internal-error = 我这边出了点问题（错误编号 { $id }，管理员可以在 opsbot 的日志里找到它）。重试之前请先用 `history` 查看：这个请求可能已被记录，也可能没有。
message-too-long = 这条消息有 { $len } 字节，我最多只读 { $max } 字节（{ $kib } KiB）。没有执行任何操作。
unknown-form = 我认识 `{ $word }`，但不是这种用法。`help` 查看用法，`help JOB` 查看某个任务。
unknown-did-you-mean = 我不认识 `{ $word }`。你是想用 `{ $suggestion }` 吗？`help` 查看我能做什么。
unknown-word = 我不认识 `{ $word }`。`help` 查看我能做什么，`list` 查看任务。
help-may-not-run = 你不能在这里运行 `{ $job }`。`whoami` 查看你的角色，`list` 查看你可以运行的任务。
nothing-waiting = 这里没有等你回答的问题。
no-job = 没有任务 `{ $job }`。`list` 查看任务。
no-job-did-you-mean = 没有任务 `{ $job }`。你是想用 `{ $suggestion }` 吗？`list` 查看任务。
no-such-execution = 没有运行记录 #{ $id }。`history` 查看最近的运行。

## Runs refused
override-needs-reason = `--override` 需要写明原因，例如 `--override "hotfix for INC-42"`。没有执行任何操作。
cant-run = 无法运行 `{ $job }`：
cant-run-help = `help { $job }` 查看它的参数。
secret-given = `{ $job }` 的 { $names } 是保密参数，只能在发给我的私信或 Web 控制台的运行表单里提供，绝不能发在频道里——请视其为已泄露并尽快更换。
secret-asked = `{ $job }` 需要保密参数 { $names }，我只在私信或 Web 控制台的运行表单里接收：请在那里发起。
secret-refused = { $reason }没有执行任何操作。
refuse-not-allowed = 不允许：{ $what }。没有执行任何操作。
refuse-action = 对 `{ $job }` 执行 { $action }
refuse-schedule = 定时执行 `{ $job }`

## Questions: a missing value, a sensitive run
ask-param = `{ $job }` 的 `{ $param }` 取什么值？{ $kind }
ask-param-hint = 请回复取值，或回复 `cancel` 取消。
confirm-sensitive = `{ $job }` 是敏感任务。请在 { $within } 内回复 `yes` 运行：
confirm-or-no = 或回复 `no` 放弃。
confirm-yes-button = 是，运行

## Answers to questions
stale-button = 这个按钮属于之前的问题，没有执行任何操作。请回答当前的问题，或重新发送命令。
confirm-expired = `{ $job }` 的确认已于 { $at } 过期，没有执行任何操作。
question-expired = 关于 `{ $job }` 的提问已于 { $at } 过期，没有执行任何操作。
expired-start-over = 请重新发送命令。
already-answered = 这个问题已经回答过了。
dialog-job-gone = `{ $job }` 已不再是任务，没有执行任何操作。
confirm-declined = 好的，没有运行 `{ $job }`。
dialog-job-changed = 我提问之后 `{ $job }` 有了变更，请重新发送命令。
param-dropped = 好的，已放弃 `{ $job }`，没有执行任何操作。
param-doesnt-fit = 这个值不符合要求：{ $problem }
param-ask-again = `{ $job }` 的 `{ $param }` 取什么值？请回复取值，或回复 `cancel` 取消。

## `logs`, `cancel`, `history`
logs-not-started = 还没有输出：任务尚未开始。
logs-no-output = 没有输出。
logs-tail = 共 { $total } 行，显示最后 { $shown } 行 — `logs { $id } --all` 查看全部
cancel-already-ended = #{ $id } 已经结束（{ $state }），无需取消。
cancel-was-queued = #{ $id } 还在排队，现已取消，不会运行。
cancel-stopping = 正在停止 #{ $id }：向其进程发送 SIGTERM，如果迟迟不退出再发送 SIGKILL。停止后我会告诉你。
history-title = 最近 { $n } 次运行
history-title-job = { $job } 的最近 { $n } 次运行
history-title-mine = 你发起的最近 { $n } 次运行
history-title-job-mine = 你发起的 { $job } 的最近 { $n } 次运行
