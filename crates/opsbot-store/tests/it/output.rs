//! Output chunks: packing, order, tails.

use crate::{line, new_exec};
use opsbot_core::{OutputLine, Stream};
use opsbot_store::{SqliteStore, Store};

async fn output_round_trips(store: &SqliteStore) {
    let id = store.create_execution(&new_exec("job")).await.expect("create").id;
    let other = store.create_execution(&new_exec("job")).await.expect("create").id;
    let big = "x".repeat(1024 * 1024) + "é";
    let chunks: Vec<Vec<OutputLine>> = vec![
        vec![
            line(1_700_000_000_001, Stream::Stdout, "starting"),
            line(1_700_000_000_002, Stream::Stdout, ""),
        ],
        vec![
            line(1_700_000_000_003, Stream::Stderr, "ünïcødé ✓ 生产 🚀"),
            line(1_700_000_000_003, Stream::System, ""),
            line(1_700_000_000_004, Stream::Stdout, "  leading and trailing spaces  "),
            line(1_700_000_000_005, Stream::Stdout, "tab\there"),
        ],
        vec![line(1_700_000_000_006, Stream::Stdout, &big)],
        vec![line(1_700_000_000_007, Stream::Stderr, "")],
    ];
    for chunk in &chunks {
        store.append_output(id, chunk).await.expect("append");
    }
    store
        .append_output(other, &[line(5, Stream::Stdout, "elsewhere")])
        .await
        .expect("append");
    store.append_output(id, &[]).await.expect("empty append is a no-op");

    let want: Vec<OutputLine> = chunks.concat();
    let all = store.output_all(id).await.expect("all");
    assert_eq!(all.len(), want.len());
    assert_eq!(all, want);
    assert_eq!(all[6].text.len(), big.len());

    let (tail, total) = store.output_tail(id, 3).await.expect("tail");
    assert_eq!(total, want.len() as u64);
    assert_eq!(tail, want[want.len() - 3..].to_vec());

    assert_eq!(
        store.output_all(other).await.expect("all"),
        vec![line(5, Stream::Stdout, "elsewhere")]
    );
}
on_both!(output_round_trips);

async fn line_breaks_in_text_become_spaces(store: &SqliteStore) {
    let id = store.create_execution(&new_exec("job")).await.expect("create").id;
    store
        .append_output(id, &[line(1, Stream::Stdout, "one\ntwo\r\nthree"), line(2, Stream::Stdout, "\r")])
        .await
        .expect("append");
    let all = store.output_all(id).await.expect("all");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].text, "one two  three");
    assert_eq!(all[1].text, " ");
}
on_both!(line_breaks_in_text_become_spaces);

async fn tail_counts(store: &SqliteStore) {
    let id = store.create_execution(&new_exec("job")).await.expect("create").id;
    assert_eq!(store.output_tail(id, 10).await.expect("tail"), (vec![], 0), "no output yet");
    assert!(store.output_all(id).await.expect("all").is_empty());

    // 5 chunks of 7 lines.
    let mut want = Vec::new();
    for c in 0..5 {
        let chunk: Vec<OutputLine> = (0..7)
            .map(|i| line(1000 + c * 7 + i, Stream::Stdout, &format!("line {}", c * 7 + i)))
            .collect();
        store.append_output(id, &chunk).await.expect("append");
        want.extend(chunk);
    }
    for n in [0, 1, 6, 7, 8, 10, 14, 34, 35, 36, 1000] {
        let (tail, total) = store.output_tail(id, n).await.expect("tail");
        assert_eq!(total, 35, "n = {n}");
        let from = want.len().saturating_sub(n);
        assert_eq!(tail, want[from..].to_vec(), "n = {n}");
    }
}
on_both!(tail_counts);

async fn tail_across_many_chunks(store: &SqliteStore) {
    let id = store.create_execution(&new_exec("job")).await.expect("create").id;
    let mut want = Vec::new();
    for i in 0..150 {
        let l = line(i, if i % 2 == 0 { Stream::Stdout } else { Stream::Stderr }, &i.to_string());
        store.append_output(id, std::slice::from_ref(&l)).await.expect("append");
        want.push(l);
    }
    let (tail, total) = store.output_tail(id, 100).await.expect("tail");
    assert_eq!(total, 150);
    assert_eq!(tail, want[50..].to_vec());
    let (tail, _) = store.output_tail(id, 150).await.expect("tail");
    assert_eq!(tail, want);
    assert_eq!(store.output_all(id).await.expect("all"), want);
}
on_both!(tail_across_many_chunks);

async fn output_for_unknown_execution_is_refused(store: &SqliteStore) {
    assert!(store.append_output(777, &[line(1, Stream::Stdout, "x")]).await.is_err());
    assert_eq!(store.output_tail(777, 5).await.expect("tail"), (vec![], 0));
}
on_both!(output_for_unknown_execution_is_refused);

async fn output_range_reads_a_bounded_slice(store: &SqliteStore) {
    let id = store.create_execution(&new_exec("deploy")).await.expect("create").id;
    for chunk in 0..5 {
        let lines: Vec<_> = (0..10)
            .map(|i| line(chunk * 10 + i, Stream::Stdout, &format!("l{}", chunk * 10 + i)))
            .collect();
        store.append_output(id, &lines).await.expect("append");
    }
    let texts = |v: Vec<opsbot_core::OutputLine>| v.into_iter().map(|l| l.text).collect::<Vec<_>>();
    assert_eq!(texts(store.output_range(id, 0, 3).await.unwrap()), ["l0", "l1", "l2"]);
    assert_eq!(texts(store.output_range(id, 8, 4).await.unwrap()), ["l8", "l9", "l10", "l11"]);
    assert_eq!(
        texts(store.output_range(id, 45, 100).await.unwrap()),
        ["l45", "l46", "l47", "l48", "l49"]
    );
    assert!(store.output_range(id, 50, 10).await.unwrap().is_empty());
    assert!(store.output_range(id, 0, 0).await.unwrap().is_empty());
}
on_both!(output_range_reads_a_bounded_slice);
