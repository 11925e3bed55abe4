//! The memory budget: a shared byte limit, RAII reservations against it, and
//! usage tracking per consumer.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::consumer::{CONSUMERS, Consumer};
use crate::error::{Error, Result};
use crate::units::format_bytes;

/// Current and peak bytes of one consumer (or of the whole budget).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerUsage {
    /// Bytes reserved now.
    pub reserved: u64,
    /// Most bytes reserved at once since the budget was created or
    /// [`MemoryBudget::reset_peak`] was last called.
    pub peak: u64,
}

impl ConsumerUsage {
    fn add(&mut self, bytes: u64) {
        self.reserved += bytes;
        self.peak = self.peak.max(self.reserved);
    }

    fn sub(&mut self, bytes: u64) {
        self.reserved -= bytes;
    }
}

/// A snapshot of a budget's accounting, from [`MemoryBudget::usage`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetUsage {
    /// The limit in bytes.
    pub limit: u64,
    /// Bytes reserved now, by all consumers.
    pub reserved: u64,
    /// Most bytes reserved at once since creation or the last
    /// [`MemoryBudget::reset_peak`]; never more than `limit`.
    pub peak: u64,
    per_consumer: [ConsumerUsage; CONSUMERS],
}

impl BudgetUsage {
    /// Current and peak bytes of one consumer.
    pub fn consumer(&self, consumer: Consumer) -> ConsumerUsage {
        self.per_consumer[consumer.index()]
    }

    /// Every consumer with its usage, in [`Consumer::ALL`] order.
    pub fn consumers(&self) -> impl Iterator<Item = (Consumer, ConsumerUsage)> + '_ {
        Consumer::ALL.iter().map(|&c| (c, self.consumer(c)))
    }
}

impl fmt::Display for BudgetUsage {
    /// One line, e.g. `12.0 MiB of 64.0 MiB reserved (peak 40.0 MiB); reader
    /// 10.0 MiB (peak 30.0 MiB), state 2.0 MiB (peak 10.0 MiB)`. Consumers
    /// that never reserved anything are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} reserved (peak {})",
            format_bytes(self.reserved),
            format_bytes(self.limit),
            format_bytes(self.peak)
        )?;
        let used = self.consumers().filter(|(_, u)| u.peak > 0);
        for (i, (consumer, u)) in used.enumerate() {
            let sep = if i == 0 { "; " } else { ", " };
            write!(
                f,
                "{sep}{consumer} {} (peak {})",
                format_bytes(u.reserved),
                format_bytes(u.peak)
            )?;
        }
        Ok(())
    }
}

/// The mutable accounting, behind the budget's mutex.
#[derive(Debug, Default)]
struct State {
    total: ConsumerUsage,
    per_consumer: [ConsumerUsage; CONSUMERS],
    /// Threads blocked in [`MemoryBudget::reserve`]; releases skip the
    /// condvar when this is zero.
    waiters: usize,
}

impl State {
    fn fits(&self, bytes: u64, limit: u64) -> bool {
        // `total.reserved <= limit` always holds, so this cannot underflow.
        bytes <= limit - self.total.reserved
    }

    fn add(&mut self, consumer: Consumer, bytes: u64) {
        self.total.add(bytes);
        self.per_consumer[consumer.index()].add(bytes);
    }

    fn sub(&mut self, consumer: Consumer, bytes: u64) {
        self.total.sub(bytes);
        self.per_consumer[consumer.index()].sub(bytes);
    }

    fn exhausted(&self, consumer: Consumer, requested: u64, limit: u64) -> Error {
        let mut top: Vec<(Consumer, u64)> = Consumer::ALL
            .iter()
            .map(|&c| (c, self.per_consumer[c.index()].reserved))
            .filter(|&(_, bytes)| bytes > 0)
            .collect();
        top.sort_by_key(|&(_, bytes)| std::cmp::Reverse(bytes));
        Error::Exhausted {
            consumer,
            requested,
            reserved: self.total.reserved,
            limit,
            top,
        }
    }
}

#[derive(Debug)]
struct Inner {
    limit: u64,
    state: Mutex<State>,
    released: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, and the state is consistent
        // between statements anyway, so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks a request that must be granted now, and grants it.
    fn try_add(&self, consumer: Consumer, bytes: u64) -> Result<()> {
        if bytes > self.limit {
            return Err(self.too_large(consumer, bytes));
        }
        let mut state = self.lock();
        if !state.fits(bytes, self.limit) {
            return Err(state.exhausted(consumer, bytes, self.limit));
        }
        state.add(consumer, bytes);
        Ok(())
    }

    fn release(&self, consumer: Consumer, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut state = self.lock();
        state.sub(consumer, bytes);
        let wake = state.waiters > 0;
        drop(state);
        if wake {
            self.released.notify_all();
        }
    }

    fn too_large(&self, consumer: Consumer, requested: u64) -> Error {
        Error::TooLarge {
            consumer,
            requested,
            limit: self.limit,
        }
    }
}

/// A limit on the bytes an engine may hold, shared by everything that holds
/// them.
///
/// Memory is claimed by taking a [`Reservation`], which gives its bytes back
/// when dropped. [`try_reserve`](Self::try_reserve) fails at once when the
/// bytes are not available; [`reserve`](Self::reserve) waits for them
/// (back-pressure).
///
/// `MemoryBudget` is a cheap handle: clones share one limit and one
/// accounting, so several engines in one process can share a budget. It is
/// `Send + Sync`.
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

impl MemoryBudget {
    /// Creates a budget of `limit` bytes.
    ///
    /// A limit of 0 is allowed, but then only empty reservations succeed.
    /// See [`default_limit`](crate::default_limit) for a limit derived from
    /// the machine's available memory, and [`parse_size`](crate::parse_size)
    /// to read one from text.
    pub fn new(limit: u64) -> Self {
        MemoryBudget {
            inner: Arc::new(Inner {
                limit,
                state: Mutex::new(State::default()),
                released: Condvar::new(),
            }),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// Bytes reserved now, by all consumers.
    pub fn reserved(&self) -> u64 {
        self.inner.lock().total.reserved
    }

    /// Bytes that could be reserved now: the limit minus what is reserved.
    pub fn available(&self) -> u64 {
        self.inner.limit - self.reserved()
    }

    /// Reserves `bytes` for `consumer` if they are available now.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if `bytes` exceeds the limit, otherwise
    /// [`Error::Exhausted`] if `bytes` are not available now. On
    /// error nothing is reserved.
    pub fn try_reserve(&self, consumer: Consumer, bytes: u64) -> Result<Reservation> {
        self.inner.try_add(consumer, bytes)?;
        Ok(self.reservation(consumer, bytes))
    }

    /// Reserves `bytes` for `consumer`, waiting until other reservations
    /// release enough of them.
    ///
    /// Waiting requests are not served in order: whenever bytes are released,
    /// every waiter whose request now fits may take them, so a small request
    /// can go ahead of a large one. This keeps a holder that needs a little
    /// more to finish (and then release) from queuing behind a large waiter.
    ///
    /// This waits forever if nothing is ever released — in particular if the
    /// calling thread itself holds what the request needs. Reserve before
    /// holding, or use [`try_reserve`](Self::try_reserve) while holding.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`], immediately and without waiting, if
    /// `bytes` exceeds the limit, since no amount of releasing could make it
    /// fit.
    pub fn reserve(&self, consumer: Consumer, bytes: u64) -> Result<Reservation> {
        let inner = &*self.inner;
        if bytes > inner.limit {
            return Err(inner.too_large(consumer, bytes));
        }
        let mut state = inner.lock();
        while !state.fits(bytes, inner.limit) {
            state.waiters += 1;
            state = inner
                .released
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiters -= 1;
        }
        state.add(consumer, bytes);
        drop(state);
        Ok(self.reservation(consumer, bytes))
    }

    /// An empty reservation for `consumer`, to be grown with
    /// [`Reservation::try_grow`].
    pub fn empty_reservation(&self, consumer: Consumer) -> Reservation {
        self.reservation(consumer, 0)
    }

    /// A snapshot of current and peak usage, in total and per consumer.
    pub fn usage(&self) -> BudgetUsage {
        let state = self.inner.lock();
        BudgetUsage {
            limit: self.inner.limit,
            reserved: state.total.reserved,
            peak: state.total.peak,
            per_consumer: state.per_consumer,
        }
    }

    /// Resets every peak (total and per consumer) to what is reserved now.
    pub fn reset_peak(&self) {
        let mut state = self.inner.lock();
        state.total.peak = state.total.reserved;
        for u in &mut state.per_consumer {
            u.peak = u.reserved;
        }
    }

    /// Wraps bytes already added to the accounting.
    fn reservation(&self, consumer: Consumer, size: u64) -> Reservation {
        Reservation {
            budget: self.clone(),
            consumer,
            size,
        }
    }
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.inner.limit)
            .field("reserved", &self.reserved())
            .finish()
    }
}

/// Bytes held against a [`MemoryBudget`] for one [`Consumer`]; released when
/// dropped.
///
/// A reservation can grow ([`try_grow`](Self::try_grow)), shrink
/// ([`shrink`](Self::shrink)), be released early ([`free`](Self::free)), and
/// be split ([`split`](Self::split)) so that part of it travels with a block,
/// for instance through a channel, and is released when the block is done.
#[derive(Debug)]
#[must_use = "a reservation is released as soon as it is dropped"]
pub struct Reservation {
    budget: MemoryBudget,
    consumer: Consumer,
    size: u64,
}

impl Reservation {
    /// Bytes held.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The consumer the bytes are accounted to.
    pub fn consumer(&self) -> Consumer {
        self.consumer
    }

    /// The budget the bytes are held against.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Adds `bytes` to this reservation if they are available now.
    ///
    /// # Errors
    ///
    /// As [`MemoryBudget::try_reserve`]; on error the reservation is
    /// unchanged.
    pub fn try_grow(&mut self, bytes: u64) -> Result<()> {
        self.budget.inner.try_add(self.consumer, bytes)?;
        self.size += bytes;
        Ok(())
    }

    /// Releases `bytes` of this reservation, waking waiters.
    ///
    /// # Panics
    ///
    /// If `bytes` exceeds [`size`](Self::size): that is an accounting bug in
    /// the caller.
    pub fn shrink(&mut self, bytes: u64) {
        self.size = self.checked_sub(bytes, "shrink");
        self.budget.inner.release(self.consumer, bytes);
    }

    /// Moves `bytes` of this reservation into a new one for the same
    /// consumer. The total reserved does not change.
    ///
    /// # Panics
    ///
    /// If `bytes` exceeds [`size`](Self::size): that is an accounting bug in
    /// the caller.
    pub fn split(&mut self, bytes: u64) -> Reservation {
        self.size = self.checked_sub(bytes, "split");
        self.budget.reservation(self.consumer, bytes)
    }

    /// Releases every byte now, leaving an empty reservation; returns how
    /// many bytes were released.
    pub fn free(&mut self) -> u64 {
        let bytes = std::mem::take(&mut self.size);
        self.budget.inner.release(self.consumer, bytes);
        bytes
    }

    fn checked_sub(&self, bytes: u64, op: &str) -> u64 {
        match self.size.checked_sub(bytes) {
            Some(rest) => rest,
            None => panic!(
                "cannot {op} {bytes} bytes from a reservation of {} bytes",
                self.size
            ),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.free();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn waiters(budget: &MemoryBudget) -> usize {
        budget.inner.lock().waiters
    }

    #[test]
    fn handles_are_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<MemoryBudget>();
        check::<Reservation>();
        check::<Error>();
    }

    #[test]
    fn consumer_display_and_all() {
        let names: Vec<String> = Consumer::ALL.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            names,
            ["reader", "kernel", "state", "writer", "spill", "other"]
        );
        assert_eq!(Consumer::ALL.len(), CONSUMERS);
        for (i, c) in Consumer::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }

    #[test]
    fn exhausted_message_names_numbers_and_top_consumers() {
        const MIB: u64 = 1 << 20;
        let budget = MemoryBudget::new(64 * MIB);
        let _s = budget.try_reserve(Consumer::State, 12 * MIB).unwrap();
        let _r = budget.try_reserve(Consumer::Reader, 48 * MIB).unwrap();
        let err = budget.try_reserve(Consumer::Reader, 8 * MIB).unwrap_err();
        assert_eq!(
            err.to_string(),
            "memory budget exhausted: reader requested 8.0 MiB but 60.0 MiB of 64.0 MiB \
             is reserved (largest consumers: reader 48.0 MiB, state 12.0 MiB)"
        );
        let err = budget.try_reserve(Consumer::Kernel, 65 * MIB).unwrap_err();
        assert_eq!(
            err.to_string(),
            "memory budget too small: kernel requested 65.0 MiB but the whole budget is 64.0 MiB"
        );
    }

    #[test]
    fn usage_display() {
        let budget = MemoryBudget::new(1024);
        let r = budget.try_reserve(Consumer::Reader, 512).unwrap();
        drop(budget.try_reserve(Consumer::State, 256).unwrap());
        assert_eq!(
            budget.usage().to_string(),
            "512 B of 1.0 KiB reserved (peak 768 B); reader 512 B (peak 512 B), \
             state 0 B (peak 256 B)"
        );
        drop(r);
    }

    #[test]
    fn blocked_reserve_is_woken_by_release() {
        let budget = MemoryBudget::new(100);
        let held = budget.try_reserve(Consumer::Reader, 80).unwrap();
        let waiter = {
            let budget = budget.clone();
            thread::spawn(move || budget.reserve(Consumer::Reader, 50).map(|r| r.size()))
        };
        // Wait until the other thread is really blocked on the condvar.
        while waiters(&budget) == 0 {
            thread::yield_now();
        }
        drop(held);
        assert_eq!(waiter.join().unwrap(), Ok(50));
        assert_eq!(budget.reserved(), 0);
        assert_eq!(waiters(&budget), 0);
    }

    #[test]
    fn partial_release_wakes_only_when_enough() {
        let budget = MemoryBudget::new(100);
        let mut held = budget.try_reserve(Consumer::State, 100).unwrap();
        let waiter = {
            let budget = budget.clone();
            thread::spawn(move || budget.reserve(Consumer::Kernel, 30).map(|r| r.size()))
        };
        while waiters(&budget) == 0 {
            thread::yield_now();
        }
        // 10 bytes free: not enough, the waiter keeps waiting.
        held.shrink(10);
        while waiters(&budget) == 0 {
            thread::yield_now();
        }
        assert!(!waiter.is_finished());
        held.shrink(20);
        assert_eq!(waiter.join().unwrap(), Ok(30));
        assert_eq!(budget.usage().peak, 100);
    }
}
