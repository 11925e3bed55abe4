//! Reservations against a `MemoryBudget`: accounting, errors, back-pressure.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use outcore_spill::{Consumer, Error, MemoryBudget, Reservation};

#[test]
fn failed_try_reserve_has_no_side_effect() {
    let budget = MemoryBudget::new(100);
    let _held = budget.try_reserve(Consumer::Reader, 70).unwrap();
    let before = budget.usage();

    let err = budget.try_reserve(Consumer::Kernel, 31).unwrap_err();
    assert_eq!(
        err,
        Error::Exhausted {
            consumer: Consumer::Kernel,
            requested: 31,
            reserved: 70,
            limit: 100,
            top: vec![(Consumer::Reader, 70)],
        }
    );
    assert!(matches!(
        budget.try_reserve(Consumer::Kernel, 101),
        Err(Error::TooLarge {
            requested: 101,
            limit: 100,
            ..
        })
    ));
    assert_eq!(budget.usage(), before);

    // Exactly what is left still fits.
    let rest = budget.try_reserve(Consumer::Kernel, 30).unwrap();
    assert_eq!(budget.available(), 0);
    drop(rest);
}

#[test]
fn failed_try_grow_has_no_side_effect() {
    let budget = MemoryBudget::new(100);
    let mut r = budget.try_reserve(Consumer::State, 60).unwrap();
    let before = budget.usage();
    assert!(matches!(
        r.try_grow(41),
        Err(Error::Exhausted {
            requested: 41,
            reserved: 60,
            ..
        })
    ));
    assert!(matches!(r.try_grow(u64::MAX), Err(Error::TooLarge { .. })));
    assert_eq!(r.size(), 60);
    assert_eq!(budget.usage(), before);
    r.try_grow(40).unwrap();
    assert_eq!((r.size(), budget.reserved()), (100, 100));
}

#[test]
fn drop_and_free_release() {
    let budget = MemoryBudget::new(1000);
    let a = budget.try_reserve(Consumer::Reader, 300).unwrap();
    let mut b = budget.try_reserve(Consumer::Writer, 200).unwrap();
    assert_eq!(budget.reserved(), 500);
    drop(a);
    assert_eq!(budget.reserved(), 200);
    assert_eq!(b.free(), 200);
    assert_eq!((b.size(), budget.reserved()), (0, 0));
    drop(b); // dropping an empty reservation releases nothing more
    assert_eq!(budget.reserved(), 0);
    assert_eq!(budget.usage().peak, 500);
}

#[test]
fn split_grow_shrink_accounting() {
    let budget = MemoryBudget::new(1000);
    let mut r = budget.empty_reservation(Consumer::Reader);
    assert_eq!(r.size(), 0);
    r.try_grow(600).unwrap();
    let block = r.split(250);
    assert_eq!((r.size(), block.size()), (350, 250));
    assert_eq!(block.consumer(), Consumer::Reader);
    assert_eq!(budget.reserved(), 600); // splitting moves bytes, adds none

    // The split part travels through a channel and is released over there.
    let (tx, rx) = mpsc::channel::<Reservation>();
    let worker = thread::spawn(move || rx.into_iter().map(|r| r.size()).sum::<u64>());
    tx.send(block).unwrap();
    tx.send(r.split(50)).unwrap();
    drop(tx);
    assert_eq!(worker.join().unwrap(), 300);
    assert_eq!(budget.reserved(), 300);

    r.shrink(100);
    assert_eq!((r.size(), budget.reserved()), (200, 200));
    let all = r.split(200);
    assert_eq!(r.size(), 0);
    drop(all);
    assert_eq!(budget.reserved(), 0);
    let usage = budget.usage();
    assert_eq!(usage.peak, 600);
    assert_eq!(usage.consumer(Consumer::Reader).peak, 600);
}

#[test]
#[should_panic(expected = "cannot shrink 11 bytes from a reservation of 10 bytes")]
fn shrink_past_size_panics() {
    let budget = MemoryBudget::new(100);
    let mut r = budget.try_reserve(Consumer::Other, 10).unwrap();
    r.shrink(11);
}

#[test]
#[should_panic(expected = "cannot split 11 bytes from a reservation of 10 bytes")]
fn split_past_size_panics() {
    let budget = MemoryBudget::new(100);
    let mut r = budget.try_reserve(Consumer::Other, 10).unwrap();
    let _ = r.split(11);
}

#[test]
fn peak_tracking_per_consumer() {
    let budget = MemoryBudget::new(1000);
    let reader = budget.try_reserve(Consumer::Reader, 400).unwrap();
    let state = budget.try_reserve(Consumer::State, 100).unwrap();
    drop(reader);
    let kernel = budget.try_reserve(Consumer::Kernel, 300).unwrap();

    let usage = budget.usage();
    assert_eq!((usage.limit, usage.reserved, usage.peak), (1000, 400, 500));
    let get = |c| {
        let u = usage.consumer(c);
        (u.reserved, u.peak)
    };
    assert_eq!(get(Consumer::Reader), (0, 400));
    assert_eq!(get(Consumer::State), (100, 100));
    assert_eq!(get(Consumer::Kernel), (300, 300));
    assert_eq!(get(Consumer::Writer), (0, 0));
    assert_eq!(usage.consumers().count(), Consumer::ALL.len());

    budget.reset_peak();
    let usage = budget.usage();
    assert_eq!(usage.peak, 400);
    assert_eq!(usage.consumer(Consumer::Reader).peak, 0);
    assert_eq!(usage.consumer(Consumer::Kernel).peak, 300);
    drop((state, kernel));
}

#[test]
fn clones_share_one_budget() {
    let a = MemoryBudget::new(100);
    let b = a.clone();
    let r = b.try_reserve(Consumer::Reader, 60).unwrap();
    assert_eq!(a.reserved(), 60);
    assert!(a.try_reserve(Consumer::Reader, 50).is_err());
    assert_eq!(r.budget().limit(), 100);
}

#[test]
fn blocking_reserve_wakes_when_another_thread_releases() {
    let budget = MemoryBudget::new(100);
    let held = budget.try_reserve(Consumer::Reader, 80).unwrap();
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let budget = budget.clone();
        thread::spawn(move || {
            let r = budget.reserve(Consumer::Reader, 50);
            tx.send(r.as_ref().map(Reservation::size).ok()).unwrap();
            r.map(|r| r.size())
        })
    };
    // It cannot finish while 80 of 100 bytes are held.
    assert!(rx.recv_timeout(Duration::from_millis(5)).is_err());
    let releaser = thread::spawn(move || drop(held));
    releaser.join().unwrap();
    assert_eq!(rx.recv().unwrap(), Some(50));
    assert_eq!(waiter.join().unwrap(), Ok(50));
    assert_eq!(budget.reserved(), 0);
}

#[test]
fn blocking_reserve_of_too_much_fails_at_once() {
    let budget = MemoryBudget::new(100);
    let _held = budget.try_reserve(Consumer::Reader, 100).unwrap();
    // Would wait forever if it waited at all.
    let err = budget.reserve(Consumer::Spill, 101).unwrap_err();
    assert_eq!(
        err,
        Error::TooLarge {
            consumer: Consumer::Spill,
            requested: 101,
            limit: 100
        }
    );
    assert_eq!(
        err.to_string(),
        "memory budget too small: spill requested 101 B but the whole budget is 100 B"
    );
    // Zero bytes always fit, even on a full budget.
    assert_eq!(budget.reserve(Consumer::Spill, 0).unwrap().size(), 0);
}

/// A small xorshift generator, so the stress test needs no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn many_threads_never_exceed_the_limit_nor_deadlock() {
    const LIMIT: u64 = 1000;
    const THREADS: u64 = 8;
    const ROUNDS: usize = 2000;
    let budget = MemoryBudget::new(LIMIT);
    let consumers = Consumer::ALL;

    thread::scope(|s| {
        for t in 0..THREADS {
            let budget = &budget;
            s.spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                for _ in 0..ROUNDS {
                    let consumer = consumers[rng.below(consumers.len() as u64) as usize];
                    // Block while holding nothing, so no thread can wait on
                    // itself; grow and split only without waiting.
                    let mut r = budget.reserve(consumer, 1 + rng.below(300)).unwrap();
                    if r.try_grow(rng.below(200)).is_ok() {
                        assert!(r.size() <= LIMIT);
                    }
                    let part = r.split(rng.below(r.size() + 1));
                    r.shrink(rng.below(r.size() + 1));
                    if rng.below(4) == 0 {
                        thread::yield_now();
                    }
                    drop(part);
                    if let Ok(extra) = budget.try_reserve(consumer, rng.below(500)) {
                        drop(extra);
                    }
                }
            });
        }
    });

    let usage = budget.usage();
    assert_eq!(usage.reserved, 0);
    assert!(usage.peak <= LIMIT, "peak {} > limit {LIMIT}", usage.peak);
    assert!(
        usage.peak > 300,
        "threads never overlapped: peak {}",
        usage.peak
    );
    for (consumer, u) in usage.consumers() {
        assert_eq!(u.reserved, 0, "{consumer}");
        assert!(u.peak <= LIMIT, "{consumer}");
    }
}
