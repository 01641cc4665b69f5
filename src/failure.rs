//! Countdown failures for the failure-injecting test wrappers (`store::failure::FailureStore`,
//! `engine::failure::FailureEngine`), after mountpoint-s3's failure client: the n-th call of a
//! named operation fails once with a chosen error; every other call passes through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A backend wrapped to fail on cue: every call the countdowns let through goes to `inner`.
/// The store's and the engine's wrappers are this type with their trait implemented on it.
pub struct Failing<T, E> {
    pub(crate) inner: Arc<T>,
    pub(crate) failures: Countdowns<E>,
}

impl<T, E> Failing<T, E> {
    pub fn new(inner: Arc<T>) -> Self {
        Failing { inner, failures: Countdowns::default() }
    }

    /// The `n`-th call of `op` from now (1 = the next one) fails once with `error()`.
    pub fn fail_nth(&self, op: &'static str, n: usize, error: impl Fn() -> E + Send + Sync + 'static) {
        self.failures.fail_nth(op, n, error);
    }

    /// How many times `op` was called (failed calls included).
    pub fn calls(&self, op: &'static str) -> usize {
        self.failures.calls(op)
    }
}

type MakeError<E> = Box<dyn Fn() -> E + Send + Sync>;
/// Calls left to pass before a planned failure, and the error it answers.
type Planned<E> = Vec<(usize, MakeError<E>)>;

pub struct Countdowns<E> {
    /// Per operation, the failures planned for it.
    plans: Mutex<HashMap<&'static str, Planned<E>>>,
    calls: Mutex<HashMap<&'static str, usize>>,
}

impl<E> Default for Countdowns<E> {
    fn default() -> Self {
        Countdowns { plans: Mutex::default(), calls: Mutex::default() }
    }
}

impl<E> Countdowns<E> {
    /// The `n`-th call of `op` from now (1 = the next one) fails once with `error()`.
    pub fn fail_nth(&self, op: &'static str, n: usize, error: impl Fn() -> E + Send + Sync + 'static) {
        assert!(n >= 1, "calls are counted from 1");
        self.plans.lock().unwrap().entry(op).or_default().push((n - 1, Box::new(error)));
    }

    /// How many times `op` was called (failed calls included).
    pub fn calls(&self, op: &'static str) -> usize {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    /// Counts a call of `op` and answers the failure due now, if any.
    pub fn check(&self, op: &'static str) -> Result<(), E> {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
        let mut plans = self.plans.lock().unwrap();
        let Some(list) = plans.get_mut(op) else { return Ok(()) };
        let due = list.iter().position(|(left, _)| *left == 0);
        for (left, _) in list.iter_mut() {
            *left = left.saturating_sub(1);
        }
        match due {
            Some(i) => Err((list.remove(i).1)()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Countdowns;

    #[test]
    fn the_nth_call_fails_once_and_the_rest_pass_through() {
        let c = Countdowns::<String>::default();
        c.fail_nth("get", 2, || "injected".into());
        c.fail_nth("get", 4, || "also injected".into());
        let got: Vec<Result<(), String>> = (0..5).map(|_| c.check("get")).collect();
        assert_eq!(got, [Ok(()), Err("injected".into()), Ok(()), Err("also injected".into()), Ok(())]);
        assert_eq!(c.calls("get"), 5);
        assert_eq!(c.calls("put"), 0);
        assert_eq!(c.check("put"), Ok(()));
    }
}
