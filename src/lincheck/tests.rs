use proptest::prelude::*;

use super::kv::{IndexedValue, KvInput as In, KvModel, KvOutput as Out};
use super::*;

pub(super) type Op = Operation<In, Out>;

/// A key operation answered between `call` and `ret`.
pub(super) fn op(call: u64, ret: u64, input: In, output: Out) -> Op {
    Operation {
        call,
        ret: Some(ret),
        input,
        output: Some(output),
    }
}

fn timed_out(call: u64, input: In) -> Op {
    Operation {
        call,
        ret: None,
        input,
        output: None,
    }
}

fn set(v: &str) -> In {
    In::Set(v.into())
}

fn read(v: Option<&str>) -> Out {
    Out::Value(v.map(str::to_owned))
}

fn verdict(ops: &[Op]) -> Verdict {
    check(&KvModel, ops, 1_000_000)
}

fn linearizable(ops: &[Op]) -> bool {
    match verdict(ops) {
        Verdict::Linearizable => true,
        Verdict::NotLinearizable { .. } => false,
        Verdict::GaveUp { steps } => panic!("gave up after {steps} steps"),
    }
}

#[test]
fn an_empty_history_is_linearizable() {
    assert!(linearizable(&[]));
}

#[test]
fn a_read_after_a_write_sees_it() {
    assert!(linearizable(&[
        op(0, 1, set("x"), Out::Done),
        op(2, 3, In::Get, read(Some("x"))),
    ]));
}

#[test]
fn a_stale_read_after_a_finished_write_is_rejected() {
    let history = [op(0, 1, set("x"), Out::Done), op(2, 3, In::Get, read(None))];
    assert!(!linearizable(&history));
}

#[test]
fn a_read_overlapping_a_write_may_see_either() {
    for seen in [None, Some("x")] {
        assert!(linearizable(&[
            op(0, 10, set("x"), Out::Done),
            op(2, 3, In::Get, read(seen)),
        ]));
    }
}

#[test]
fn reads_cannot_go_back_in_time() {
    // Both reads overlap the write, but once one saw the new value a later one cannot miss it.
    let history = [
        op(0, 10, set("x"), Out::Done),
        op(1, 2, In::Get, read(Some("x"))),
        op(3, 4, In::Get, read(None)),
    ];
    assert!(!linearizable(&history));
}

/// The operations a failure names: the longest order found, and what could not follow it.
fn failure(ops: &[Op]) -> (Vec<usize>, Vec<usize>, Option<usize>) {
    match verdict(ops) {
        Verdict::NotLinearizable {
            longest,
            stuck,
            overdue,
        } => (longest, stuck, overdue),
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn a_stale_read_is_named_as_the_operation_that_could_not_go_next() {
    let history = [
        op(0, 10, set("x"), Out::Done),
        op(1, 2, In::Get, read(Some("x"))),
        op(3, 4, In::Get, read(None)),
    ];
    assert_eq!(failure(&history), (vec![0, 1], vec![2], Some(2)));
}

#[test]
fn of_two_winning_compare_and_swaps_the_second_is_named() {
    let cas = |call, ret, value: &str| {
        op(
            call,
            ret,
            In::CompareAndSwap {
                prev: "0".into(),
                value: value.into(),
            },
            Out::Done,
        )
    };
    let history = [
        op(0, 1, set("0"), Out::Done),
        cas(2, 5, "1"),
        cas(3, 6, "2"),
        op(7, 8, In::Get, read(Some("2"))),
    ];
    // Set, then the first swap; the second swap's answer is impossible after it, and it
    // returned before anything else could go.
    assert_eq!(failure(&history), (vec![0, 1], vec![2], Some(2)));
}

#[test]
fn every_operation_that_could_go_next_is_named() {
    // After the write, both reads could go next and neither can: both are named, and the one
    // that returns first is where the search turned back.
    let history = [
        op(0, 1, set("x"), Out::Done),
        op(2, 6, In::Get, read(Some("y"))),
        op(3, 5, In::Get, read(None)),
    ];
    assert_eq!(failure(&history), (vec![0], vec![1, 2], Some(2)));
}

#[test]
fn two_creates_cannot_both_win() {
    let history = [
        op(0, 5, In::Create("a".into()), Out::Done),
        op(1, 6, In::Create("b".into()), Out::Done),
    ];
    assert!(!linearizable(&history));
    let one_refused = [
        op(0, 5, In::Create("a".into()), Out::Done),
        op(1, 6, In::Create("b".into()), Out::Refused),
        op(7, 8, In::Get, read(Some("a"))),
    ];
    assert!(linearizable(&one_refused));
}

#[test]
fn a_lost_update_is_rejected() {
    // Two compare-and-swaps from the same value cannot both succeed.
    let history = [
        op(0, 1, set("0"), Out::Done),
        op(
            2,
            5,
            In::CompareAndSwap {
                prev: "0".into(),
                value: "1".into(),
            },
            Out::Done,
        ),
        op(
            3,
            6,
            In::CompareAndSwap {
                prev: "0".into(),
                value: "2".into(),
            },
            Out::Done,
        ),
    ];
    assert!(!linearizable(&history));
}

#[test]
fn a_timed_out_write_may_have_happened() {
    assert!(linearizable(&[
        timed_out(0, set("x")),
        op(1, 2, In::Get, read(None)),
        op(3, 4, In::Get, read(Some("x"))),
    ]));
}

#[test]
fn a_timed_out_write_may_not_have_happened() {
    assert!(linearizable(&[
        timed_out(0, set("x")),
        op(1, 2, In::Get, read(None)),
        op(30, 40, In::Get, read(None)),
    ]));
}

#[test]
fn a_timed_out_write_cannot_be_undone() {
    let history = [
        timed_out(0, set("x")),
        op(1, 2, In::Get, read(Some("x"))),
        op(3, 4, In::Get, read(None)),
    ];
    assert!(!linearizable(&history));
}

#[test]
fn deletes_and_compare_and_delete_follow_the_model() {
    assert!(linearizable(&[
        op(0, 1, set("x"), Out::Done),
        op(
            2,
            3,
            In::CompareAndDelete { prev: "y".into() },
            Out::Refused
        ),
        op(4, 5, In::CompareAndDelete { prev: "x".into() }, Out::Done),
        op(6, 7, In::Delete, Out::Refused),
        op(8, 9, In::Update("z".into()), Out::Refused),
        op(10, 11, In::Get, read(None)),
    ]));
    assert!(!linearizable(&[
        op(0, 1, set("x"), Out::Done),
        op(2, 3, In::Delete, Out::Done),
        op(4, 5, In::Get, read(Some("x"))),
    ]));
}

fn at(index: u64, value: Option<&str>) -> IndexedValue {
    IndexedValue {
        index,
        value: value.map(str::to_owned),
    }
}

fn swap_at(index: u64, value_there: Option<&str>, value: &str) -> In {
    In::CompareAndSwapIndex {
        at: at(index, value_there),
        prev: None,
        value: value.into(),
    }
}

#[test]
fn a_compare_and_swap_by_index_passes_only_while_the_key_holds_that_write() {
    assert!(linearizable(&[
        op(0, 1, set("x"), Out::Done),
        op(2, 3, swap_at(1, Some("x"), "y"), Out::Done),
        // "x" was at index 1; the key has moved on, so index 1 is stale now.
        op(4, 5, swap_at(1, Some("x"), "z"), Out::Refused),
        op(6, 7, In::Get, read(Some("y"))),
    ]));
    let stale_index_wins = [
        op(0, 1, set("x"), Out::Done),
        op(2, 3, set("y"), Out::Done),
        op(4, 5, swap_at(1, Some("x"), "z"), Out::Done),
    ];
    assert!(!linearizable(&stale_index_wins));
    let current_index_refused = [
        op(0, 1, set("x"), Out::Done),
        op(2, 3, swap_at(1, Some("x"), "y"), Out::Refused),
    ];
    assert!(!linearizable(&current_index_refused));
}

#[test]
fn an_index_nothing_was_written_at_never_matches() {
    let made_up = 1 << 50;
    assert!(linearizable(&[
        op(0, 1, set("x"), Out::Done),
        op(2, 3, swap_at(made_up, None, "y"), Out::Refused),
        op(
            4,
            5,
            In::CompareAndDeleteIndex {
                at: at(made_up, None),
                prev: None
            },
            Out::Refused
        ),
        op(6, 7, In::Get, read(Some("x"))),
    ]));
    assert!(!linearizable(&[
        op(0, 1, set("x"), Out::Done),
        op(2, 3, swap_at(made_up, None, "y"), Out::Done),
    ]));
}

#[test]
fn a_compare_by_index_and_value_needs_both_to_match() {
    let both = |value: &str| In::CompareAndSwapIndex {
        at: at(1, Some("x")),
        prev: Some(value.into()),
        value: "y".into(),
    };
    assert!(linearizable(&[
        op(0, 1, set("x"), Out::Done),
        op(2, 3, both("not x"), Out::Refused),
        op(4, 5, both("x"), Out::Done),
    ]));
    assert!(!linearizable(&[
        op(0, 1, set("x"), Out::Done),
        op(2, 3, both("not x"), Out::Done),
    ]));
}

#[test]
fn a_compare_and_delete_by_index_removes_only_that_write() {
    let delete_at = |index, value: &str| In::CompareAndDeleteIndex {
        at: at(index, Some(value)),
        prev: None,
    };
    assert!(linearizable(&[
        op(0, 1, set("x"), Out::Done),
        op(2, 3, delete_at(1, "x"), Out::Done),
        // Gone: a compare on a missing key is refused (etcd's 100).
        op(4, 5, delete_at(1, "x"), Out::Refused),
        op(6, 7, In::Get, read(None)),
    ]));
    assert!(!linearizable(&[
        op(0, 1, set("x"), Out::Done),
        op(2, 3, set("y"), Out::Done),
        op(4, 5, delete_at(1, "x"), Out::Done),
    ]));
}

mod dirs {
    use super::super::dir::{DirInput as D, DirModel, DirOutput as R};
    use super::super::*;

    fn op(call: u64, input: D, output: R) -> Operation<D, R> {
        Operation {
            call,
            ret: Some(call + 1),
            input,
            output: Some(output),
        }
    }

    fn linearizable(ops: &[Operation<D, R>]) -> bool {
        match check(&DirModel, ops, 1_000_000) {
            Verdict::Linearizable => true,
            Verdict::NotLinearizable { .. } => false,
            Verdict::GaveUp { steps } => panic!("gave up after {steps} steps"),
        }
    }

    const NOT_FOUND: R = R::Failed(100);
    const EXISTS: R = R::Failed(105);
    const NOT_EMPTY: R = R::Failed(108);

    fn listing(child: Option<&str>) -> R {
        R::Listing(child.map(str::to_owned))
    }

    #[test]
    fn a_directory_with_a_ttl_may_vanish_at_any_moment_or_stay() {
        for seen in [NOT_FOUND, listing(None)] {
            assert!(linearizable(&[
                op(0, D::Mkdir { ttl: true }, R::Done),
                op(2, D::List, seen),
            ]));
        }
    }

    #[test]
    fn a_directory_without_a_ttl_stays_until_removed() {
        assert!(!linearizable(&[
            op(0, D::Mkdir { ttl: false }, R::Done),
            op(2, D::List, NOT_FOUND),
        ]));
        // Clearing the TTL makes an expiring directory permanent.
        assert!(!linearizable(&[
            op(0, D::Mkdir { ttl: true }, R::Done),
            op(2, D::UpdateDir { ttl: false }, R::Done),
            op(4, D::List, NOT_FOUND),
        ]));
    }

    #[test]
    fn an_expired_directory_does_not_come_back() {
        assert!(!linearizable(&[
            op(0, D::Mkdir { ttl: true }, R::Done),
            op(2, D::List, NOT_FOUND),
            op(4, D::List, listing(None)),
        ]));
    }

    #[test]
    fn creating_an_existing_directory_is_refused() {
        assert!(linearizable(&[
            op(0, D::Mkdir { ttl: false }, R::Done),
            op(2, D::Mkdir { ttl: true }, EXISTS),
        ]));
        assert!(!linearizable(&[
            op(0, D::Mkdir { ttl: false }, R::Done),
            op(2, D::Mkdir { ttl: true }, R::Done),
        ]));
    }

    #[test]
    fn a_child_written_under_a_missing_directory_creates_it_permanent() {
        assert!(linearizable(&[
            op(0, D::UpdateDir { ttl: true }, NOT_FOUND),
            op(2, D::SetChild("a".into()), R::Done),
            op(4, D::Mkdir { ttl: true }, EXISTS),
            op(6, D::List, listing(Some("a"))),
        ]));
        assert!(!linearizable(&[
            op(0, D::SetChild("a".into()), R::Done),
            op(2, D::List, NOT_FOUND),
        ]));
    }

    #[test]
    fn an_expiring_directory_takes_its_child_with_it() {
        // Under a directory with a TTL the child goes when the directory does, never alone.
        assert!(linearizable(&[
            op(0, D::Mkdir { ttl: true }, R::Done),
            op(2, D::SetChild("a".into()), R::Done),
            op(4, D::List, NOT_FOUND),
        ]));
        assert!(!linearizable(&[
            op(0, D::Mkdir { ttl: true }, R::Done),
            op(2, D::SetChild("a".into()), R::Done),
            op(4, D::List, listing(None)),
        ]));
    }

    #[test]
    fn removing_a_directory_with_a_child_needs_recursive() {
        assert!(linearizable(&[
            op(0, D::SetChild("a".into()), R::Done),
            op(2, D::Rmdir { recursive: false }, NOT_EMPTY),
            op(4, D::Rmdir { recursive: true }, R::Done),
            op(6, D::Rmdir { recursive: true }, NOT_FOUND),
        ]));
        assert!(!linearizable(&[
            op(0, D::SetChild("a".into()), R::Done),
            op(2, D::Rmdir { recursive: false }, R::Done),
        ]));
    }

    #[test]
    fn an_unknown_outcome_may_have_happened_on_any_possible_state() {
        // The mkdir timed out: it may have made a permanent directory, which then stays.
        let timed_out = Operation {
            call: 0,
            ret: None,
            input: D::Mkdir { ttl: false },
            output: None,
        };
        assert!(linearizable(&[
            timed_out.clone(),
            op(2, D::List, listing(None)),
            op(4, D::List, listing(None)),
        ]));
        assert!(!linearizable(&[
            timed_out,
            op(2, D::List, listing(None)),
            op(4, D::List, NOT_FOUND),
        ]));
    }
}

#[test]
fn the_step_budget_is_honoured() {
    let history: Vec<Op> = (0..30).map(|i| timed_out(i, set(&i.to_string()))).collect();
    let mut with_read = history;
    with_read.push(op(100, 101, In::Get, read(Some("nope"))));
    assert!(matches!(
        check(&KvModel, &with_read, 50),
        Verdict::GaveUp { .. }
    ));
}

/// Builds a history by running a real register: each operation takes effect at a random
/// instant inside its interval, so the history is linearizable by construction.
fn linearizable_history(spec: &[(u8, u8, u8, bool)]) -> Vec<Op> {
    let mut effects: Vec<(u64, usize)> = Vec::new();
    let mut ops = Vec::new();
    for (i, &(start, len, kind, lost)) in spec.iter().enumerate() {
        let call = u64::from(start) * 10;
        let ret = call + 1 + u64::from(len) * 10;
        let point = call + (u64::from(kind) * 7 + i as u64) % (ret - call);
        let previous = i.saturating_sub(1);
        let input = match kind % 8 {
            0 => In::Get,
            1 => In::Set(format!("v{i}")),
            2 => In::Create(format!("v{i}")),
            3 => In::CompareAndSwap {
                prev: format!("v{previous}"),
                value: format!("v{i}"),
            },
            4 => In::Delete,
            5 => In::CompareAndSwapIndex {
                at: at(previous as u64, Some(&format!("v{previous}"))),
                prev: (kind % 3 == 0).then(|| format!("v{previous}")),
                value: format!("v{i}"),
            },
            6 => In::CompareAndDeleteIndex {
                at: at(previous as u64, Some(&format!("v{previous}"))),
                prev: None,
            },
            _ => In::Update(format!("v{i}")),
        };
        ops.push(Operation {
            call,
            ret: Some(ret),
            input,
            output: None,
        });
        effects.push((point * 1000 + i as u64, i));
        let _ = lost;
    }
    effects.sort();
    let mut state = None;
    for (_, i) in effects {
        let (out, next) = KvModel.step(&state, &ops[i].input);
        state = next;
        ops[i].output = Some(out);
    }
    for (op, &(_, _, _, lost)) in ops.iter_mut().zip(spec) {
        if lost && !matches!(op.input, In::Get) {
            op.ret = None;
            op.output = None;
        }
    }
    ops
}

proptest! {
    #[test]
    fn histories_of_a_real_register_are_linearizable(
        spec in proptest::collection::vec((0u8..40, 0u8..6, any::<u8>(), proptest::bool::weighted(0.1)), 0..40),
    ) {
        let history = linearizable_history(&spec);
        prop_assert_eq!(verdict(&history), Verdict::Linearizable);
    }

    /// A read that returns a value whose write only began after the read had finished has
    /// to be rejected, and the search itself must prove it.
    #[test]
    fn a_read_from_the_future_is_caught(
        spec in proptest::collection::vec((0u8..40, 0u8..6, any::<u8>(), proptest::bool::weighted(0.1)), 2..40),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut history = linearizable_history(&spec);
        let written = |op: &Op| match &op.input {
            In::Set(v) | In::Create(v) | In::Update(v) => Some(v.clone()),
            In::CompareAndSwap { value, .. } | In::CompareAndSwapIndex { value, .. } => {
                Some(value.clone())
            }
            _ => None,
        };
        let pairs: Vec<(usize, String)> = history
            .iter()
            .enumerate()
            .filter(|(_, r)| r.input == In::Get && r.ret.is_some())
            .flat_map(|(i, r)| {
                history
                    .iter()
                    .filter(move |w| w.call > r.ret.unwrap())
                    .filter_map(written)
                    .map(move |v| (i, v))
            })
            .collect();
        prop_assume!(!pairs.is_empty());
        let (read_at, value) = pick.get(&pairs).clone();
        history[read_at].output = Some(Out::Value(Some(value)));
        let Verdict::NotLinearizable { longest, stuck, overdue } = verdict(&history) else {
            return Err(TestCaseError::fail("the read from the future was not caught"));
        };
        // What it names is consistent: the overdue operation is one that could not go next,
        // and none of those is in the order found.
        let overdue = overdue.expect("a failure names where the search turned back");
        prop_assert!(stuck.contains(&overdue));
        prop_assert!(stuck.iter().all(|op| !longest.contains(op)));
    }
}
