//! Branches: the tree of a thread, its stored form, walks and windows.

use persist_core::branch::{BranchWindow, RunWalk, Tree, parent_from_stored, stored_parent};

/// 1 ← 2 ← 3, 2 ← 4 ← 5, 1 ← 6.
fn tree() -> Tree {
    Tree::new([(1, None), (2, Some(1)), (3, Some(2)), (4, Some(2)), (5, Some(4)), (6, Some(1))])
}

#[test]
fn paths_children_leaves_and_latest() {
    let tree = tree();
    assert_eq!(tree.path(5), [1, 2, 4, 5]);
    assert_eq!(tree.path(3), [1, 2, 3]);
    assert_eq!(tree.path(9), Vec::<u64>::new());
    assert_eq!(tree.children(Some(2)), [3, 4]);
    assert_eq!(tree.children(None), [1]);
    assert_eq!(tree.leaves(), [3, 5, 6]);
    assert_eq!(tree.latest_under(2), 5);
    assert_eq!(tree.latest_under(3), 3);
    assert_eq!(tree.latest_under(1), 6);
}

#[test]
fn the_stored_form_round_trips() {
    for (seq, parent, stored) in
        [(1, None, None), (2, Some(1), None), (5, Some(2), Some(2)), (5, None, Some(0)), (9, Some(8), None)]
    {
        assert_eq!(stored_parent(seq, parent), stored, "{seq} {parent:?}");
        assert_eq!(parent_from_stored(seq, stored), parent, "{seq} {stored:?}");
    }
}

#[test]
fn a_walk_goes_on_across_chunks_and_ends_at_seq_1() {
    // Interleaved branches: every message after 3 follows the one three back.
    let starts: Vec<(u64, Option<u64>)> = (4..=12).rev().map(|seq| (seq, Some(seq - 3))).collect();
    let mut walk = RunWalk::new(12);
    walk.feed(&starts[..2], false); // 12, 11
    assert_eq!(walk.wants(), Some(9));
    walk.feed(&starts[3..6], false); // 9, 8, 7
    assert_eq!(walk.wants(), Some(6));
    walk.feed(&starts[6..], true); // 6, 5, 4: then none below 3
    assert_eq!(walk.runs(), [(1, 3), (6, 6), (9, 9), (12, 12)]);
}

#[test]
fn a_window_is_taken_in_pages_both_ways() {
    let runs = vec![(1, 3), (7, 7), (9, 20)];
    let mut up = BranchWindow::new(runs.clone(), None, None, false);
    assert_eq!(up.take(4), [(1, 3), (7, 7)]);
    assert_eq!(up.take(2), [(9, 10)]);
    assert_eq!(up.take(100), [(11, 20)]);
    assert!(up.is_empty());
    let mut down = BranchWindow::new(runs.clone(), None, None, true);
    assert_eq!(down.take(5), [(16, 20)]);
    assert_eq!(down.take(9), [(9, 15), (7, 7), (3, 3)]);
    assert_eq!(down.take(9), [(1, 2)]);
    // What is left of the window: all of it, taken at once (each run whole, in order).
    let mut window = BranchWindow::new(runs, Some(2), Some(10), false);
    assert_eq!(window.take(u64::MAX), [(3, 3), (7, 7), (9, 9)]);
    assert!(window.is_empty());
}

#[test]
fn a_loop_in_a_corrupt_tree_ends_the_walk() {
    let tree = Tree::new([(1, Some(2)), (2, Some(1))]);
    assert_eq!(tree.path(2), [1, 2]);
}
