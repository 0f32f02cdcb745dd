# Replies of the understanding step, scheduling and the engine core (crates/opsbot-engine/src/lib.rs, schedule.rs).

## 理解请求（reading.rs）
empty-message = 在呢？`help` 查看我能做什么，`list` 查看任务。
read-as = 我理解为 `{ $command }`。
refuse-shell = 这看起来像 shell 语法（`{ $sign }`）。我从不把文本当命令执行：任务只接受校验过的参数。没有执行任何操作；`list` 查看任务。
refuse-destructive = 我没有执行 `{ $word }` 的任务，破坏性操作我也从不猜测。没有执行任何操作；`list` 查看任务。
refuse-invalid = 我明白是哪个任务，但有参数值不符合要求：{ $detail } 没有执行任何操作。
not-understood = 我不太明白你的意思。`help` 查看我能做什么，`list` 查看任务。
llm-proposal = 这是语言模型给出的建议，确认前请仔细核对。
did-you-mean = 你是想：
did-you-mean-at = 执行时间：{ $at }
did-you-mean-hint = 回复 `yes` 继续，或 `no` 取消。
yes-button = 是
no-button = 否
choose-one = 我不太确定你的意思，是下面哪一个？
choose-hint = 点一个按钮，或直接发送你要的命令。
llm-invalid = 语言模型建议的 `{ $job }` 带有不被接受的参数值，没有执行任何操作：
suggestion-gone = 这个建议已失效（配置已变更），请重新发送请求。
suggestion-dropped = 好的，没有执行任何操作。

## 时间
in-minutes = { $m } 分钟后
in-hours = { $h } 小时后
in-hours-minutes = { $h } 小时 { $m } 分钟后
in-days-hours = { $d } 天 { $h } 小时后

## 定时执行（schedule.rs）
schedule-secret = `{ $job }` 会带上保密参数值，定时执行不能携带保密值。请到时自己执行。没有创建定时任务。
schedule-past = { $at } 已经过去，没有创建定时任务。
schedule-made = 已创建定时任务 #{ $id }，执行时间 { $at }（{ $until }）：
schedule-made-hint = `schedules` 查看所有定时任务，`unschedule { $id }` 取消这一个。开始执行时会再次检查权限和策略。
schedule-drop-button = 取消定时
schedules-none = 没有定时任务。
schedules-title = 定时任务（{ $n } 个）：
schedules-line = #{ $id }  { $at }  { $what }  — { $who }，{ $place }
schedules-hint = `unschedule ID` 取消其中一个。
schedules-cron-title = 配置中的定时任务（cron，按团队时区）：
schedules-cron-line = { $name }  `{ $cron }`  下次 { $next }  { $what }
schedule-no-such = 没有定时任务 #{ $id }。`schedules` 查看列表。
schedule-not-yours = 定时任务 #{ $id } 属于 { $who }；只有本人或在这里有权取消该任务执行的人才能取消。
schedule-not-pending = 定时任务 #{ $id } 的状态是 { $state }，无需取消。
schedule-dropped = 已取消定时任务 #{ $id }（原定 { $at }），不会执行。
schedule-failed = 定时任务 #{ $id }（`{ $job }`）没有开始执行：
schedule-too-late = 它原定在 { $at } 执行，而当时 opsbot 没有运行；现在执行已经太晚。
schedule-job-gone = `{ $job }` 已不在配置的任务中。
schedule-starting = 开始执行定时任务 #{ $id }（原定 { $at }）：
cron-refused = cron 定时任务 `{ $name }` 没有开始执行：
refuse-negated = 你说了“{ $word }”，所以我什么也没做。没有执行任何操作。
