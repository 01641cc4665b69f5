//! The phase graph, as data: every phase change a reconcile may make, and what causes it.
//!
//! A reconcile step changes the phase only through `Reconciler::enter`, which checks the change
//! against [`TRANSITIONS`]; one function (`Reconciler::write`) then applies the step's status
//! with the fenced compare-and-set and logs the transition. A change the table does not list is
//! a bug: debug builds (every test) panic on it, release builds log it as an error and go on.
//! README's "Phases" section is this table in prose.

use crate::spec::Phase;

/// One allowed phase change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Phase,
    pub to: Phase,
    /// What causes it.
    pub why: &'static str,
}

const fn t(from: Phase, to: Phase, why: &'static str) -> Transition {
    Transition { from, to, why }
}

use Phase::*;

/// Every phase change a reconcile may make. Staying in a phase is always allowed (a new attempt,
/// a refused decision, a notification recorded).
pub const TRANSITIONS: &[Transition] = &[
    t(Pending, Generated, "the SQL was generated, or the hand-written SQL passed the guard"),
    t(Pending, Failed, "the SQL cannot be generated, guarded or planned, or pre-approval attempts ran out"),
    t(Generated, AwaitingApproval, "the scan is estimated and an approval round is opened"),
    t(AwaitingApproval, Executing, "an allowed approver approved the digest awaiting approval"),
    t(AwaitingApproval, Rejected, "an allowed approver rejected it"),
    t(AwaitingApproval, Pending, "an allowed approver asked for a refinement: generate again with the feedback"),
    t(AwaitingApproval, TimedOut, "no valid decision before the approval deadline"),
    t(Executing, Done, "the query succeeded and its result is stored"),
    t(Executing, Failed, "the query failed for good (or its attempts ran out, or the integrity check failed)"),
    // A new generation (the spec changed) starts over from any phase.
    t(Generated, Pending, "the spec changed (a new generation)"),
    t(Executing, Pending, "the spec changed (a new generation); the running query is cancelled"),
    t(Done, Pending, "the spec changed (a new generation)"),
    t(Rejected, Pending, "the spec changed (a new generation)"),
    t(Failed, Pending, "the spec changed (a new generation)"),
    t(TimedOut, Pending, "the spec changed (a new generation)"),
    // A status the store cannot hold, even trimmed, ends the request from any phase.
    t(Generated, Failed, "the status could not be stored (StatusTooLarge)"),
    t(AwaitingApproval, Failed, "the status could not be stored (StatusTooLarge)"),
    t(Done, Failed, "the status could not be stored (StatusTooLarge)"),
    t(Rejected, Failed, "the status could not be stored (StatusTooLarge)"),
    t(TimedOut, Failed, "the status could not be stored (StatusTooLarge)"),
];

/// Whether a step may change the phase from `from` to `to`.
pub fn allowed(from: Phase, to: Phase) -> bool {
    from == to || TRANSITIONS.iter().any(|t| t.from == from && t.to == to)
}

/// The terminal phases: nothing but a new generation (or a status too large to store) leaves
/// them.
pub fn is_terminal(p: Phase) -> bool {
    matches!(p, Done | Rejected | Failed | TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Phase; 8] = [Pending, Generated, AwaitingApproval, Executing, Done, Rejected, Failed, TimedOut];

    #[test]
    fn every_phase_is_reachable_and_every_request_can_end() {
        // Reachable from Pending.
        let mut seen = vec![Pending];
        while let Some(t) = TRANSITIONS.iter().find(|t| seen.contains(&t.from) && !seen.contains(&t.to)) {
            seen.push(t.to);
        }
        for p in ALL {
            assert!(seen.contains(&p), "{p} is unreachable");
        }
        // From every phase a terminal phase is reachable; terminal phases leave only for
        // Pending (a new generation) or Failed (a status too large to store).
        for p in ALL {
            let mut reach = vec![p];
            while let Some(t) = TRANSITIONS.iter().find(|t| reach.contains(&t.from) && !reach.contains(&t.to)) {
                reach.push(t.to);
            }
            assert!(reach.iter().any(|r| is_terminal(*r)), "{p} never ends");
            if is_terminal(p) {
                for t in TRANSITIONS.iter().filter(|t| t.from == p) {
                    assert!(matches!(t.to, Pending | Failed), "{p} → {}", t.to);
                }
            }
        }
        // Nothing skips approval: Executing is entered from AwaitingApproval alone.
        let into_executing: Vec<_> = TRANSITIONS.iter().filter(|t| t.to == Executing).map(|t| t.from).collect();
        assert_eq!(into_executing, [AwaitingApproval]);
        assert!(!allowed(Pending, Executing) && !allowed(Generated, Executing) && !allowed(Done, Executing));
        assert!(allowed(Executing, Executing), "a new attempt stays Executing");
        // Each change is listed once.
        for (i, a) in TRANSITIONS.iter().enumerate() {
            assert!(!TRANSITIONS[i + 1..].iter().any(|b| a.from == b.from && a.to == b.to), "{a:?} twice");
        }
    }
}
