//! Exact per-key rate limits per minute and per UTC day, lock-free.
//!
//! Each window is one `AtomicU64` holding `(window index << 32) | count`; a
//! compare-and-swap loop either counts the request in the current window or
//! refuses it. A request is counted in both windows or in neither.

use std::sync::atomic::{AtomicU64, Ordering};

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Minute,
    Day,
}

/// The outcome of an admission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed {
        minute_limit: u64,
        minute_remaining: u64,
        minute_reset_seconds: u64,
        day_limit: u64,
        day_remaining: u64,
    },
    Rejected {
        scope: LimitScope,
        limit: u64,
        retry_after_seconds: u64,
    },
}

/// A fixed-window counter.
#[derive(Debug, Default)]
pub struct WindowCounter(AtomicU64);

impl WindowCounter {
    /// Counts one request in `window` unless `limit` is reached; returns the count after.
    fn try_acquire(&self, window: u64, limit: u64) -> Option<u64> {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let (current_window, count) = unpack(current);
            let count = if current_window == window { count } else { 0 };
            if count >= limit {
                return None;
            }
            let next = pack(window, count + 1);
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(count + 1),
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back one request counted in `window` (when the other window refused it).
    fn release(&self, window: u64) {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let (current_window, count) = unpack(current);
            if current_window != window || count == 0 {
                return;
            }
            match self.0.compare_exchange_weak(
                current,
                pack(window, count - 1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }
}

/// The two windows of one API key.
#[derive(Debug, Default)]
pub struct KeyLimiter {
    minute: WindowCounter,
    day: WindowCounter,
}

impl KeyLimiter {
    /// Admits or refuses one request at `now_seconds` (Unix time).
    pub fn admit(&self, now_seconds: u64, per_minute: u64, per_day: u64) -> Admission {
        let minute_window = now_seconds / 60;
        let day_window = now_seconds / 86_400;
        let Some(minute_count) = self.minute.try_acquire(minute_window, per_minute) else {
            return Admission::Rejected {
                scope: LimitScope::Minute,
                limit: per_minute,
                retry_after_seconds: 60 - now_seconds % 60,
            };
        };
        let Some(day_count) = self.day.try_acquire(day_window, per_day) else {
            self.minute.release(minute_window);
            return Admission::Rejected {
                scope: LimitScope::Day,
                limit: per_day,
                retry_after_seconds: 86_400 - now_seconds % 86_400,
            };
        };
        Admission::Allowed {
            minute_limit: per_minute,
            minute_remaining: per_minute.saturating_sub(minute_count),
            minute_reset_seconds: 60 - now_seconds % 60,
            day_limit: per_day,
            day_remaining: per_day.saturating_sub(day_count),
        }
    }
}

fn pack(window: u64, count: u64) -> u64 {
    (window << 32) | (count & 0xffff_ffff)
}

fn unpack(value: u64) -> (u64, u64) {
    (value >> 32, value & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_limit_is_exact_and_resets() {
        let limiter = KeyLimiter::default();
        let t: u64 = 1_800_000_000; // A multiple of 60: the start of a minute.
        for expected_remaining in (0..3).rev() {
            match limiter.admit(t, 3, 100) {
                Admission::Allowed {
                    minute_remaining, ..
                } => assert_eq!(minute_remaining, expected_remaining),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(matches!(
            limiter.admit(t + 10, 3, 100),
            Admission::Rejected {
                scope: LimitScope::Minute,
                retry_after_seconds: 50,
                ..
            }
        ));
        assert!(matches!(
            limiter.admit(t + 60, 3, 100),
            Admission::Allowed { .. }
        ));
    }

    #[test]
    fn day_limit_does_not_consume_minute_quota() {
        let limiter = KeyLimiter::default();
        let t = 1_800_000_000;
        assert!(matches!(limiter.admit(t, 10, 1), Admission::Allowed { .. }));
        assert!(matches!(
            limiter.admit(t, 10, 1),
            Admission::Rejected {
                scope: LimitScope::Day,
                ..
            }
        ));
        // The refused request gave back its minute slot: 9 remain.
        match limiter.admit(t + 86_400, 10, 1) {
            Admission::Allowed {
                minute_remaining, ..
            } => assert!(minute_remaining >= 8),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn concurrent_admission_is_exact() {
        let limiter = std::sync::Arc::new(KeyLimiter::default());
        let t: u64 = 1_800_000_000; // A multiple of 60: the start of a minute.
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| {
                            matches!(limiter.admit(t, 1500, 1_000_000), Admission::Allowed { .. })
                        })
                        .count()
                })
            })
            .collect();
        let allowed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(allowed, 1500);
    }
}
